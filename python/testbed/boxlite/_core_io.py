"""The engine side of executions and file access inside a box (``_CoreIO``, a base of
``_core._Core``), the process, pipe and copy helpers they and the lifecycle use, and the
simulator's knobs (environment variables) and id/time helpers the modules above share.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import posixpath
import secrets as _secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone

from . import _sandbox, errors
from ._exec import ExecState
from ._types import CopyOptions


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KVM_ENV = "BOXLITE_SIM_FAIL_KVM"
COPY_MOUNTS_ENV = "BOXLITE_SIM_COPY_MOUNTS"
BOOT_DELAY_ENV = "BOXLITE_SIM_BOOT_DELAY"
# "noop": every exec exits 0 at once with no output and spawns nothing, so a benchmark of
# exec('true') measures only the layers above the SDK.
EXEC_ENV = "BOXLITE_SIM_EXEC"
# bwrap's --die-with-parent does not cover bwrap itself; setpriv (util-linux)
# makes the kernel kill it when the engine thread (= this process) goes away.
_SETPRIV = shutil.which("setpriv")


def _env_float(name: str) -> float:
    try:
        return float(os.environ.get(name, "") or 0)
    except ValueError:
        return 0.0
BOOT_TIMEOUT = 15.0


def _new_id(n: int = 12) -> str:
    return "".join(_secrets.choice(_ALNUM) for _ in range(n))


def _rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}+00:00"



class _Live:
    """A booted box: the bwrap process and the agent socket."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.execs: dict[str, ExecState] = {}
        self.send_lock = threading.Lock()
        self.servers: list = []         # port forwarders (asyncio servers)
        self.published: list[dict] = []  # guest_port, host_ip, host_port, protocol




class _CoreIO:
    """Executions and guest paths of ``_Core`` (which supplies the records, locks and counters)."""

    # -- exec ---------------------------------------------------------------
    async def exec(self, box_id: str, command: str, args: list[str], env: list | None, tty: bool,
                   user: str | None, timeout: float | None, cwd: str | None) -> ExecState:
        await self.start(box_id)
        rec = self.records.get(box_id)
        live = self.live.get(box_id)
        if rec is None or live is None:
            raise errors.StoppedError.make("box stopped before the process could be started")
        counters = self.counters_for(box_id)
        if os.environ.get(EXEC_ENV) == "noop":
            st = ExecState(uuid.uuid4().hex, box_id, tty, counters)
            st.attach_output(None, None)
            counters.commands += 1
            self.total_commands_executed += 1
            st.finish(0)
            return st
        full_env = {"PATH": _sandbox.PATH_DEFAULT}
        if tty:
            full_env["TERM"] = "xterm"
        for k, v in rec["env"]:
            full_env[k] = v
        for k, v in env or []:
            full_env[k] = v
        workdir = cwd or rec.get("working_dir") or "/"
        st = ExecState(uuid.uuid4().hex, box_id, tty, counters)
        ctl_host, ctl_guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        body_r, body_w = os.pipe()
        close_after = [ctl_guest, body_r]
        try:
            if tty:
                master, slave = os.openpty()
                import struct
                import termios
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
                fds = [slave, slave, slave]
                close_after.append(slave)
                st.stdin_fd = os.dup(master)
                os.set_blocking(st.stdin_fd, False)
                st.attach_output(master, None)
            else:
                in_r, in_w = os.pipe()
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                fds = [in_r, out_w, err_w]
                close_after += [in_r, out_w, err_w]
                st.stdin_fd = in_w
                os.set_blocking(in_w, False)
                st.attach_output(out_r, err_r)
            req = {"argv": [command] + list(args), "env": full_env, "cwd": workdir, "user": user or rec.get("user"),
                   "tty": tty}
            with live.send_lock:
                socket.send_fds(live.sock, [b"{}"], fds + [ctl_guest.fileno(), body_r])
        except OSError as e:
            ctl_host.close()
            _close(body_w)
            for fd in close_after:
                _close(fd)
            st.abort(str(e))
            counters.exec_error()
            raise errors.ExecutionError.make(f"failed to start process: {e}") from None
        for fd in close_after:
            _close(fd)
        # argv and env can approach ARG_MAX (2 MiB): stream them through the pipe
        await _write_all(body_w, json.dumps(req).encode())
        ctl_host.setblocking(False)
        st.ctl = ctl_host
        try:
            first = await st.read_ctl()
        except (OSError, ValueError):
            first = {}
        except BaseException:  # cancelled while spawning: forget the process
            st.abort("cancelled")
            raise
        if "pid" not in first:
            st.abort(first.get("error", "process could not be started"))
            counters.exec_error()
            raise errors.ExecutionError.make(first.get("error", "process could not be started"))
        st.pid = first["pid"]
        counters.commands += 1
        self.total_commands_executed += 1
        rec["last_activity_at"] = _rfc3339(time.time_ns())
        live.execs[st.id] = st
        if timeout:
            st.timeout_handle = asyncio.get_running_loop().call_later(timeout, st.on_timeout, timeout)

        def forget(_t):
            live.execs.pop(st.id, None)
        st.watch_task = asyncio.ensure_future(st.watch())
        st.watch_task.add_done_callback(forget)
        return st

    # -- files ----------------------------------------------------------------
    def guest_path(self, rec: dict, path: str, write: bool, follow_last: bool = False) -> str:
        """Host path of ``path`` as seen by copy_in/copy_out (not by exec).

        Copies act on the box's root filesystem layer (the disk).  Paths at or
        under a guest mount (/tmp, /dev/shm, volumes) resolve to the disk layer
        *beneath* the mount, invisible to exec; with BOXLITE_SIM_COPY_MOUNTS=refuse
        they are refused instead (as the 0.10.8 SimpleBox docstrings describe).
        """
        trailing = path.endswith("/") and path != "/"
        if not path.startswith("/"):
            path = posixpath.join(rec.get("working_dir") or "/", path)
        dot = path.endswith("/.")
        norm = posixpath.normpath(path)
        if norm.startswith("//"):
            norm = norm[1:]
        suffix = "/." if dot else ("/" if trailing else "")
        norm = self._resolve_dirs(rec, norm + ("/." if follow_last and not dot else ""))
        if norm.endswith("/."):
            norm = norm[:-2] or "/"
        mounts = ["/tmp", "/dev/shm"] + [posixpath.normpath(v["guest_path"]) for v in rec["volumes"]]
        if os.environ.get(COPY_MOUNTS_ENV, "") == "refuse":
            for m in mounts:
                inside = norm == m or norm.startswith(m + "/")
                contains = not write and (norm == "/" or m.startswith(norm + "/"))
                if inside or contains:
                    raise errors.InvalidArgumentError.make(
                        f"{norm} is {'under' if inside else 'above'} the guest mount {m}; "
                        f"{'files copied there would be hidden by it' if write else 'the archive would carry the files underneath it'}"
                        " (pipe a tar archive through exec instead)")
        for special in ("/proc", "/sys"):
            if norm == special or norm.startswith(special + "/"):
                raise errors.InvalidArgumentError.make(f"cannot copy to or from {special}: not on the root filesystem")
        base = _sandbox.is_ro_base(norm)
        if base is not None:
            if write:
                raise errors.StorageError.make(f"Read-only file system (simulator host base): {norm}")
            return base + suffix
        # everything else, including mount points such as /tmp, /dev/shm and
        # volumes, lives on the box disk (the layer hidden under the mount)
        return self.disk(rec["id"]) + (norm if norm != "/" else "") + (suffix or ("/" if norm == "/" else ""))

    def _resolve_dirs(self, rec: dict, guest: str) -> str:
        """Resolve symlinks in the directory part of ``guest`` the way the guest
        would (absolute targets from the box root), never leaving the box."""
        disk = self.disk(rec["id"])
        parts = [p for p in guest.split("/") if p]
        done: list[str] = []
        hops = 0
        while len(parts) > 1:
            head = parts.pop(0)
            cur = "/" + "/".join(done + [head])
            if _sandbox.is_ro_base(cur) is not None or any(
                    cur == posixpath.normpath(v["guest_path"]) for v in rec["volumes"]):
                done.append(head)
                continue
            host = disk + cur
            if os.path.islink(host):
                hops += 1
                if hops > 40:
                    raise errors.InvalidArgumentError.make(f"{guest}: Too many levels of symbolic links")
                target = os.readlink(host)
                base = [] if target.startswith("/") else done
                merged = posixpath.normpath("/" + "/".join(base + [target]))
                parts = [p for p in merged.split("/") if p] + parts
                done = []
                continue
            done.append(head)
        return "/" + "/".join(done + parts)

    def chown_for_exec_user(self, rec: dict, target: str) -> None:
        """Files copied in belong to the box's exec user (root unless ``user``)."""
        user = rec.get("user")
        if not user or os.geteuid() != 0:
            return
        import grp
        import pwd
        name, _, group = user.partition(":")
        try:
            ent = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
            uid, gid = ent.pw_uid, ent.pw_gid
        except KeyError:
            if not name.isdigit():
                return
            uid = gid = int(name)
        if group:
            try:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            except KeyError:
                pass
        for root, dirs, files in os.walk(target):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), uid, gid)
        os.lchown(target, uid, gid)


async def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a pipe without blocking the engine loop, then close it."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
    except OSError:
        pass  # the agent died; the ctl socket reports it
    finally:
        os.close(fd)


async def _publish_ports(live: _Live, specs: list[dict]) -> None:
    """Publish guest ports on the host.  The guest shares the host network, so
    a port published under its own number needs no forwarder; any other host
    port gets a TCP forwarder to 127.0.0.1:<guest_port>."""
    from ._tunnel import relay_to_guest

    for spec in specs:
        guest, host = spec["guest_port"], spec["host_port"]
        host_ip = spec.get("host_ip") or "0.0.0.0"
        proto = spec.get("protocol") or "tcp"
        if proto != "tcp" or host == guest:
            live.published.append({"guest_port": guest, "host_ip": host_ip, "host_port": host or guest,
                                   "protocol": proto})
            continue

        async def handle(r, w, guest=guest):
            await relay_to_guest(r, w, guest)

        srv = await asyncio.start_server(handle, host_ip, host or 0)
        live.servers.append(srv)
        live.published.append({"guest_port": guest, "host_ip": host_ip,
                               "host_port": srv.sockets[0].getsockname()[1], "protocol": proto})


async def _wait_proc(proc: subprocess.Popen) -> int:
    """Wait for a child without parking a thread (executor threads are joined
    at interpreter exit, which would hang a process that exits with boxes
    still running)."""
    if proc.poll() is not None:
        return proc.returncode
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        done = loop.create_future()
        loop.add_reader(pidfd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return proc.wait()
    fut = loop.create_future()

    def waiter():
        rc = proc.wait()
        try:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(rc))
        except RuntimeError:
            pass
    threading.Thread(target=waiter, daemon=True, name="boxlite-sim-wait").start()
    return await fut


async def _watch_sandbox(core_ref, box_id: str, proc: subprocess.Popen) -> None:
    await _wait_proc(proc)
    core = core_ref()
    if core is not None:
        core._sandbox_died(box_id, proc)


def _close(fd) -> None:
    try:
        fd.close() if isinstance(fd, socket.socket) else os.close(fd)
    except OSError:
        pass


def _docker_cp(src: str, dst: str, opts: CopyOptions, exists_error) -> list[str]:
    """Copy with ``docker cp`` placement rules (``src/.`` = directory contents)."""
    contents = src.endswith("/.")
    src_path = src[:-2] if contents else src.rstrip("/") or "/"
    if not os.path.lexists(src_path):
        raise errors.NotFoundError.make(f"{src_path}: No such file or directory")
    is_dir = os.path.isdir(src_path) and (opts.follow_symlinks or not os.path.islink(src_path))
    dst_is_dir = os.path.isdir(dst)
    if is_dir:
        if not opts.recursive:
            raise errors.InvalidArgumentError.make(f"{src_path} is a directory and recursive=false")
        if contents:
            target = dst
        elif dst_is_dir or dst.endswith("/"):
            target = os.path.join(dst, os.path.basename(src_path.rstrip("/")))
        else:
            target = dst
        if os.path.lexists(target) and not opts.overwrite and not contents:
            raise exists_error(target)
        if os.path.lexists(target) and not os.path.isdir(target):
            os.unlink(target)
        os.makedirs(target, exist_ok=True)
        written = [] if contents else [target]
        for name in os.listdir(src_path):
            s, t = os.path.join(src_path, name), os.path.join(target, name)
            if os.path.lexists(t) and not opts.overwrite:
                raise exists_error(t)
            _copy_entry(s, t, opts.follow_symlinks)
            if contents:
                written.append(t)
        return written
    else:
        if dst.endswith("/") or dst_is_dir:
            os.makedirs(dst, exist_ok=True)
            target = os.path.join(dst, os.path.basename(src_path))
        else:
            target = dst
            os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        if os.path.lexists(target) and not opts.overwrite:
            raise exists_error(target)
        _copy_entry(src_path, target, opts.follow_symlinks)
        return [target]


def _copy_entry(s: str, t: str, follow: bool) -> None:
    if os.path.islink(s) and not follow:
        if os.path.lexists(t):
            if os.path.isdir(t) and not os.path.islink(t):
                shutil.rmtree(t)
            else:
                os.unlink(t)
        os.symlink(os.readlink(s), t)
    elif os.path.isdir(s):
        if os.path.lexists(t) and not os.path.isdir(t):
            os.unlink(t)
        shutil.copytree(s, t, symlinks=not follow, dirs_exist_ok=True)
    else:
        if os.path.isdir(t) and not os.path.islink(t):
            shutil.rmtree(t)
        elif os.path.islink(t):
            os.unlink(t)
        shutil.copy2(s, t, follow_symlinks=follow)

"""Runtime (``Boxlite``), ``Box`` and their handles, over bubblewrap sandboxes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import posixpath
import secrets as _secrets
import shutil
import signal as _signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
import weakref
from datetime import datetime, timezone
from typing import Any

from . import _sandbox, errors
from ._engine import submit
from ._exec import ExecState, Execution
from ._types import (BoxInfo, BoxMetrics, BoxOptions, BoxStateInfo, CloneOptions, CopyOptions,
                     ExportOptions, HealthState, HealthStatus, InboundNetworkInfo,
                     NetworkInfo, Options, OutboundNetworkInfo, PublishedPort, RuntimeMetrics,
                     SnapshotInfo, SnapshotOptions, conv_bool, conv_env, conv_float, conv_instance,
                     conv_int, conv_str, conv_str_list)

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


def _check_box_options(options: Any) -> BoxOptions:
    opts = conv_instance("options", options, BoxOptions, optional=False)
    net = opts.network
    if net is not None:
        modes = [net.mode] if net.mode is not None else []
        if net.outbound is not None:
            modes.append(net.outbound.mode)
        if net.inbound is not None:
            modes.append(net.inbound.mode)
            if net.inbound.allow_net:
                raise errors.InvalidArgumentError.make("network.inbound.allow_net is not supported yet")
        for m in modes:
            if m not in ("enabled", "disabled"):
                raise errors.InvalidArgumentError.make(
                    f'invalid network mode "{m}". Expected "enabled" or "disabled".')
    return opts


# ---------------------------------------------------------------------------
# engine-side runtime state


class _Counters:
    def __init__(self, core: "_Core", box_id: str) -> None:
        self._core = weakref.ref(core)  # engine-side objects must not keep the runtime alive
        self.box_id = box_id
        self.commands = 0
        self.errors = 0
        self.sent = 0
        self.received = 0
        self.create_ms: int | None = None
        self.boot_ms: int | None = None
        self.stages: dict[str, int] = {}

    def add_sent(self, n: int) -> None:
        self.sent += n

    def add_received(self, n: int) -> None:
        self.received += n

    def exec_error(self) -> None:
        self.errors += 1
        core = self._core()
        if core is not None:
            core.total_exec_errors += 1


class _Live:
    """A booted box: the bwrap process and the agent socket."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.execs: dict[str, ExecState] = {}
        self.send_lock = threading.Lock()
        self.servers: list = []         # port forwarders (asyncio servers)
        self.published: list[dict] = []  # guest_port, host_ip, host_port, protocol


class _Core:
    """Everything behind one ``Boxlite`` object (kept alive by its boxes)."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.lock_fd: int | None = None
        self.records: dict[str, dict] = {}
        self.gens: dict[str, int] = {}
        self.live: dict[str, _Live] = {}
        self.counters: dict[str, _Counters] = {}
        self.box_locks: dict[str, asyncio.Lock] = {}
        self.shut_down = False
        self.boxes_created_total = 0
        self.boxes_failed_total = 0
        self.total_commands_executed = 0
        self.total_exec_errors = 0

    # -- paths / persistence ------------------------------------------------
    def box_dir(self, box_id: str) -> str:
        return os.path.join(self.home, "boxes", box_id)

    def disk(self, box_id: str) -> str:
        return os.path.join(self.box_dir(box_id), "disk")

    def tmpfs(self, box_id: str, which: str) -> str:
        return os.path.join(self.box_dir(box_id), "tmpfs", which)

    def _rec_path(self, box_id: str) -> str:
        return os.path.join(self.home, "db", "boxes", box_id + ".json")

    def save(self, rec: dict) -> None:
        path = self._rec_path(rec["id"])
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f, indent=1)
        os.replace(tmp, path)

    def load(self) -> None:
        d = os.path.join(self.home, "db", "boxes")
        for fn in os.listdir(d):
            if not fn.endswith(".json"):
                continue
            try:
                with open(os.path.join(d, fn)) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                continue
            self.records[rec["id"]] = rec
        # recovery: sandboxes never outlive the process that started them
        for rec in list(self.records.values()):
            if rec["status"] in ("running", "stopping"):
                if rec.get("detach"):
                    continue  # still "running"; rebooted transparently on next use
                if rec.get("auto_delete") == 1:
                    self._delete_files(rec["id"])
                    continue
                rec["status"] = "stopped"
                rec["pid"] = None
                self.save(rec)

    def _delete_files(self, box_id: str) -> None:
        self.records.pop(box_id, None)
        try:
            os.unlink(self._rec_path(box_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.box_dir(box_id), ignore_errors=True)

    # -- lookup -----------------------------------------------------------
    def find(self, id_or_name: str) -> dict | None:
        rec = self.records.get(id_or_name)
        if rec is not None:
            return rec
        for r in self.records.values():
            if r.get("name") == id_or_name:
                return r
        return None

    def lock_for(self, box_id: str) -> asyncio.Lock:
        lk = self.box_locks.get(box_id)
        if lk is None:
            lk = self.box_locks[box_id] = asyncio.Lock()
        return lk

    def counters_for(self, box_id: str) -> _Counters:
        c = self.counters.get(box_id)
        if c is None:
            c = self.counters[box_id] = _Counters(self, box_id)
        return c

    def has_disk(self, box_id: str) -> bool:
        return os.path.isdir(self.disk(box_id))

    def is_running(self, box_id: str) -> bool:
        rec = self.records.get(box_id)
        return rec is not None and rec["status"] == "running"

    # -- info -------------------------------------------------------------
    def info(self, rec: dict, db_view: bool) -> BoxInfo:
        status = rec["status"]
        if db_view and rec.get("failed"):
            status = "failed"
        live = self.live.get(rec["id"])
        state = BoxStateInfo._make(status=status, running=status == "running",
                                   pid=live.proc.pid if live is not None and status == "running" else None,
                                   exit_code=None)
        net = rec["network"]
        ports = []
        if status == "running" and live is not None:
            ports = [PublishedPort._make(**p) for p in live.published]
        network = NetworkInfo._make(
            outbound=OutboundNetworkInfo._make(mode=net["outbound"]["mode"],
                                               allow_net=list(net["outbound"]["allow_net"])),
            inbound=InboundNetworkInfo._make(mode=net["inbound"]["mode"],
                                             allow_net=list(net["inbound"]["allow_net"])),
            published_ports=ports)
        return BoxInfo._make(
            id=rec["id"], name=rec["name"], state=state, created_at=rec["created_at"],
            started_at=rec.get("started_at"), last_activity_at=rec.get("last_activity_at"),
            image=rec["image"], cpus=rec["cpus"], memory_mib=rec["memory_mib"], network=network,
            auto_stop=rec["auto_stop"], auto_delete=rec["auto_delete"], auto_resume=rec["auto_resume"],
            health_status=HealthStatus._make(state=HealthState.none(), failures=0, last_check=None))

    # -- lifecycle (engine loop) ------------------------------------------------
    def new_record(self, opts: BoxOptions, name: str | None) -> dict:
        if opts.auto_delete is not None:
            auto_delete = opts.auto_delete
        elif opts.auto_remove is not None:
            auto_delete = 1 if opts.auto_remove else 0
        else:
            auto_delete = 1
        outbound = {"mode": "enabled", "allow_net": []}
        inbound = {"mode": "disabled", "allow_net": []}
        net = opts.network
        if net is not None:
            if net.mode is not None:
                outbound["mode"] = net.mode
            if net.allow_net is not None:
                outbound["allow_net"] = list(net.allow_net)
            if net.outbound is not None:
                outbound = {"mode": net.outbound.mode, "allow_net": list(net.outbound.allow_net)}
            if net.inbound is not None:
                inbound = {"mode": net.inbound.mode, "allow_net": list(net.inbound.allow_net)}
        if opts.rootfs_path is not None:
            image = f"rootfs:{opts.rootfs_path}"
        else:
            image = opts.image if opts.image is not None else "alpine:latest"
        now = time.time_ns()
        return {
            "id": _new_id(), "name": name, "created_ns": now, "created_at": _rfc3339(now),
            "started_at": None, "last_activity_at": None, "status": "configured", "failed": False,
            "image": image, "rootfs_path": opts.rootfs_path,
            "cpus": opts.cpus if opts.cpus is not None else 1,
            "memory_mib": opts.memory_mib if opts.memory_mib is not None else 1024,
            "disk_size_gb": opts.disk_size_gb, "working_dir": opts.working_dir,
            "env": [list(e) for e in opts.env], "volumes": opts._volumes, "ports": opts._ports,
            "network": {"outbound": outbound, "inbound": inbound},
            "auto_delete": auto_delete, "auto_resume": True if opts.auto_resume is None else opts.auto_resume,
            "auto_stop": 0, "detach": bool(opts.detach), "entrypoint": opts.entrypoint, "cmd": opts.cmd,
            "user": opts.user, "tty": bool(opts.tty), "snapshots": [], "current_snapshot": None,
            "pid": None,
        }

    async def create(self, opts: BoxOptions, name: str | None) -> dict:
        if self.shut_down:
            raise errors.StoppedError.make("Cannot create box: runtime has been shut down")
        if opts.auto_stop is not None:
            raise errors.UnsupportedError.make("AutoStop is only supported by REST runtimes")
        if any(v.get("managed_volume") for v in opts._volumes):
            raise errors.UnsupportedError.make("managed volumes are only supported by REST runtimes")
        rec = self.new_record(opts, name)
        if opts.detach and rec["auto_delete"] == 1:
            raise errors.InvalidArgumentError.make(
                "remove-on-stop is incompatible with detach=true. Detached boxes should use auto_delete=0 "
                "(or deprecated auto_remove=false) for manual lifecycle control.")
        if name is not None and self.find_by_name(name) is not None:
            raise errors.InvalidArgumentError.make(f"box with name '{name}' already exists")
        self.records[rec["id"]] = rec
        self.gens[rec["id"]] = 0
        self.save(rec)
        self.boxes_created_total += 1
        return rec

    def find_by_name(self, name: str) -> dict | None:
        for r in self.records.values():
            if r.get("name") == name:
                return r
        return None

    async def start(self, box_id: str) -> None:
        async with self.lock_for(box_id):
            await self._start_locked(box_id)

    async def _start_locked(self, box_id: str) -> None:
        rec = self.records.get(box_id)
        if rec is None:
            raise errors.NotFoundError.make(box_id)
        live = self.live.get(box_id)
        if live is not None and live.proc.poll() is None and rec["status"] == "running":
            return
        # a detached box recovered from an earlier process resumes with its /tmp
        resume = rec["status"] == "running" and live is None
        if live is not None:  # the sandbox died behind our back
            await self._teardown(box_id)
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        disk = self.disk(box_id)
        await loop.run_in_executor(None, self._prepare_fs, box_id, not resume)
        t_fs = time.monotonic()
        delay = _env_float(BOOT_DELAY_ENV)
        if delay > 0:
            await asyncio.sleep(delay)
        if os.environ.get(KVM_ENV, "") not in ("", "0"):
            rec["failed"] = True
            self.save(rec)
            self.boxes_failed_total += 1
            raise errors.EngineError.make("The VM failed to start.")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = _sandbox.bwrap_argv(disk, self.tmpfs(box_id, "tmp"), self.tmpfs(box_id, "shm"),
                                   child.fileno(), box_id, rec["volumes"])
        if _SETPRIV:
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        log = open(os.path.join(self.box_dir(box_id), "console.log"), "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=(child.fileno(),), start_new_session=True,
                                    env={"PATH": _sandbox.PATH_DEFAULT})
        except OSError as e:
            parent.close()
            child.close()
            log.close()
            rec["failed"] = True
            self.save(rec)
            self.boxes_failed_total += 1
            hint = " (the simulator needs bubblewrap: apt-get install bubblewrap)" if "bwrap" in str(e) else ""
            raise errors.EngineError.make(f"The VM failed to start: {e}{hint}") from None
        child.close()
        log.close()
        parent.setblocking(False)
        t_spawn = time.monotonic()
        try:
            msg = await asyncio.wait_for(loop.sock_recv(parent, 4096), BOOT_TIMEOUT)
        except (asyncio.TimeoutError, OSError):
            msg = b""
        except BaseException:  # cancelled: the boot is abandoned, as when the SDK's future is dropped
            proc.kill()
            parent.close()
            asyncio.ensure_future(_wait_proc(proc))
            raise
        if not msg:
            proc.kill()
            await _wait_proc(proc)
            parent.close()
            rec["failed"] = True
            self.save(rec)
            self.boxes_failed_total += 1
            raise errors.EngineError.make("The VM failed to start.")
        t_ready = time.monotonic()
        live = _Live(proc, parent)
        try:
            await _publish_ports(live, rec["ports"])
        except OSError as e:
            for srv in live.servers:
                srv.close()
            os.killpg(proc.pid, _signal.SIGKILL)
            await _wait_proc(proc)
            parent.close()
            raise errors.NetworkError.make(f"failed to publish ports: {e.strerror or e}") from None
        self.live[box_id] = live
        now = time.time_ns()
        rec.update(status="running", failed=False, started_at=_rfc3339(now), last_activity_at=_rfc3339(now),
                   pid=proc.pid)
        self.save(rec)
        c = self.counters_for(box_id)
        c.create_ms = int((t_ready - t0) * 1000)
        c.boot_ms = int((t_ready - t_spawn) * 1000)
        c.stages = {"stage_filesystem_setup_ms": int((t_fs - t0) * 1000), "stage_image_prepare_ms": 0,
                    "stage_guest_rootfs_ms": 0, "stage_box_config_ms": 0,
                    "stage_box_spawn_ms": int((t_spawn - t_fs) * 1000),
                    "stage_container_init_ms": int((t_ready - t_spawn) * 1000)}
        asyncio.ensure_future(_watch_sandbox(weakref.ref(self), box_id, proc))

    def _prepare_fs(self, box_id: str, wipe: bool) -> None:
        _sandbox.prepare_disk(self.disk(box_id))
        wd = (self.records.get(box_id) or {}).get("working_dir")
        if wd and wd.startswith("/") and _sandbox.is_ro_base(posixpath.normpath(wd)) is None \
                and not any(wd == m or wd.startswith(m + "/") for m in ("/tmp", "/dev", "/proc", "/sys")):
            # like an image WORKDIR, the box's default working directory exists
            os.makedirs(self.disk(box_id) + posixpath.normpath(wd), exist_ok=True)
        for which in ("tmp", "shm"):
            p = self.tmpfs(box_id, which)
            if wipe or not os.path.isdir(p):
                _sandbox.wipe_dir(p)

    def _sandbox_died(self, box_id: str, proc: subprocess.Popen) -> None:
        live = self.live.get(box_id)
        if live is not None and live.proc is proc:
            # the sandbox died on its own: the "VM" crashed
            for st in list(live.execs.values()):
                st.abort("box stopped")
            live.sock.close()
            del self.live[box_id]
            rec = self.records.get(box_id)
            if rec is not None and rec["status"] == "running":
                rec["status"] = "stopped"
                rec["pid"] = None
                self.save(rec)

    async def _teardown(self, box_id: str) -> None:
        live = self.live.pop(box_id, None)
        if live is None:
            return
        for st in list(live.execs.values()):
            st.abort("box stopped")
        for srv in live.servers:
            srv.close()
        try:
            os.killpg(live.proc.pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await _wait_proc(live.proc)
        live.sock.close()

    async def stop(self, box_id: str) -> None:
        async with self.lock_for(box_id):
            rec = self.records.get(box_id)
            if rec is None:
                return
            self.gens[box_id] = self.gens.get(box_id, 0) + 1
            was_running = rec["status"] == "running" or box_id in self.live
            if was_running:
                rec["status"] = "stopping"
                await self._teardown(box_id)
                rec["status"] = "stopped"
            elif rec["status"] not in ("stopped",):
                rec["status"] = "configured" if rec["status"] in ("configured", "failed") else rec["status"]
            rec["failed"] = False
            rec["pid"] = None
            if os.path.isdir(self.box_dir(box_id)):
                await asyncio.get_running_loop().run_in_executor(None, self._wipe_tmpfs, box_id)
            if rec["auto_delete"] == 1:
                self._delete_files(box_id)
            else:
                self.save(rec)

    def _wipe_tmpfs(self, box_id: str) -> None:
        for which in ("tmp", "shm"):
            _sandbox.wipe_dir(self.tmpfs(box_id, which))

    async def remove(self, id_or_name: str, force: bool) -> None:
        rec = self.find(id_or_name)
        if rec is None:
            raise errors.NotFoundError.make(id_or_name)
        box_id = rec["id"]
        if rec["status"] in ("running", "stopping") and not force:
            raise errors.InvalidStateError.make(
                f"cannot remove active box {box_id} (status: {rec['status']}). Use force=true to stop first")
        clones = [r["id"] for r in self.records.values() if r.get("clone_of") == box_id]
        if clones and not force:
            # real clones share the source's base disk
            raise errors.InvalidStateError.make(
                f"Cannot remove box: boxes [{', '.join(clones)}] have clone dependencies on it. "
                "Remove those first or use force=true.")
        async with self.lock_for(box_id):
            if box_id in self.live:
                self.gens[box_id] = self.gens.get(box_id, 0) + 1
                await self._teardown(box_id)
            await asyncio.get_running_loop().run_in_executor(None, self._delete_files, box_id)

    async def shutdown(self, timeout: int | None) -> None:
        self.shut_down = True
        for box_id in list(self.live):
            await self.stop(box_id)

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


# ---------------------------------------------------------------------------
# Python-facing runtime


_default_lock = threading.Lock()
_default_rt: "Boxlite | None" = None
_default_opts: Options | None = None


def _resolve_home(options: Options) -> str:
    home = options.home_dir or os.environ.get("BOXLITE_HOME") or os.path.join(os.path.expanduser("~"), ".boxlite")
    return os.path.abspath(home)


def _open_core(home: str) -> _Core:
    for d in ("", "db", "db/boxes", "boxes", "images", "bases", "logs", "locks", "tmp"):
        os.makedirs(os.path.join(home, d), exist_ok=True)
    fd = os.open(os.path.join(home, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise errors.InternalError.make(
            f"Failed to acquire runtime lock at {home}: internal error: Another BoxliteRuntime is already "
            f"using directory: {home}\nOnly one runtime instance can use a BOXLITE_HOME directory at a time."
        ) from None
    core = _Core(home)
    core.lock_fd = fd
    weakref.finalize(core, _release, fd, core.live)
    try:
        core.load()
    except OSError as e:
        raise errors.StorageError.make(f"failed to load boxes from {home}: {e}") from None
    return core


def _release(fd: int, live: dict) -> None:
    for lv in list(live.values()):
        try:
            os.killpg(lv.proc.pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.close(fd)
    except OSError:
        pass


class ImageHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.ImageHandle' instances")

    @classmethod
    def _new(cls, core):
        o = cls.__new__(cls)
        o._core = core
        return o

    def list(self):
        return submit(_async_value([]))

    def get(self, name):
        conv_str("name", name, optional=False)
        return submit(_async_value(None))

    def pull(self, reference):
        ref = conv_str("reference", reference, optional=False)

        async def run():
            raise errors.ImageError.make(f"the simulator cannot pull images ({ref})")
        return submit(run)

    def remove(self, name):
        return submit(_async_raise(errors.UnsupportedError.make("image removal is not supported by the simulator")))

    def usage(self):
        return submit(_async_raise(errors.UnsupportedError.make(
            "image usage counts a server's catalog against its limit; an embedded runtime has a local cache "
            "with no limit")))

    def create_alias(self, name, alias, digest):
        return submit(_async_raise(errors.UnsupportedError.make(
            "creating an alias requires a server's catalog; an embedded runtime has a local cache, which "
            "resolves a tag afresh for each new box")))

    def delete_alias(self, name, alias):
        return submit(_async_raise(errors.UnsupportedError.make("alias deletion requires a server catalog")))

    @property
    def registries(self):
        return RegistryHandle._new()

    def __repr__(self):
        return "ImageHandle(local)"


class RegistryHandle:
    """Registry logins: REST runtimes only; every call fails locally."""

    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.RegistryHandle' instances")

    @classmethod
    def _new(cls):
        return cls.__new__(cls)

    def _unsupported(self):
        return submit(_async_raise(errors.UnsupportedError.make(
            "registry logins require a REST image catalog; local runtimes use image_registries in their options")))

    def create(self, *, registry_host, username, password, repository_prefix=None):
        return self._unsupported()

    def list(self):
        return self._unsupported()

    def remove(self, id):  # noqa: A002
        return self._unsupported()

    def __repr__(self):
        return "RegistryHandle(local)"


class VolumeHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.VolumeHandle' instances")

    @classmethod
    def _new(cls, core):
        o = cls.__new__(cls)
        o._core = core
        return o

    def _unsupported(self):
        return submit(_async_raise(errors.UnsupportedError.make("named volumes are not supported yet")))

    def list(self):
        return self._unsupported()

    def create(self, name=None):
        return self._unsupported()

    def get(self, id):  # noqa: A002
        return self._unsupported()

    def remove(self, id, force=False):  # noqa: A002
        return self._unsupported()

    def __repr__(self):
        return "VolumeHandle(local)"


def _async_value(v):
    async def run():
        return v
    return run


def _async_raise(exc):
    async def run():
        raise exc
    return run


class Boxlite:
    """The runtime: one live instance per home directory (lock file ``<home>/.lock``)."""

    def __init__(self, options):
        options = conv_instance("options", options, Options, optional=False)
        self._core = _open_core(_resolve_home(options))
        self._closed = False

    @staticmethod
    def default() -> "Boxlite":
        global _default_rt
        with _default_lock:
            if _default_rt is None:
                _default_rt = Boxlite(_default_opts or Options())
            return _default_rt

    @staticmethod
    def init_default(options) -> None:
        global _default_opts
        options = conv_instance("options", options, Options, optional=False)
        with _default_lock:
            if _default_rt is not None or _default_opts is not None:
                raise errors.InternalError.make(
                    "Default runtime already initialized. Call init_default_runtime() before any use of "
                    "default_runtime().")
            _default_opts = options

    @staticmethod
    def rest(options):
        raise errors.UnsupportedError.make("the boxlite simulator has no REST client")

    def close(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, _exc_type, _exc_val, _exc_tb):
        self.close()
        return False

    def __repr__(self) -> str:
        return "Boxlite(open=true)"

    @property
    def images(self) -> ImageHandle:
        return ImageHandle._new(self._core)

    @property
    def volumes(self) -> VolumeHandle:
        return VolumeHandle._new(self._core)

    def create(self, options, name=None):
        opts = _check_box_options(options)
        name = conv_str("name", name)
        core = self._core

        async def run():
            rec = await core.create(opts, name)
            return Box._new(core, rec["id"])
        return submit(run)

    def get_or_create(self, options, name=None):
        opts = _check_box_options(options)
        name = conv_str("name", name)
        core = self._core

        async def run():
            if name is not None:
                rec = core.find_by_name(name)
                if rec is not None:
                    return (Box._new(core, rec["id"]), False)
            rec = await core.create(opts, name)
            return (Box._new(core, rec["id"]), True)
        return submit(run)

    def get(self, id_or_name):
        key = conv_str("id_or_name", id_or_name, optional=False)
        core = self._core

        async def run():
            rec = core.find(key)
            return None if rec is None else Box._new(core, rec["id"])
        return submit(run)

    def get_info(self, id_or_name):
        key = conv_str("id_or_name", id_or_name, optional=False)
        core = self._core

        async def run():
            rec = core.find(key)
            return None if rec is None else core.info(rec, db_view=False)
        return submit(run)

    def list_info(self, _state=None):
        core = self._core

        async def run():
            recs = sorted(core.records.values(), key=lambda r: r["created_ns"], reverse=True)
            return [core.info(r, db_view=True) for r in recs]
        return submit(run)

    def remove(self, id_or_name, force=False):
        key = conv_str("id_or_name", id_or_name, optional=False)
        force = conv_bool("force", force, optional=False)
        core = self._core

        async def run():
            await core.remove(key, force)
            return ()
        return submit(run)

    def metrics(self):
        core = self._core

        async def run():
            return RuntimeMetrics._make(
                boxes_created_total=core.boxes_created_total, boxes_failed_total=core.boxes_failed_total,
                num_running_boxes=sum(1 for r in core.records.values() if r["status"] == "running"),
                total_commands_executed=core.total_commands_executed, total_exec_errors=core.total_exec_errors)
        return submit(run)

    def shutdown(self, timeout=None):
        timeout = conv_int("timeout", timeout, -(2**31), 2**31 - 1)
        core = self._core

        async def run():
            await core.shutdown(timeout)
            return ()
        return submit(run)

    def import_box(self, archive_path, name=None, *, untrusted=False):
        path = conv_str("archive_path", archive_path, optional=False)
        name = conv_str("name", name)
        conv_bool("untrusted", untrusted, optional=False)
        core = self._core

        async def run():
            if core.shut_down:
                raise errors.StoppedError.make("Cannot import box: runtime has been shut down")
            if not os.path.isfile(path):
                raise errors.NotFoundError.make(f"Archive not found: {path}")
            if name is not None and core.find_by_name(name) is not None:
                raise errors.InvalidArgumentError.make(f"box with name '{name}' already exists")
            rec = await asyncio.get_running_loop().run_in_executor(None, _import_archive, core, path, name)
            core.records[rec["id"]] = rec
            core.gens[rec["id"]] = 0
            core.save(rec)
            core.boxes_created_total += 1
            return Box._new(core, rec["id"])
        return submit(run)


# ---------------------------------------------------------------------------
# archives (export / import): gzip tar with manifest.json and disk/


ARCHIVE_FORMAT = "boxlite-sim-archive/1"


def _export_archive(core: _Core, rec: dict, dest: str) -> str:
    if os.path.isdir(dest):
        dest = os.path.join(dest, f"{rec.get('name') or rec['id']}.boxlite")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    manifest = {"format": ARCHIVE_FORMAT, "version": 1, "source_box_id": rec["id"],
                "exported_at": _rfc3339(time.time_ns()),
                "box_options": {k: rec[k] for k in ("image", "rootfs_path", "cpus", "memory_mib", "disk_size_gb",
                                                    "working_dir", "env", "volumes", "ports", "network",
                                                    "auto_delete", "auto_resume", "entrypoint", "cmd", "user",
                                                    "tty")}}
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), suffix=".partial")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
            data = json.dumps(manifest, indent=1).encode()
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(data)
            ti.mtime = int(time.time())
            import io
            tf.addfile(ti, io.BytesIO(data))
            tf.add(core.disk(rec["id"]), arcname="disk")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest


def _import_archive(core: _Core, path: str, name: str | None) -> dict:
    try:
        with tarfile.open(path, "r:*") as tf:
            member = tf.getmember("manifest.json")
            manifest = json.load(tf.extractfile(member))
            if manifest.get("format") != ARCHIVE_FORMAT:
                raise ValueError("unknown archive format")
            opts = manifest["box_options"]
            box_id = _new_id()
            bdir = core.box_dir(box_id)
            os.makedirs(bdir)
            members = [m for m in tf.getmembers() if m.name == "disk" or m.name.startswith("disk/")]
            if hasattr(tarfile, "tar_filter"):
                tf.extractall(bdir, members=members, filter="tar")
            else:  # Python without extraction filters
                tf.extractall(bdir, members=[m for m in members if not m.name.startswith("/") and ".." not in m.name])
    except (KeyError, ValueError, tarfile.TarError, OSError) as e:
        raise errors.InvalidArgumentError.make(f"invalid archive {path}: {e}") from None
    now = time.time_ns()
    rec = {"id": box_id, "name": name, "created_ns": now, "created_at": _rfc3339(now), "started_at": None,
           "last_activity_at": None, "status": "stopped", "failed": False, "auto_stop": 0, "detach": False,
           "snapshots": [], "current_snapshot": None, "pid": None}
    rec.update(opts)
    _sandbox.prepare_disk(core.disk(box_id))
    return rec


# ---------------------------------------------------------------------------
# Box


def _box_check(core: _Core, box_id: str, gen: int) -> dict:
    if core.gens.get(box_id, 0) != gen:
        raise errors.StoppedError.make("Handle invalidated after stop(). Use runtime.get() to get a new handle.")
    rec = core.records.get(box_id)
    if rec is None:
        raise errors.NotFoundError.make(box_id)
    return rec


class Box:
    """Handle of one box.  ``stop()`` invalidates every handle obtained before it."""

    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.Box' instances")

    @classmethod
    def _new(cls, core: _Core, box_id: str) -> "Box":
        b = cls.__new__(cls)
        b._core = core
        b._id = box_id
        b._gen = core.gens.setdefault(box_id, 0)
        rec = core.records.get(box_id)
        b._name = rec.get("name") if rec else None
        return b

    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def snapshot(self) -> "SnapshotHandle":
        return SnapshotHandle._new(self)

    @property
    def network(self) -> "NetworkHandle":
        return NetworkHandle._new(self)

    def __repr__(self) -> str:
        return f"Box(id={json.dumps(self._id)})"

    def _checked(self) -> dict:
        return _box_check(self._core, self._id, self._gen)

    def info(self):
        core, box_id = self._core, self._id

        async def run():
            rec = core.records.get(box_id)
            if rec is None:
                raise errors.NotFoundError.make(box_id)
            return core.info(rec, db_view=False)
        return submit(run)

    def start(self):
        core, box_id = self._core, self._id

        async def run():
            self._checked()
            await core.start(box_id)
            return ()
        return submit(run)

    def stop(self):
        core, box_id = self._core, self._id

        async def run():
            if core.gens.get(box_id, 0) != self._gen:
                return ()  # an invalidated handle has nothing left to stop
            await core.stop(box_id)
            return ()
        return submit(run)

    async def _aenter(self):
        self._checked()
        await self._core.start(self._id)
        return self

    def __aenter__(self):
        return submit(self._aenter)

    def __aexit__(self, _exc_type, _exc_val, _exc_tb):
        return self.stop()

    def exec(self, command, args=None, env=None, tty=False, user=None, timeout_secs=None, cwd=None):
        command = conv_str("command", command, optional=False)
        args = conv_str_list("args", args) or []
        env = conv_env("env", env)
        tty = conv_bool("tty", tty, optional=False)
        user = conv_str("user", user)
        timeout = conv_float("timeout_secs", timeout_secs)
        cwd = conv_str("cwd", cwd)
        core, box_id = self._core, self._id

        async def run():
            if timeout is not None and not (timeout >= 0 and timeout != float("inf")):
                raise errors.InvalidArgumentError.make("timeout_seconds must be a non-negative finite number")
            self._checked()
            st = await core.exec(box_id, command, args, env, tty, user, timeout, cwd)
            return Execution._new(st)
        return submit(run)

    def attach(self, execution_id=None, stdin=True):
        execution_id = conv_str("execution_id", execution_id)
        conv_bool("stdin", stdin, optional=False)
        core, box_id = self._core, self._id

        async def run():
            self._checked()
            await core.start(box_id)
            live = core.live.get(box_id)
            if execution_id is None:
                raise errors.UnsupportedError.make("the simulator runs no main command to attach to")
            st = live.execs.get(execution_id) if live else None
            if st is None:
                raise errors.NotFoundError.make(f"execution {execution_id} not found")
            return Execution._new(st)
        return submit(run)

    def copy_in(self, host_path, container_dest, copy_options=None):
        src = conv_str("host_path", host_path, optional=False)
        dst = conv_str("container_dest", container_dest, optional=False)
        opts = conv_instance("copy_options", copy_options, CopyOptions) or CopyOptions()
        core, box_id = self._core, self._id

        async def run():
            self._checked()
            await core.start(box_id)
            async with core.lock_for(box_id):
                rec = core.records.get(box_id)
                if rec is None:
                    raise errors.NotFoundError.make(box_id)
                if not os.path.lexists(src.rstrip("/.") if src.endswith("/.") else src):
                    raise errors.NotFoundError.make(f"host path {src}: No such file or directory")
                target = core.guest_path(rec, dst, write=True)

                def work():
                    written = _docker_cp(src, target, opts, lambda t: errors.AlreadyExistsError.make(
                        f"destination {dst} exists and overwrite=false"))
                    for w in written:
                        core.chown_for_exec_user(rec, w)
                await asyncio.get_running_loop().run_in_executor(None, work)
            return ()
        return submit(run)

    def copy_out(self, container_src, host_dest, copy_options=None):
        src = conv_str("container_src", container_src, optional=False)
        dst = conv_str("host_dest", host_dest, optional=False)
        opts = conv_instance("copy_options", copy_options, CopyOptions) or CopyOptions()
        core, box_id = self._core, self._id

        async def run():
            self._checked()
            await core.start(box_id)
            async with core.lock_for(box_id):
                rec = core.records.get(box_id)
                if rec is None:
                    raise errors.NotFoundError.make(box_id)
                source = core.guest_path(rec, src, write=False, follow_last=opts.follow_symlinks)
                probe = source[:-2] if source.endswith("/.") else source
                if not os.path.lexists(probe.rstrip("/") or "/"):
                    raise errors.NotFoundError.make(f"{src}: No such file or directory")
                await asyncio.get_running_loop().run_in_executor(
                    None, _docker_cp, source, dst, opts,
                    lambda t: errors.AlreadyExistsError.make(f"destination {t} exists and overwrite=false"))
            return ()
        return submit(run)

    def metrics(self):
        core, box_id = self._core, self._id

        async def run():
            self._checked()
            await core.start(box_id)
            c = core.counters_for(box_id)
            live = core.live.get(box_id)
            mem = _tree_rss(live.proc.pid) if live is not None else None
            return BoxMetrics._make(
                commands_executed_total=c.commands, exec_errors_total=c.errors, bytes_sent_total=c.sent,
                bytes_received_total=c.received, total_create_duration_ms=c.create_ms,
                guest_boot_duration_ms=c.boot_ms, cpu_percent=None, memory_bytes=mem,
                network_bytes_sent=None, network_bytes_received=None, network_tcp_connections=None,
                network_tcp_errors=None, **{k: c.stages.get(k) for k in (
                    "stage_filesystem_setup_ms", "stage_image_prepare_ms", "stage_guest_rootfs_ms",
                    "stage_box_config_ms", "stage_box_spawn_ms", "stage_container_init_ms")})
        return submit(run)

    def clone_box(self, *, options=None, name=None):
        conv_instance("options", options, CloneOptions)
        name = conv_str("name", name)
        core, box_id = self._core, self._id

        async def run():
            rec = self._checked()
            if not core.has_disk(box_id):
                raise errors.StorageError.make(
                    f"Container disk not found at {core.box_dir(box_id)}/disks/disk.qcow2")
            if name is not None and core.find_by_name(name) is not None:
                raise errors.InvalidStateError.make(f"box with name '{name}' already exists")
            new_id = _new_id()
            async with core.lock_for(box_id):
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: shutil.copytree(core.disk(box_id), core.disk(new_id), symlinks=True))
            now = time.time_ns()
            clone = json.loads(json.dumps(rec))
            clone.update(id=new_id, name=name, created_ns=now, created_at=_rfc3339(now), started_at=None,
                         last_activity_at=None, status="stopped", failed=False, snapshots=[],
                         current_snapshot=None, pid=None, clone_of=box_id)
            core.records[new_id] = clone
            core.gens[new_id] = 0
            core.save(clone)
            core.boxes_created_total += 1
            return Box._new(core, new_id)
        return submit(run)

    def export(self, *, options=None, dest):
        conv_instance("options", options, ExportOptions)
        dest = conv_str("dest", dest, optional=False)
        core, box_id = self._core, self._id

        async def run():
            rec = self._checked()
            if not core.has_disk(box_id):
                raise errors.StorageError.make(
                    f"Container disk not found at {core.box_dir(box_id)}/disks/disk.qcow2")
            async with core.lock_for(box_id):
                return await asyncio.get_running_loop().run_in_executor(None, _export_archive, core, rec, dest)
        return submit(run)


def _tree_rss(pid: int) -> int | None:
    """Resident memory of a process tree (the box's "VM"), from /proc."""
    try:
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        page = os.sysconf("SC_PAGE_SIZE")
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ppid = int(parts[1])
            children.setdefault(ppid, []).append(int(d))
            rss[int(d)] = int(parts[21]) * page
        total, todo = 0, [pid]
        while todo:
            p = todo.pop()
            total += rss.get(p, 0)
            todo.extend(children.get(p, []))
        return total
    except OSError:
        return None


# ---------------------------------------------------------------------------
# snapshots


_SNAP_BAD = ("/", "\\", "\x00")


def _check_snapshot_name(name: str) -> None:
    if (not name or any(c in name for c in _SNAP_BAD) or name.startswith(".") or len(name) > 255):
        raise errors.InvalidArgumentError.make(
            f"invalid snapshot name '{name}': must be 1-255 characters, must not start with '.', "
            "and must not contain '/', '\\' or NUL")


class SnapshotHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.SnapshotHandle' instances")

    @classmethod
    def _new(cls, box: Box) -> "SnapshotHandle":
        h = cls.__new__(cls)
        h._box = box
        return h

    def __repr__(self) -> str:
        return f'SnapshotHandle(box_id="{self._box._id}")'

    @staticmethod
    def _info(box_id: str, s: dict) -> SnapshotInfo:
        return SnapshotInfo._make(id=s["id"], box_id=box_id, name=s["name"], created_at=s["created_at"],
                                  size_bytes=s["size_bytes"], container_disk_bytes=s["container_disk_bytes"])

    def create(self, *args, options=None, name=None):
        if args:
            raise TypeError(f"SnapshotHandle.create() takes 0 positional arguments but {len(args)} "
                            f"{'was' if len(args) == 1 else 'were'} given")
        if name is None:
            raise TypeError("SnapshotHandle.create() missing 1 required keyword argument: 'name'")
        conv_instance("options", options, SnapshotOptions)
        name = conv_str("name", name, optional=False)
        box = self._box
        core, box_id = box._core, box._id

        async def run():
            rec = box._checked()
            _check_snapshot_name(name)
            if not core.has_disk(box_id):
                raise errors.StorageError.make("Failed to write snapshot marker: No such file or directory (os error 2)")
            if any(s["name"] == name for s in rec["snapshots"]):
                raise errors.AlreadyExistsError.make(f"snapshot '{name}' already exists for box '{box_id}'")
            sdir = os.path.join(core.box_dir(box_id), "snapshots", name)

            def work():
                if os.path.exists(sdir):
                    shutil.rmtree(sdir)
                os.makedirs(sdir)
                shutil.copytree(core.disk(box_id), os.path.join(sdir, "disk"), symlinks=True)
                return _sandbox.tree_size(os.path.join(sdir, "disk"))
            async with core.lock_for(box_id):
                size = await asyncio.get_running_loop().run_in_executor(None, work)
            snap = {"id": _new_id(8), "name": name, "created_at": int(time.time()), "created_ns": time.time_ns(),
                    "size_bytes": size, "container_disk_bytes": size}
            rec["snapshots"].append(snap)
            rec["current_snapshot"] = name
            core.save(rec)
            return self._info(box_id, snap)
        return submit(run)

    def list(self):
        core, box_id = self._box._core, self._box._id

        async def run():
            rec = core.records.get(box_id)
            if rec is None:
                return []
            snaps = sorted(rec["snapshots"], key=lambda s: s["created_ns"], reverse=True)
            return [self._info(box_id, s) for s in snaps]
        return submit(run)

    def get(self, name):
        name = conv_str("name", name, optional=False)
        core, box_id = self._box._core, self._box._id

        async def run():
            rec = core.records.get(box_id)
            for s in (rec or {}).get("snapshots", []):
                if s["name"] == name:
                    return self._info(box_id, s)
            return None
        return submit(run)

    def restore(self, name):
        name = conv_str("name", name, optional=False)
        box = self._box
        core, box_id = box._core, box._id

        async def run():
            rec = box._checked()
            if rec["status"] in ("running", "stopping"):
                raise errors.InvalidStateError.make("Cannot restore snapshot while box is running. Stop the box first.")
            if not any(s["name"] == name for s in rec["snapshots"]):
                raise errors.NotFoundError.make(f"snapshot '{name}' not found for box '{box_id}'")
            sdisk = os.path.join(core.box_dir(box_id), "snapshots", name, "disk")

            def work():
                disk = core.disk(box_id)
                if os.path.exists(disk):
                    shutil.rmtree(disk)
                shutil.copytree(sdisk, disk, symlinks=True)
            async with core.lock_for(box_id):
                await asyncio.get_running_loop().run_in_executor(None, work)
            rec["current_snapshot"] = name
            core.save(rec)
            return ()
        return submit(run)

    def remove(self, name):
        name = conv_str("name", name, optional=False)
        box = self._box
        core, box_id = box._core, box._id

        async def run():
            rec = box._checked()
            snap = next((s for s in rec["snapshots"] if s["name"] == name), None)
            if snap is None:
                raise errors.NotFoundError.make(f"snapshot '{name}' not found for box '{box_id}'")
            if rec.get("current_snapshot") == name:
                raise errors.InvalidStateError.make(
                    "Cannot remove snapshot: current disk depends on this snapshot. Restore a different snapshot first.")
            sdir = os.path.join(core.box_dir(box_id), "snapshots", name)
            await asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(sdir, ignore_errors=True))
            rec["snapshots"] = [s for s in rec["snapshots"] if s["name"] != name]
            core.save(rec)
            return ()
        return submit(run)


class NetworkHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.NetworkHandle' instances")

    @classmethod
    def _new(cls, box: Box) -> "NetworkHandle":
        h = cls.__new__(cls)
        h._box = box
        return h

    def tunnel(self, port):
        port = conv_int("port", port, 0, 65535, optional=False)
        box = self._box

        async def run():
            from ._tunnel import BoxTunnel
            if port == 0:
                raise errors.InvalidArgumentError.make("tunnel port must be non-zero")
            box._checked()
            await box._core.start(box._id)
            return BoxTunnel._new(port)
        return submit(run)

    def revoke_tunnel(self, port):
        conv_int("port", port, 0, 65535, optional=False)
        return submit(_async_value(()))

    def update_outbound(self, spec):
        box = self._box

        async def run():
            rec = box._core.records.get(box._id)
            if rec is None or rec["status"] != "running":
                raise errors.InvalidStateError.make("outbound policy updates require a running box")
            rec = box._checked()
            rec["network"]["outbound"] = {"mode": spec.mode, "allow_net": list(spec.allow_net)}
            box._core.save(rec)
            return ()
        return submit(run)

    def update_inbound(self, spec):
        return submit(_async_raise(errors.UnsupportedError.make(
            "this backend does not support inbound policy updates")))


"""The simulated "VM": a bubblewrap sandbox running a tiny guest agent.

A running box is one ``bwrap`` process tree with its own mount, PID, IPC and
UTS namespaces (the host network is shared).  Its root is the box's private
``disk/`` directory; the host's ``/usr`` and ``/etc`` are bound read-only on
top (``/bin``, ``/lib*``, ``/sbin`` follow the host's layout), ``/proc`` and
a minimal ``/dev`` are fresh, and ``/tmp`` and ``/dev/shm`` are per-box
directories outside the disk that the runtime wipes on every stop and start
(the simulator's tmpfs).

Inside, ``/usr/bin/python3`` runs AGENT, which receives exec requests over an
inherited SOCK_SEQPACKET socket together with the stdio descriptors (and a
control socket) of the new process, spawns it, reports its pid and its exit
status, and delivers signals.  Killing ``bwrap`` kills the whole box.
"""

from __future__ import annotations

import os
import shutil
import stat

SYSTEM_PYTHON = "/usr/bin/python3"


def guest_python() -> tuple[str, list[str]]:
    """Interpreter for the in-box agent and the bwrap arguments it needs.

    The host's /usr/bin/python3 is visible in every box; without it, the
    interpreter running the simulator is bound read-only at its own prefix.
    """
    if os.path.exists(SYSTEM_PYTHON):
        return SYSTEM_PYTHON, []
    import sys
    prefix = os.path.realpath(sys.base_prefix)
    exe = os.path.join(prefix, "bin", "python3")
    if not os.path.exists(exe):
        exe = os.path.realpath(sys.executable)
    if prefix == "/usr" or prefix.startswith("/usr/"):
        return exe, []
    return exe, ["--ro-bind", prefix, prefix]

# Host base shared read-only with every box (directories or symlinks).
RO_BASE = ("/usr", "/etc")
LINK_OR_RO = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# Directories created in a fresh box disk (a minimal root filesystem).
DISK_DIRS = {"root": 0o700, "home": 0o755, "opt": 0o755, "var": 0o755, "var/tmp": 0o1777,
             "var/log": 0o755, "srv": 0o755, "mnt": 0o755, "media": 0o755, "run": 0o755,
             "work": 0o755, "tmp": 0o1777, "dev": 0o755, "dev/shm": 0o1777}

PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

AGENT = r'''
import json, os, pwd, grp, signal, socket, subprocess, sys, threading, fcntl, termios
main = socket.socket(fileno=int(sys.argv[1]))

def resolve(user, env):
    if not user:
        return None, None, "/root"
    u, _, g = user.partition(":")
    try:
        if u.isdigit():
            uid = int(u)
            try:
                ent = pwd.getpwuid(uid); home = ent.pw_dir; gid = ent.pw_gid
            except KeyError:
                home = "/"; gid = uid
        else:
            ent = pwd.getpwnam(u); uid = ent.pw_uid; gid = ent.pw_gid; home = ent.pw_dir
    except KeyError:
        raise LookupError("unable to find user %s: no matching entries in passwd file" % u)
    if g:
        if g.isdigit():
            gid = int(g)
        else:
            try:
                gid = grp.getgrnam(g).gr_gid
            except KeyError:
                raise LookupError("unable to find group %s: no matching entries in group file" % g)
    return uid, gid, home

def send(sock, obj):
    try:
        sock.send(json.dumps(obj).encode())
    except OSError:
        pass

def serve(head, fds):
    fin, fout, ferr, fctl = fds[:4]
    ctl = socket.socket(fileno=fctl)
    if len(fds) > 4:  # the request body comes through a pipe (it may be large)
        with os.fdopen(fds[4], "rb") as body:
            req = json.loads(body.read())
    else:
        req = head
    try:
        env = dict(req["env"])
        uid, gid, home = resolve(req.get("user"), env)
        env.setdefault("HOME", home)
        kw = {}
        if uid is not None:
            kw.update(user=uid, group=gid, extra_groups=[])
        if req.get("tty"):
            def ctty():
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            kw["preexec_fn"] = ctty
        argv = req["argv"]
        p = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, cwd=req["cwd"], env=env,
                             start_new_session=True, close_fds=True, **kw)
    except FileNotFoundError as e:
        if e.filename == req["cwd"] or (e.filename is None and not os.path.isdir(req["cwd"])):
            msg = "failed to spawn %s: working directory %s: No such file or directory" % (req["argv"][0], req["cwd"])
        else:
            msg = "failed to spawn %s: No such file or directory (os error 2)" % req["argv"][0]
        send(ctl, {"error": msg}); ctl.close(); return
    except Exception as e:
        send(ctl, {"error": "failed to spawn %s: %s" % (req["argv"][0], e)}); ctl.close(); return
    finally:
        for fd in (fin, fout, ferr):
            try:
                os.close(fd)
            except OSError:
                pass
    send(ctl, {"pid": p.pid})

    def control():
        while True:
            try:
                data = ctl.recv(4096)
            except OSError:
                return
            if not data:
                return
            try:
                os.kill(p.pid, json.loads(data)["signal"])
            except (ProcessLookupError, ValueError, KeyError):
                pass

    threading.Thread(target=control, daemon=True).start()
    rc = p.wait()
    send(ctl, {"exit": rc})
    try:
        ctl.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

main.send(b'{"ready": true}')
while True:
    try:
        msg, fds, _flags, _addr = socket.recv_fds(main, 1 << 16, 5)
    except OSError:
        break
    if not msg:
        break
    threading.Thread(target=serve, args=(json.loads(msg), fds), daemon=True).start()
'''


def prepare_disk(disk: str) -> None:
    """Create a fresh box disk (a minimal root tree) if it does not exist."""
    for rel, mode in DISK_DIRS.items():
        p = os.path.join(disk, rel)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
    # bwrap refuses to re-create its /bin-style symlinks when they already exist
    for d in LINK_OR_RO:
        p = os.path.join(disk, d.lstrip("/"))
        if os.path.islink(p):
            os.unlink(p)


def wipe_dir(path: str, mode: int = 0o1777) -> None:
    """Empty ``path`` (the simulated tmpfs), creating it if needed."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


def bwrap_argv(disk: str, tmp_dir: str, shm_dir: str, agent_fd: int, hostname: str,
               volumes: list[dict]) -> list[str]:
    argv = ["bwrap", "--bind", disk, "/"]
    for d in RO_BASE:
        argv += ["--ro-bind", d, d]
    for d in LINK_OR_RO:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--bind", tmp_dir, "/tmp", "--bind", shm_dir, "/dev/shm"]
    for v in volumes:
        if v.get("host_path"):
            argv += ["--ro-bind" if v.get("read_only") else "--bind", v["host_path"], v["guest_path"]]
    python, binds = guest_python()
    argv += binds
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", hostname,
             "--die-with-parent", "--chdir", "/",
             "--", python, "-I", "-S", "-c", AGENT, str(agent_fd)]
    return argv


def is_ro_base(guest_path: str) -> str | None:
    """Host path backing ``guest_path`` when it lies in the read-only host base."""
    for d in RO_BASE + LINK_OR_RO:
        if guest_path == d or guest_path.startswith(d + "/"):
            if os.path.islink(d):
                target = os.path.join("/", os.readlink(d))
                return os.path.normpath(target + guest_path[len(d):])
            return guest_path
    return None


def tree_size(path: str) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total

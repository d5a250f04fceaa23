"""The simulator's engine-side state of one home: box records on disk, lookup, info and the box
lifecycle (create, start, stop, remove) over bubblewrap sandboxes. Executions and file access
are ``_CoreIO``'s (``_core_io.py``); the Python-facing runtime is ``_runtime.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shutil
import signal as _signal
import socket
import subprocess
import time
import weakref
from typing import Any

from . import _sandbox, errors
from ._conv import conv_instance
from ._core_io import (_SETPRIV, BOOT_DELAY_ENV, BOOT_TIMEOUT, KVM_ENV, _CoreIO, _env_float, _Live, _new_id,
                       _publish_ports, _rfc3339, _wait_proc, _watch_sandbox)
from ._results import (BoxInfo, BoxStateInfo, HealthState, HealthStatus, InboundNetworkInfo, NetworkInfo,
                       OutboundNetworkInfo, PublishedPort)
from ._types import BoxOptions


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


class _Core(_CoreIO):
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

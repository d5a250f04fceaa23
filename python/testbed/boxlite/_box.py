"""``Box``, the handle of one box, and the archives (export / import) of a box.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tarfile
import tempfile
import time

from . import _sandbox, errors
from ._conv import conv_bool, conv_env, conv_float, conv_instance, conv_str, conv_str_list
from ._core import _Core
from ._core_io import _docker_cp, _new_id, _rfc3339
from ._engine import submit
from ._exec import Execution
from ._handles import NetworkHandle, SnapshotHandle
from ._results import BoxMetrics
from ._types import CloneOptions, CopyOptions, ExportOptions


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

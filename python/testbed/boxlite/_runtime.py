"""Runtime (``Boxlite``): one live instance per home directory; boxes are ``_box.py``'s, the
engine-side state ``_core.py``'s.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal as _signal
import threading
import weakref

from . import errors
from ._box import Box, _import_archive
from ._conv import conv_bool, conv_instance, conv_int, conv_str
from ._core import _check_box_options, _Core
from ._engine import submit
from ._handles import ImageHandle, VolumeHandle
from ._results import RuntimeMetrics
from ._types import Options


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

"""Runtimes (one per boxliteHome, shared by every client naming it) and the cached SDK handles of
their boxes.
"""

import asyncio
import fcntl
import gc
import os
import time

from boxlite_bridge import state
from boxlite_bridge.jobs import _cancel_jobs
from boxlite_bridge.state import EXECS, HANDLES, HOME_FREE_WAIT_S, RUNTIMES, BridgeNotFound, EnvironmentProblem


def _version_tuple(text):
    out = []
    for part in str(text).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _require_sdk(python_path):
    if state.sdk is None:
        raise EnvironmentProblem(
            f"the boxlite Python SDK is not importable from {python_path} ({state.sdk_import_error}); "
            f"install it into that interpreter: {python_path} -m pip install boxlite"
        )
    version = getattr(state.sdk, "__version__", None)
    if version is not None and _version_tuple(version) < state.MIN_SDK:
        raise EnvironmentProblem(
            f"the boxlite Python SDK {version} at {python_path} is too old; local mode needs "
            f"boxlite >= {'.'.join(map(str, state.MIN_SDK))}: {python_path} -m pip install -U boxlite"
        )


async def op_acquire(_blob, home, python_path):
    _require_sdk(python_path)
    entry = RUNTIMES.get(home)
    if entry is None:
        os.makedirs(home, exist_ok=True)
        rt = state.sdk.Boxlite(state.sdk.Options(home_dir=home))
        entry = RUNTIMES[home] = [rt, 0]
    entry[1] += 1
    return {"sdk_version": getattr(state.sdk, "__version__", None), "home": home}


async def op_release(_blob, home):
    entry = RUNTIMES.get(home)
    if entry is None:
        return None
    entry[1] -= 1
    if entry[1] > 0:
        return None
    del RUNTIMES[home]
    _forget_handles(home)
    rt = entry[0]
    for rec in list(EXECS.values()):
        if rec.home == home:
            rec.forget()
    # No client is left to want their answers; while they run they hold the runtime.
    await _cancel_jobs(lambda h, _op, _box: h == home)
    try:
        await rt.shutdown()
    finally:
        try:
            rt.close()
        except Exception:  # noqa: BLE001 - close is a no-op in 0.10.8
            pass
        del rt, entry
        gc.collect()  # the home lock is released only when the runtime and its boxes are dropped
        await _until_home_free(home)
    return None


async def _until_home_free(home):
    """Waits (bounded) until nothing holds the home's lock, so that dispose() resolves with the
    home free for the next runtime, in this process or another. The SDK takes a `flock` on
    `<home>/.lock` and lets go of it on its own threads once the runtime's last reference is
    gone: a moment after the drop, longer when a start was cancelled mid-boot. Returns whether
    the home is free (True when there is no lock file: nothing holds it)."""
    try:
        fd = os.open(os.path.join(home, ".lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        deadline = time.monotonic() + HOME_FREE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False  # the next runtime on this home says clearly that it is in use
                await asyncio.sleep(0.02)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
    finally:
        os.close(fd)


def _rt(home):
    entry = RUNTIMES.get(home)
    if entry is None:
        raise RuntimeError(f"no runtime is open for {home}")
    return entry[0]


async def _box(home, box_id):
    """A handle of the box: the cached one, else a fresh one (then cached)."""
    box = HANDLES.get((home, box_id))
    if box is None:
        box = await _rt(home).get(box_id)
        if box is None:
            raise BridgeNotFound("box", box_id)
        HANDLES[(home, box_id)] = box
    return box


def _forget_handles(home, box_id=None):
    """Drops the cached handles of a box (by id or name), or of every box of `home`."""
    for key, box in list(HANDLES.items()):
        if key[0] == home and (box_id is None or box_id in (key[1], getattr(box, "id", None))):
            del HANDLES[key]


def _invalidated(exc):
    return "Handle invalidated" in str(exc)


async def _use_box(home, box_id, use):
    """`await use(handle)`; a cached handle the SDK invalidated (the box was stopped since) is
    replaced by a fresh one and `use` runs again (the SDK refused it before doing anything)."""
    cached = (home, box_id) in HANDLES
    box = await _box(home, box_id)
    try:
        return await use(box)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a stale handle
        if not cached or not _invalidated(exc):
            raise
        _forget_handles(home, box_id)
        return await use(await _box(home, box_id))


async def _status(home, box_id):
    info = await _rt(home).get_info(box_id)
    if info is None:
        raise BridgeNotFound("box", box_id)
    return info.state.status

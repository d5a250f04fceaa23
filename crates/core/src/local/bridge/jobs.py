"""Start-up and job dispatch: `setup` makes the embedded interpreter see the user's environment,
imports the SDK and creates the loop; `_drain` turns each job Rust queued into a task of its op,
and the job's outcome is reported through its `done` callback as plain data.
"""

import asyncio
import json
import os
import sys
import traceback

from boxlite_bridge import state
from boxlite_bridge.state import CANCEL_WAIT_S, JOBS

_take_jobs = None
_wake_fd = -1



def setup(take_jobs, wake_fd, python_path, probe_json):
    """Called once on the loop thread before `run_forever`; returns the environment facts."""
    global _take_jobs, _wake_fd
    probe = json.loads(probe_json)
    state.MIN_SDK = tuple(probe.get("min_sdk") or state.MIN_SDK)
    _honour_environment(python_path, probe)
    _import_sdk(python_path)
    state.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(state.loop)
    _take_jobs = take_jobs
    _wake_fd = wake_fd
    state.loop.add_reader(wake_fd, _drain)
    return json.dumps({
        "python_version": list(sys.version_info[:3]),
        "sdk_version": getattr(state.sdk, "__version__", None) if state.sdk else None,
        "sdk_file": getattr(state.sdk, "__file__", None) if state.sdk else None,
        "sdk_import_error": state.sdk_import_error,
        "sys_path": list(sys.path),
        "executable": sys.executable,
    })


def run_forever():
    state.loop.run_forever()


def _honour_environment(python_path, probe):
    """Make the embedded interpreter see what `python_path` sees (a venv, `.pth` files)."""
    import site

    wanted = [p for p in probe.get("sys_path", []) if p]
    before = list(sys.path)
    for p in wanted:
        if p in sys.path:
            continue
        if p.rstrip("/").endswith(("site-packages", "dist-packages")):
            site.addsitedir(p)  # processes .pth files (editable installs)
        else:
            sys.path.append(p)
    # The interpreter's order wins; site-packages the user's interpreter does not see (the base
    # installation's, when a venv hides them) are dropped so they cannot shadow the venv.
    added = [p for p in sys.path if p not in before and p not in wanted]
    others = [
        p for p in before
        if p not in wanted and not p.rstrip("/").endswith(("site-packages", "dist-packages"))
    ]
    sys.path[:] = wanted + added + others
    sys.executable = probe.get("executable") or python_path


def _import_sdk(python_path):
    try:
        import boxlite  # noqa: PLC0415

        state.sdk = boxlite
    except BaseException as exc:  # noqa: BLE001 - reported to the user, whatever it is
        state.sdk_import_error = f"{type(exc).__name__}: {exc}"


def _drain():
    try:
        os.read(_wake_fd, 4096)
    except BlockingIOError:
        pass
    for op, args, blob, done in _take_jobs():
        try:
            kwargs = json.loads(args)
            coro = state.OPS[op](blob, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            done(False, _describe(exc))
            continue
        task = state.loop.create_task(_job(coro, done))
        JOBS[task] = (kwargs.get("home"), op, kwargs.get("box_id"))
        task.add_done_callback(lambda t, done=done, coro=coro: _settle(done, t, coro))


# What `_job` returns once it has reported the outcome itself.
_REPORTED = object()
_CANCELLED = ("CancelledError", None, "the operation was cancelled", ["CancelledError"], "", None)


async def _job(coro, done):
    """Runs a job and reports its outcome as soon as there is one: a done callback runs one
    loop iteration later, which every exec would wait for. `_settle` (the task's done callback)
    reports what this cannot: a job cancelled before it started, or an exception that stops
    the loop (KeyboardInterrupt, SystemExit)."""
    try:
        value = await coro
    except asyncio.CancelledError:
        done(False, _CANCELLED)
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        done(False, _describe(exc))
        return _REPORTED
    _report(done, value)
    return _REPORTED


async def _cancel_jobs(matches):
    """Cancels the running jobs whose (home, op, box id) `matches`, other than the caller's,
    and waits (bounded) until they have let go of what they held."""
    me = asyncio.current_task()
    victims = [t for t, meta in list(JOBS.items()) if t is not me and not t.done() and matches(*meta)]
    for t in victims:
        t.cancel()
    if victims:
        await asyncio.wait(victims, timeout=CANCEL_WAIT_S)


def _settle(done, task, coro):
    """A job's task ended: forget it, and report its outcome unless `_job` did (`done` ignores
    a second report anyway)."""
    JOBS.pop(task, None)
    try:
        if task.cancelled():
            coro.close()  # never started if cancelled before `_job` ran: no "never awaited" warning
            done(False, _CANCELLED)
            return
        exc = task.exception()
        if exc is not None:
            done(False, _describe(exc))
        elif task.result() is not _REPORTED:
            _report(done, task.result())
    except BaseException as exc:  # noqa: BLE001 - done must always be called, and never raise
        _report_broken(done, exc)


def _report(done, value):
    """Reports a job's result as JSON text plus blobs (a `(value, [bytes, ...])` tuple)."""
    try:
        blobs = []
        if isinstance(value, tuple):
            value, blobs = value
        done(True, (json.dumps(value), blobs))
    except BaseException as exc:  # noqa: BLE001 - done must always be called, and never raise
        _report_broken(done, exc)


def _report_broken(done, exc):
    try:
        done(False, ("BridgeError", None, f"{type(exc).__name__}: {exc}", ["BridgeError"], "", None))
    except BaseException:  # noqa: BLE001
        pass


def _describe(exc):
    """(type name, SDK code, message, MRO class names, traceback, extra JSON)."""
    mro = [c.__name__ for c in type(exc).__mro__]
    code = getattr(exc, "code", None)
    if not isinstance(code, str):
        code = None
    extra = getattr(exc, "extra", None)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    return (type(exc).__name__, code, str(exc), mro, tb, json.dumps(extra) if extra is not None else None)

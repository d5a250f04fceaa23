"""Glue between the Rust engine (local/engine.rs) and the boxlite SDK.

Everything here runs on the one `py-asyncio` thread, inside its persistent event loop: the SDK's
methods return Futures bound to the loop that is running when they are called, so no SDK method
is ever called from another thread. Rust submits jobs without taking the GIL (a queue plus one
byte on a socketpair); `_drain` turns each job into a task of one of the `op_*` coroutines and
reports the outcome through the job's `done` callback as plain data (JSON text and bytes), so no
Python object ever crosses to Rust threads.
"""

import asyncio
import gc
import json
import os
import sys
import time
import traceback

# The SDK module, or the exception that importing it raised (reported on first use).
sdk = None
sdk_import_error = None

# The oldest SDK local mode supports; set from the Rust side's constant by `setup`.
MIN_SDK = (0, 10, 0)

_loop = None
_take_jobs = None
_wake_fd = -1

# boxliteHome -> [Boxlite runtime, number of clients using it]
RUNTIMES = {}
# execution id -> ExecRecord
EXECS = {}
# (boxliteHome, box id or name as the caller gave it) -> SDK box handle. `rt.get` per call costs
# a round trip to the SDK's engine; a handle stays valid until the box stops (then the SDK
# refuses it with "Handle invalidated", and `_use_box` fetches a fresh one).
HANDLES = {}

# Jobs still running: task -> (boxliteHome or None, op name, box id or None). A runtime is shut
# down only once no job uses it any more (a job holding it keeps the home locked).
JOBS = {}
# How long release and delete wait for the jobs they cancel to settle.
CANCEL_WAIT_S = 10.0
# Lifecycle jobs a force-delete of their box makes moot (they may wait long on the VM).
LIFECYCLE_OPS = ("start_box", "stop_box")

# How long killing an execution may take before the bridge stops waiting for the SDK.
KILL_WAIT_S = 10.0
# How long a finished execution stays readable through get_exec_output.
FINISHED_EXEC_TTL_S = 600.0
# Upper bounds of one exec_next batch (the Rust side merges the chunks).
BATCH_EVENTS = 512
BATCH_BYTES = 1 << 20
# Output an execution keeps for readers that replay it (get_exec_output, terminals): the most
# recent bytes only, so a terminal open for hours holds a bounded amount (older output is
# dropped once the log passes the limit; a reader that far behind resumes at the oldest kept).
REPLAY_LIMIT_BYTES = 4 << 20


class BridgeNotFound(Exception):
    """A box, execution or snapshot the caller named does not exist."""

    def __init__(self, what, ident):
        super().__init__(f"{what} '{ident}' not found")
        self.extra = {"what": what, "id": ident}


class BridgeTimeout(Exception):
    """An exec ran past its timeout and was killed."""

    def __init__(self, operation, after_ms):
        super().__init__(f"{operation} timed out after {after_ms} ms")
        self.extra = {"operation": operation, "after_ms": after_ms}


class EnvironmentProblem(Exception):
    """The Python environment cannot run the SDK; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Start-up and job dispatch


def setup(take_jobs, wake_fd, python_path, probe_json):
    """Called once on the loop thread before `run_forever`; returns the environment facts."""
    global _loop, _take_jobs, _wake_fd, MIN_SDK
    probe = json.loads(probe_json)
    MIN_SDK = tuple(probe.get("min_sdk") or MIN_SDK)
    _honour_environment(python_path, probe)
    _import_sdk(python_path)
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _take_jobs = take_jobs
    _wake_fd = wake_fd
    _loop.add_reader(wake_fd, _drain)
    return json.dumps({
        "python_version": list(sys.version_info[:3]),
        "sdk_version": getattr(sdk, "__version__", None) if sdk else None,
        "sdk_file": getattr(sdk, "__file__", None) if sdk else None,
        "sdk_import_error": sdk_import_error,
        "sys_path": list(sys.path),
        "executable": sys.executable,
    })


def run_forever():
    _loop.run_forever()


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
    global sdk, sdk_import_error
    try:
        import boxlite  # noqa: PLC0415

        sdk = boxlite
    except BaseException as exc:  # noqa: BLE001 - reported to the user, whatever it is
        sdk_import_error = f"{type(exc).__name__}: {exc}"


def _drain():
    try:
        os.read(_wake_fd, 4096)
    except BlockingIOError:
        pass
    for op, args, blob, done in _take_jobs():
        try:
            kwargs = json.loads(args)
            coro = OPS[op](blob, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            done(False, _describe(exc))
            continue
        task = _loop.create_task(_job(coro, done))
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


# --------------------------------------------------------------------------------------------
# Runtimes (one per boxliteHome, shared by every client naming it)


def _version_tuple(text):
    out = []
    for part in str(text).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _require_sdk(python_path):
    if sdk is None:
        raise EnvironmentProblem(
            f"the boxlite Python SDK is not importable from {python_path} ({sdk_import_error}); "
            f"install it into that interpreter: {python_path} -m pip install boxlite"
        )
    version = getattr(sdk, "__version__", None)
    if version is not None and _version_tuple(version) < MIN_SDK:
        raise EnvironmentProblem(
            f"the boxlite Python SDK {version} at {python_path} is too old; local mode needs "
            f"boxlite >= {'.'.join(map(str, MIN_SDK))}: {python_path} -m pip install -U boxlite"
        )


async def op_acquire(_blob, home, python_path):
    _require_sdk(python_path)
    entry = RUNTIMES.get(home)
    if entry is None:
        os.makedirs(home, exist_ok=True)
        rt = sdk.Boxlite(sdk.Options(home_dir=home))
        entry = RUNTIMES[home] = [rt, 0]
    entry[1] += 1
    return {"sdk_version": getattr(sdk, "__version__", None), "home": home}


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
    return None


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


# --------------------------------------------------------------------------------------------
# Boxes


def _record(info):
    state = getattr(info, "state", None)
    status = getattr(state, "status", None) if state is not None else None
    rec = {
        "id": info.id,
        "name": getattr(info, "name", None),
        "status": str(status) if status is not None else "unknown",
        "created_at": str(getattr(info, "created_at", "") or ""),
        "image": str(getattr(info, "image", "") or ""),
    }
    started = getattr(info, "started_at", None)
    if started:
        rec["started_at"] = str(started)
    cpus = getattr(info, "cpus", None)
    if isinstance(cpus, int):
        rec["cpu"] = cpus
    mem = getattr(info, "memory_mib", None)
    if isinstance(mem, int):
        rec["memory_mb"] = mem
    return rec


def _network(spec):
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"mode": spec}
    if not isinstance(spec, dict):
        raise TypeError("network must be an object like {mode, allow_net}")
    outbound = spec.get("outbound", spec)
    mode = outbound.get("mode", "enabled")
    allow = outbound.get("allow_net", outbound.get("allowNet", [])) or []
    return sdk.NetworkSpec(outbound=sdk.OutboundNetworkSpec(mode=mode, allow_net=list(allow)))


def _box_options(p):
    kw = {}
    if p.get("rootfs_path"):
        kw["rootfs_path"] = p["rootfs_path"]
    elif p.get("image"):
        kw["image"] = p["image"]
    for src, dst in (("cpu", "cpus"), ("memory_mb", "memory_mib"), ("disk_size_gb", "disk_size_gb"),
                     ("working_dir", "working_dir"), ("user", "user")):
        if p.get(src) is not None:
            kw[dst] = p[src]
    if p.get("env"):
        kw["env"] = [(str(k), str(v)) for k, v in p["env"].items()]
    if p.get("ports"):
        kw["ports"] = [(int(h), int(g)) for h, g in p["ports"]]
    # Boxes survive stop unless the caller asks otherwise (the SDK's default deletes them).
    kw["auto_remove"] = bool(p.get("auto_remove", False))
    if p.get("cmd") is not None:
        kw["cmd"] = [str(a) for a in p["cmd"]]
    ep = p.get("entrypoint")
    if ep is not None:
        kw["entrypoint"] = [ep] if isinstance(ep, str) else [str(a) for a in ep]
    if p.get("network") is not None:
        kw["network"] = _network(p["network"])
    if p.get("secrets"):
        kw["secrets"] = [
            sdk.Secret(s["name"], s["value"], hosts=list(s.get("hosts", [])), placeholder=s.get("placeholder"))
            for s in p["secrets"]
        ]
    return sdk.BoxOptions(**kw)


async def op_create_box(_blob, home, params):
    rt = _rt(home)
    box = await rt.create(_box_options(params), name=params.get("name"))
    HANDLES[(home, box.id)] = box
    info = await rt.get_info(box.id)
    return _record(info if info is not None else await box.info())


async def op_get_box(_blob, home, box_id):
    info = await _rt(home).get_info(box_id)
    if info is None:
        raise BridgeNotFound("box", box_id)
    return _record(info)


async def op_list_boxes(_blob, home):
    return [_record(i) for i in await _rt(home).list_info()]


async def op_delete_box(_blob, home, box_id, force):
    _forget_handles(home, box_id)
    await _rt(home).remove(box_id, force=bool(force))
    if force:
        # A start still waiting on the removed box's VM would only fail, long after.
        await _cancel_jobs(lambda h, op, box: h == home and box == box_id and op in LIFECYCLE_OPS)
    for rec in list(EXECS.values()):
        if rec.home == home and rec.box_id == box_id:
            rec.forget()
    return None


async def op_start_box(_blob, home, box_id):
    """Starts the box and answers with it (the SDK's start returns once it runs)."""
    await _use_box(home, box_id, lambda box: box.start())
    return await op_get_box(None, home, box_id)


async def op_stop_box(_blob, home, box_id):
    # stop() invalidates every handle of the box: the cached ones go.
    try:
        await _use_box(home, box_id, lambda box: box.stop())
    finally:
        _forget_handles(home, box_id)
    return None


# --------------------------------------------------------------------------------------------
# Executions


class ExecRecord:
    """One running or finished execution: its SDK handle and an event log readers replay."""

    def __init__(self, home, box_id, execution, owned):
        self.home = home
        self.box_id = box_id
        self.execution = execution
        self.id = execution.id()
        self.owned = owned  # exec_stream: dies with its reader
        self.events = []  # (kind, bytes) with kind "o" or "e"
        self.size = 0  # bytes in self.events
        self.base = 0  # index of events[0] in the whole log
        self.exit = None
        self.finished = False
        self.error = None
        self.changed = asyncio.Event()
        self.stdin = None
        self.pump = None

    def notify(self):
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def append(self, kind, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if data:
            self.events.append((kind, bytes(data)))
            self.size += len(data)
            if self.size > REPLAY_LIMIT_BYTES:
                # Trim to three quarters at once, so trimming stays rare.
                cut, keep = 0, self.size
                while cut < len(self.events) - 1 and keep > REPLAY_LIMIT_BYTES * 3 // 4:
                    keep -= len(self.events[cut][1])
                    cut += 1
                self.drop_first(cut)
            self.notify()

    def drop_first(self, count):
        """Forgets the `count` oldest events."""
        if count <= 0:
            return
        self.size -= sum(len(data) for _, data in self.events[:count])
        del self.events[:count]
        self.base += count

    def forget(self):
        EXECS.pop(self.id, None)
        if self.pump is not None and not self.pump.done():
            self.pump.cancel()

    async def run(self, timeout):
        async def drain(stream, kind):
            if stream is None:
                return
            async for chunk in stream:
                self.append(kind, chunk)

        async def body():
            await asyncio.gather(drain(_take(self.execution, "stdout"), "o"),
                                 drain(_take(self.execution, "stderr"), "e"))
            return await self.execution.wait()

        try:
            result = await _within(timeout, self.execution, body())
            self.exit = getattr(result, "exit_code", None)
            msg = getattr(result, "error_message", None)
            if msg and self.exit is None:
                self.error = str(msg)
        except asyncio.CancelledError:
            await _kill(self.execution)
            raise
        except BaseException as exc:  # noqa: BLE001 - kept for the reader
            self.error = exc
        finally:
            self.finished = True
            self.notify()
            if not self.owned:
                _loop.call_later(FINISHED_EXEC_TTL_S, lambda: EXECS.get(self.id) is self and self.forget())


def _take(execution, which):
    try:
        return getattr(execution, which)()
    except Exception:  # noqa: BLE001 - "stream not available" (tty executions have no stderr)
        return None


async def _kill(execution):
    try:
        await asyncio.wait_for(execution.kill(), KILL_WAIT_S)
    except Exception:  # noqa: BLE001 - already gone, or the SDK does not answer
        pass


async def _within(timeout, execution, work):
    """Awaits `work`, the coroutine that runs a started execution to its end; past `timeout`
    seconds (if set) the execution is killed and BridgeTimeout raised. This is local mode's only
    exec deadline: the Rust side runs no timer of its own (docs/architecture.md)."""
    if timeout is None or timeout <= 0:
        return await work
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        await _kill(execution)
        raise BridgeTimeout("exec", int(timeout * 1000)) from None


async def _start_exec(home, box_id, req):
    cmd = [str(a) for a in req.get("cmd") or []]
    if not cmd:
        raise ValueError("cmd must name a program")
    kw = {"args": cmd[1:]}
    if req.get("env"):
        kw["env"] = [(str(k), str(v)) for k, v in req["env"].items()]
    if req.get("tty"):
        kw["tty"] = True
    if req.get("working_dir"):
        kw["cwd"] = req["working_dir"]
    timeout = req.get("timeout_seconds")
    if timeout is not None and timeout > 0:
        # The SDK is given the deadline a little later than our own kill (`_within`), so ours
        # decides and the SDK's is only the fallback in case ours is lost.
        kw["timeout_secs"] = float(timeout) + 5.0
    return await _use_box(home, box_id, lambda box: box.exec(cmd[0], **kw)), timeout


async def _collect(stream):
    parts = []
    if stream is not None:
        async for chunk in stream:
            parts.append(chunk.encode("utf-8", "surrogateescape") if isinstance(chunk, str) else bytes(chunk))
    return b"".join(parts)


async def op_exec(_blob, home, box_id, request):
    """A whole exec in one job: start, then drain both streams, close stdin and wait, all at
    once (each is a round trip to the SDK's engine; concurrently they cost about one)."""
    execution, timeout = await _start_exec(home, box_id, request)
    pending = []
    try:
        out, err, result = await _within(timeout, execution, _finish(execution, pending))
    except asyncio.CancelledError:
        _abandon(pending)
        await _kill(execution)
        raise
    except BaseException:
        _abandon(pending)
        raise
    exit_code = getattr(result, "exit_code", None)
    message = getattr(result, "error_message", None)
    if message and exit_code is None and not err:
        err = str(message).encode()
    return {"stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "exitCode": exit_code if exit_code is not None else -1}


async def _finish(execution, pending):
    """Drains stdout and stderr, closes stdin and waits, concurrently; lists in `pending` what
    runs beside it. Only stderr's drain is a task: the SDK's calls return futures already and
    stdout is drained here, since every task costs the loop thread iterations and under many
    concurrent execs the loop thread's time is the ceiling (docs/local-engine.md)."""
    stdin, stdout, stderr = _take(execution, "stdin"), _take(execution, "stdout"), _take(execution, "stderr")
    err = _loop.create_task(_collect(stderr))
    pending.append(err)
    closing = _start_close(stdin)
    if closing is not None:
        pending.append(closing)
    waiting = asyncio.ensure_future(execution.wait())
    pending.append(waiting)
    out = await _collect(stdout)
    err, result = await err, await waiting
    if closing is not None:
        try:
            await closing
        except Exception:  # noqa: BLE001 - the process may have exited and closed it first
            pass
    return out, err, result


def _start_close(stdin):
    """The future of closing `stdin`, or None when there is none to close."""
    if stdin is None:
        return None
    try:
        return asyncio.ensure_future(stdin.close())
    except Exception:  # noqa: BLE001 - already closed
        return None


def _abandon(pending):
    """Cancels what an interrupted `_finish` left running; failures already in are read so
    that asyncio does not log them as never retrieved."""
    for fut in pending:
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()


async def _close_stdin(stdin):
    if stdin is None:
        return
    try:
        await stdin.close()
    except Exception:  # noqa: BLE001
        pass


async def op_exec_open(_blob, home, box_id, request, owned):
    execution, timeout = await _start_exec(home, box_id, request)
    rec = ExecRecord(home, box_id, execution, owned=bool(owned))
    stdin = _take(execution, "stdin")
    if owned:
        await _close_stdin(stdin)
    else:
        rec.stdin = stdin
    EXECS[rec.id] = rec
    rec.pump = _loop.create_task(rec.run(timeout))
    return {"id": rec.id, "box_id": box_id, "status": "running", "exit_code": None}


def _exec(exec_id, box_id=None, home=None):
    rec = EXECS.get(exec_id)
    if rec is None or (box_id is not None and rec.box_id != box_id) or (home is not None and rec.home != home):
        raise BridgeNotFound("execution", exec_id)
    return rec


async def op_exec_next(_blob, exec_id, box_id, cursor, consume):
    """Events after `cursor` (waiting for at least one), as (kind, index) pairs plus bytes."""
    rec = _exec(exec_id, box_id)
    while cursor >= rec.base + len(rec.events) and not rec.finished:
        await rec.changed.wait()
    start = max(cursor, rec.base) - rec.base
    events, blobs, size = [], [], 0
    for kind, data in rec.events[start:]:
        if len(events) >= BATCH_EVENTS or (size and size + len(data) > BATCH_BYTES):
            break
        events.append(kind)
        blobs.append(data)
        size += len(data)
    new_cursor = rec.base + start + len(events)
    done = rec.finished and new_cursor >= rec.base + len(rec.events)
    out = {"events": events, "cursor": new_cursor, "done": done}
    if consume:
        rec.drop_first(new_cursor - rec.base)
    if done:
        if isinstance(rec.error, BaseException):
            if consume:
                rec.forget()
            raise rec.error
        out["exit_code"] = rec.exit
        if rec.error:
            out["error_message"] = str(rec.error)
        if consume:
            rec.forget()
    return out, blobs


async def op_exec_close(_blob, exec_id):
    rec = EXECS.get(exec_id)
    if rec is not None:
        if not rec.finished:
            await _kill(rec.execution)
        rec.forget()
    return None


async def op_exec_input(blob, home, box_id, exec_id, close):
    rec = _exec(exec_id, box_id, home)
    if rec.stdin is None:
        raise ValueError(f"execution {exec_id} has no open stdin")
    if blob:
        await rec.stdin.send_input(bytes(blob))
    if close:
        await rec.stdin.close()
        rec.stdin = None
    return None


async def op_exec_signal(_blob, home, box_id, exec_id, signal):
    rec = _exec(exec_id, box_id, home)
    await rec.execution.signal(int(signal))
    return None


async def op_exec_resize(_blob, home, box_id, exec_id, cols, rows):
    rec = _exec(exec_id, box_id, home)
    await rec.execution.resize_tty(int(rows), int(cols))
    return None


# --------------------------------------------------------------------------------------------
# Files (the Rust side stages archives on the host; no shell is involved anywhere)


async def op_copy_in(_blob, home, box_id, host_dir, dest):
    # `SRC/.` copies the directory's contents; a trailing `/` makes `dest` a directory.
    target = dest if dest.endswith("/") else dest + "/"
    options = sdk.CopyOptions(recursive=True, overwrite=True)
    await _use_box(home, box_id, lambda box: box.copy_in(os.path.join(host_dir, "."), target, options))
    return None


async def op_copy_out(_blob, home, box_id, src, host_dir):
    options = sdk.CopyOptions(recursive=True, overwrite=True, follow_symlinks=False)
    await _use_box(home, box_id, lambda box: box.copy_out(src, host_dir.rstrip("/") + "/", options))
    return None


# --------------------------------------------------------------------------------------------
# Snapshots, clone, export, import


def _snapshot(s):
    out = {
        "id": str(getattr(s, "id", "")),
        "box_id": str(getattr(s, "box_id", "")),
        "name": str(getattr(s, "name", "")),
        "created_at": int(getattr(s, "created_at", 0) or 0),
        "size_bytes": int(getattr(s, "size_bytes", 0) or 0),
    }
    for field in ("guest_disk_bytes", "container_disk_bytes"):
        v = getattr(s, field, None)
        if isinstance(v, int):
            out[field] = v
    return out


async def _stopped(home, box_id, action):
    """Runs `action(fresh_box)` on a stopped box and leaves the box running again if it was."""
    status = await _status(home, box_id)
    was_running = status in ("running", "starting")
    if was_running:
        await op_stop_box(None, home, box_id)
    try:
        return await action(await _box(home, box_id))
    finally:
        _forget_handles(home, box_id)  # a snapshot restore replaces the box's state
        if was_running:
            await _use_box(home, box_id, lambda box: box.start())


async def op_snapshot_create(_blob, home, box_id, name):
    async def act(box):
        return _snapshot(await box.snapshot.create(name=name))

    return await _stopped(home, box_id, act)


async def op_snapshot_list(_blob, home, box_id):
    box = await _box(home, box_id)
    return [_snapshot(s) for s in await box.snapshot.list()]


async def op_snapshot_restore(_blob, home, box_id, name):
    async def act(box):
        await box.snapshot.restore(name)

    await _stopped(home, box_id, act)
    return None


async def op_snapshot_delete(_blob, home, box_id, name):
    await _use_box(home, box_id, lambda box: box.snapshot.remove(name))
    return None


async def op_clone_box(_blob, home, box_id, name):
    clone = await _use_box(home, box_id, lambda box: box.clone_box(options=sdk.CloneOptions(), name=name))
    info = await _rt(home).get_info(clone.id)
    return _record(info if info is not None else await clone.info())


async def op_export_box(_blob, home, box_id, dest_dir):
    path = await _use_box(home, box_id, lambda box: box.export(options=sdk.ExportOptions(), dest=dest_dir))
    return str(path)


async def op_import_box(_blob, home, archive_path, name):
    rt = _rt(home)
    box = await rt.import_box(archive_path, name=name)
    info = await rt.get_info(box.id)
    return _record(info if info is not None else await box.info())


# --------------------------------------------------------------------------------------------
# Metrics and facts


RUNTIME_METRICS = ("boxes_created_total", "boxes_failed_total", "num_running_boxes", "total_commands_executed",
                   "total_exec_errors")
BOX_METRICS = ("commands_executed_total", "exec_errors_total", "bytes_sent_total", "bytes_received_total",
               "total_create_duration_ms", "guest_boot_duration_ms", "cpu_percent", "memory_bytes",
               "network_bytes_sent", "network_bytes_received", "network_tcp_connections", "network_tcp_errors",
               "stage_filesystem_setup_ms", "stage_image_prepare_ms", "stage_guest_rootfs_ms", "stage_box_config_ms",
               "stage_box_spawn_ms", "stage_container_init_ms")


def _fields(obj, known):
    """The scalar fields of a metrics object: the 0.10.8 names, plus any others it lists."""
    out = {}
    for name in list(known) + [n for n in dir(obj) if not n.startswith("_")]:
        if name in out:
            continue
        try:
            v = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a field this SDK version lacks
            continue
        if v is None or isinstance(v, (bool, int, float, str)):
            out[name] = v
    return out


async def op_metrics(_blob, home):
    return _fields(await _rt(home).metrics(), RUNTIME_METRICS)


async def op_box_metrics(_blob, home, box_id):
    return _fields(await _use_box(home, box_id, lambda box: box.metrics()), BOX_METRICS)


async def op_echo(blob, value, delay_ms=0):
    """Engine self-test: returns its argument (and blob) after an optional sleep."""
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    return value, ([bytes(blob)] if blob is not None else [])


async def op_eval(_blob, source):
    """Engine self-test: evaluates an expression on the loop thread (tests only)."""
    return eval(source, {"sys": sys, "os": os, "time": time, "asyncio": asyncio})  # noqa: S307


OPS = {name[3:]: fn for name, fn in dict(globals()).items() if name.startswith("op_")}

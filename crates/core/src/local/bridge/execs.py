"""Executions: whole execs in one job, and open ones (streams, stdin, signals, resizes) whose
output an `ExecRecord` keeps for the readers that replay it; this is where local mode's exec
deadline is enforced.
"""

import asyncio

from boxlite_bridge import state
from boxlite_bridge.runtimes import _use_box
from boxlite_bridge.state import (
    BATCH_BYTES,
    BATCH_EVENTS,
    EXECS,
    FINISHED_EXEC_TTL_S,
    KILL_WAIT_S,
    REPLAY_LIMIT_BYTES,
    BridgeNotFound,
    BridgeTimeout,
)



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
                state.loop.call_later(FINISHED_EXEC_TTL_S, lambda: EXECS.get(self.id) is self and self.forget())


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
    err = state.loop.create_task(_collect(stderr))
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
    rec.pump = state.loop.create_task(rec.run(timeout))
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

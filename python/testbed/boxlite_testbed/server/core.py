"""Dialect-independent state: the SDK runtime and execution sessions.

Only the documented API of the ``boxlite`` 0.10.8 SDK is used, so the server
runs over the testbed simulator and over the real SDK alike.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import secrets
import string
import time
from typing import Any, Optional

log = logging.getLogger("boxlite_testbed.server")

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str = "", n: int = 12, alphabet: str = _ALNUM) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def rfc3339(ts: Optional[_dt.datetime]) -> Optional[str]:
    if ts is None:
        return None
    return ts.isoformat()


def sdk_error_code(exc: BaseException) -> Optional[str]:
    """The snake_case ``code`` class attribute of boxlite SDK errors."""
    code = getattr(type(exc), "code", None)
    return code if isinstance(code, str) else None


class Event:
    __slots__ = ("seq", "kind", "data")

    def __init__(self, seq: int, kind: str, data: Any):
        self.seq = seq
        self.kind = kind  # "stdout" | "stderr" | "exit"
        self.data = data  # str for output; dict for exit

    def __repr__(self) -> str:  # pragma: no cover
        return f"Event({self.seq}, {self.kind}, {self.data!r})"


class ExecSession:
    """One execution: pumps its streams into an ordered event log.

    Every dialect reads the same log: A through a take-once cursor, B as a
    byte-capped backlog plus live events, C as a full replay plus live events.
    """

    def __init__(self, exec_id: str, box_id: str, execution: Any, *, tty: bool,
                 command: str, args: list[str], meta: Optional[dict] = None):
        self.id = exec_id
        self.box_id = box_id
        self.execution = execution
        self.tty = tty
        self.command = command
        self.args = list(args)
        self.meta = dict(meta or {})
        self.started_at = utc_now()
        self._t0 = time.monotonic()
        self.finished_at: Optional[_dt.datetime] = None
        self.duration_ms: Optional[int] = None
        self.events: list[Event] = []
        self.cond = asyncio.Condition()
        self.done = False  # process finished (wait() resolved)
        self.closed = False  # no more events will ever be appended
        self.exit_code: Optional[int] = None
        self.error_message: Optional[str] = None
        self.killed = False  # signalled/killed through the API
        self.canceled = False  # BoxRun :cancel (suppresses the exit event)
        self.evicted = False
        self.take_pos = 0  # SSE-era take-once cursor
        self.attached = False  # current: single attach
        self.stdin = None
        self.stdin_closed = False
        self.bytes_out = 0
        try:
            self.stdin = execution.stdin()
        except Exception:  # stream not available
            self.stdin = None
        self._task: Optional[asyncio.Task] = None

    # -- life cycle ---------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _append(self, kind: str, data: Any) -> None:
        async with self.cond:
            if self.closed:
                return
            self.events.append(Event(len(self.events), kind, data))
            if kind == "exit":
                self.closed = True
            self.cond.notify_all()

    async def _pump(self, stream: Any, name: str) -> None:
        if stream is None:
            return
        try:
            async for chunk in stream:
                if isinstance(chunk, (bytes, bytearray)):
                    chunk = bytes(chunk).decode("utf-8", "replace")
                elif not isinstance(chunk, str):
                    chunk = str(chunk)
                self.bytes_out += len(chunk.encode("utf-8"))
                await self._append(name, chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # stream broke: treat as end of stream
            log.debug("exec %s %s pump ended: %r", self.id, name, exc)

    async def _run(self) -> None:
        ex = self.execution
        try:
            out = ex.stdout()
        except Exception:
            out = None
        try:
            err = ex.stderr()
        except Exception:
            err = None
        pumps = [asyncio.ensure_future(self._pump(out, "stdout")),
                 asyncio.ensure_future(self._pump(err, "stderr"))]
        exit_code: Optional[int]
        error: Optional[str] = None
        try:
            res = await ex.wait()
            exit_code = getattr(res, "exit_code", None)
            error = getattr(res, "error_message", None)
        except asyncio.CancelledError:
            for p in pumps:
                p.cancel()
            raise
        except Exception as exc:
            exit_code, error = -1, str(exc)
        # Output pumps end when the process' pipes close; give stragglers a
        # moment (a background child may hold the pipe open).
        try:
            await asyncio.wait_for(asyncio.gather(*pumps), timeout=5.0)
        except asyncio.TimeoutError:
            for p in pumps:
                p.cancel()
        except Exception:
            pass
        self.exit_code = exit_code
        self.error_message = error
        self.finished_at = utc_now()
        self.duration_ms = int((time.monotonic() - self._t0) * 1000)
        self.done = True
        if self.canceled:
            # BoxRun: the cancelled task never publishes its exit event.
            async with self.cond:
                self.cond.notify_all()
            return
        await self._append("exit", {"exit_code": exit_code, "error": error})

    # -- reading -----------------------------------------------------------
    async def wait_for_events(self, known: int, timeout: Optional[float]) -> bool:
        """Wait until more than ``known`` events exist or the log is closed.

        Returns False on timeout."""
        async with self.cond:
            if len(self.events) > known or self.closed:
                return True
            try:
                await asyncio.wait_for(self.cond.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            return True

    async def wait_done(self, timeout: Optional[float] = None) -> bool:
        if self._task is None:
            return self.done
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            return False
        except Exception:
            pass
        return True

    def exit_event(self) -> Optional[Event]:
        if self.events and self.events[-1].kind == "exit":
            return self.events[-1]
        return None

    # -- control ---------------------------------------------------------------
    async def kill(self) -> None:
        self.killed = True
        await self.execution.kill()

    async def signal(self, sig: int) -> None:
        await self.execution.signal(sig)

    async def resize(self, cols: int, rows: int) -> None:
        await self.execution.resize_tty(rows, cols)

    async def send_stdin(self, data: bytes, close: bool = False) -> None:
        if self.stdin is None or self.stdin_closed:
            raise RuntimeError("stdin not available")
        if data:
            await self.stdin.send_input(bytes(data))
        if close:
            self.stdin_closed = True
            await self.stdin.close()

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(self.execution.kill(), 5)
            except Exception:
                pass
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 3)
            except BaseException:
                pass
            if self._task.done():
                return
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass


class Backend:
    """The SDK runtime plus the server's execution table."""

    def __init__(self, home: str):
        self.home = home
        self.rt: Any = None
        self.boxlite: Any = None
        self.execs: dict[str, ExecSession] = {}
        self.box_extra: dict[str, dict] = {}  # per-box data the SDK does not keep

    def open(self) -> None:
        import boxlite  # the simulator (testbed venv) or the real SDK

        self.boxlite = boxlite
        self.rt = boxlite.Boxlite(boxlite.Options(home_dir=self.home))

    async def kill_all(self) -> None:
        sessions = list(self.execs.values())
        if sessions:
            await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)

    async def close(self) -> None:
        await self.kill_all()
        self.execs.clear()
        if self.rt is not None:
            try:
                await asyncio.wait_for(self.rt.shutdown(5), timeout=30)
            except Exception as exc:  # pragma: no cover - best effort
                log.warning("runtime shutdown failed: %r", exc)
            try:
                self.rt.close()
            except Exception:
                pass

    # -- boxes ---------------------------------------------------------------
    async def get_box(self, id_or_name: str):
        """A fresh handle (never cached: stop() invalidates handles)."""
        return await self.rt.get(id_or_name)

    async def get_info(self, id_or_name: str):
        return await self.rt.get_info(id_or_name)

    async def list_info(self):
        return await self.rt.list_info()

    # -- executions ------------------------------------------------------------
    def add_exec(self, session: ExecSession) -> None:
        self.execs[session.id] = session
        session.start()

    def find_exec(self, exec_id: str) -> Optional[ExecSession]:
        s = self.execs.get(exec_id)
        if s is None or s.evicted:
            return None
        return s

    async def drop_box_execs(self, box_id: str) -> None:
        for s in list(self.execs.values()):
            if s.box_id == box_id:
                await s.aclose()
                s.evicted = True
                self.execs.pop(s.id, None)


def env_tuples(env: Any) -> list[tuple[str, str]]:
    if not env:
        return []
    return [(str(k), str(v)) for k, v in dict(env).items()]


def info_status(info: Any) -> str:
    try:
        return str(info.state.status)
    except Exception:
        return "unknown"

"""Execution, its streams, and the engine-side process state."""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import signal as _signal
import socket
from typing import Any

from . import errors
from ._engine import submit
from ._results import _Result


class ExecResult(_Result):
    """What ``Execution.wait()`` resolves to (not exported by the SDK either)."""

    _fields = ("exit_code", "error_message")

    def __repr__(self) -> str:
        return f"ExecResult(exit_code={self.exit_code}, error_message={self.error_message!r})"


_EOF = object()
# Once the process has exited, output still unread after this long is dropped
# and the streams end (a background child may keep the pipe open forever).
DRAIN_GRACE = 0.25


class _Pump:
    """Reads one fd on the engine loop, decodes lossily, queues str chunks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int | None, on_bytes) -> None:
        self.loop = loop
        self.fd = fd
        self.queue: asyncio.Queue = asyncio.Queue()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.on_bytes = on_bytes
        self.done = False
        if fd is None:
            self._finish()
        else:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO on a pty master once the slave is gone
            data = b""
        if not data:
            self._finish()
            return
        self.on_bytes(len(data))
        text = self.decoder.decode(data)
        if text:
            self.queue.put_nowait(text)

    def drain_now(self) -> None:
        """Read what is available without blocking, then end the stream."""
        for _ in range(256):  # bounded: a background writer may never stop
            if self.done:
                break
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self.on_bytes(len(data))
            text = self.decoder.decode(data)
            if text:
                self.queue.put_nowait(text)
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.fd is not None:
            try:
                self.loop.remove_reader(self.fd)
            except Exception:
                pass
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        tail = self.decoder.decode(b"", final=True)
        if tail:
            self.queue.put_nowait(tail)
        self.queue.put_nowait(_EOF)

    async def next_chunk(self) -> str:
        item = await self.queue.get()
        if item is _EOF:
            self.queue.put_nowait(_EOF)  # keep answering end-of-stream
            raise StopAsyncIteration
        return item


class ExecState:
    """Engine-side state of one process running in a box."""

    def __init__(self, exec_id: str, box_id: str, tty: bool, counters: Any) -> None:
        self.id = exec_id
        self.box_id = box_id
        self.tty = tty
        self.counters = counters  # object with add_sent/add_received/exec_error
        self.loop = asyncio.get_running_loop()
        self.pid: int | None = None
        self.ctl: socket.socket | None = None
        self.stdin_fd: int | None = None
        self.stdin_closed = False
        self.stdout: _Pump | None = None
        self.stderr: _Pump | None = None
        self.exit_fut: asyncio.Future = self.loop.create_future()
        self.error_message: str | None = None
        self.timeout_handle: asyncio.TimerHandle | None = None
        self.taken: set[str] = set()
        self.watch_task: asyncio.Task | None = None

    # -- wiring -------------------------------------------------------------
    def attach_output(self, out_fd: int, err_fd: int | None) -> None:
        self.stdout = _Pump(self.loop, out_fd, self.counters.add_received)
        self.stderr = _Pump(self.loop, err_fd, self.counters.add_received)

    async def read_ctl(self) -> dict:
        assert self.ctl is not None
        data = await self.loop.sock_recv(self.ctl, 65536)
        if not data:
            return {}
        return json.loads(data)

    async def watch(self) -> None:
        """Wait for the exit report, then end the streams and resolve wait()."""
        try:
            msg = await self.read_ctl()
        except asyncio.CancelledError:
            return
        except (OSError, ValueError):
            msg = {}
        if "exit" in msg:
            code = int(msg["exit"])
        else:
            code = -1
            if self.error_message is None:
                self.error_message = "execution was terminated: box stopped"
        self.finish(code)

    def finish(self, code: int) -> None:
        if self.exit_fut.done():
            return
        if self.timeout_handle is not None:
            self.timeout_handle.cancel()
        task = self.watch_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if self.ctl is not None:
            # unregister before closing: the fd number will be reused
            self.loop.remove_reader(self.ctl.fileno())
            self.ctl.close()
            self.ctl = None
        self.exit_fut.set_result(code)
        self.stdin_closed = True
        if self.stdin_fd is not None:
            try:
                os.close(self.stdin_fd)
            except OSError:
                pass
            self.stdin_fd = None
        self.loop.call_later(DRAIN_GRACE, self._drain)

    def _drain(self) -> None:
        for p in (self.stdout, self.stderr):
            if p is not None and not p.done:
                p.drain_now()

    def abort(self, message: str) -> None:
        """The box went away under the process (stop/remove)."""
        if self.error_message is None:
            self.error_message = message
        self.finish(-1)

    # -- operations -----------------------------------------------------------
    def send_signal(self, sig: int) -> None:
        if self.exit_fut.done() or self.ctl is None:
            return
        try:
            self.ctl.send(json.dumps({"signal": int(sig)}).encode())
        except OSError:
            pass

    def on_timeout(self, secs: float) -> None:
        if self.exit_fut.done():
            return
        self.error_message = f"Execution timed out after {secs:g}s"
        self.counters.exec_error()
        self.send_signal(_signal.SIGKILL)

    async def write_stdin(self, data: bytes) -> None:
        if self.stdin_closed or self.stdin_fd is None:
            raise errors.ExecutionError.make("stdin is closed")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.stdin_fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            except (BrokenPipeError, OSError) as e:
                raise errors.ExecutionError.make(f"failed to write stdin: {e.strerror or e}") from None
            self.counters.add_sent(n)
            view = view[n:]

    def close_stdin(self) -> None:
        if self.stdin_closed:
            return
        self.stdin_closed = True
        if self.stdin_fd is not None:
            if self.tty and not self.exit_fut.done():
                # EOF on a terminal is ^D; the master itself stays open for output.
                try:
                    os.write(self.stdin_fd, b"\x04")
                except OSError:
                    pass
                return
            try:
                os.close(self.stdin_fd)
            except OSError:
                pass
            self.stdin_fd = None


# ---------------------------------------------------------------------------
# Python-facing classes


class _Stream:
    _label = "stdout"

    def __init__(self, *a: Any, **k: Any) -> None:
        raise TypeError(f"cannot create 'builtins.{type(self).__name__}' instances")

    @classmethod
    def _new(cls, pump: _Pump) -> Any:
        obj = cls.__new__(cls)
        obj._pump = pump
        return obj

    def __aiter__(self):
        return self

    def __anext__(self) -> asyncio.Future:
        pump = self._pump
        return submit(pump.next_chunk)

    def __repr__(self) -> str:
        return f"<builtins.{type(self).__name__} object at {hex(id(self))}>"


class ExecStdout(_Stream):
    """Async iterator of ``str`` chunks written by the process to stdout."""


class ExecStderr(_Stream):
    """Async iterator of ``str`` chunks written by the process to stderr."""


class ExecStdin:
    def __init__(self, *a: Any, **k: Any) -> None:
        raise TypeError("cannot create 'builtins.ExecStdin' instances")

    @classmethod
    def _new(cls, state: ExecState) -> "ExecStdin":
        obj = cls.__new__(cls)
        obj._state = state
        return obj

    def send_input(self, data) -> asyncio.Future:
        if isinstance(data, str):
            raise TypeError("argument 'data': Can't extract `str` to `Vec`")
        if not isinstance(data, (bytes, bytearray, memoryview, list)):
            raise TypeError(f"argument 'data': '{type(data).__name__}' object cannot be cast as 'Sequence'")
        payload = bytes(data)
        st = self._state

        async def run():
            await st.write_stdin(payload)
            return ()
        return submit(run)

    def close(self) -> asyncio.Future:
        st = self._state

        async def run():
            st.close_stdin()
            return ()
        return submit(run)

    def is_closed(self) -> asyncio.Future:
        st = self._state

        async def run():
            return st.stdin_closed
        return submit(run)

    def __repr__(self) -> str:
        return f"<builtins.ExecStdin object at {hex(id(self))}>"


class Execution:
    """A process started by ``Box.exec``; streams can each be taken once."""

    def __init__(self, *a: Any, **k: Any) -> None:
        raise TypeError("cannot create 'builtins.Execution' instances")

    @classmethod
    def _new(cls, state: ExecState) -> "Execution":
        obj = cls.__new__(cls)
        obj._state = state
        return obj

    def id(self) -> str:
        return self._state.id

    def _take(self, which: str) -> None:
        if which in self._state.taken:
            raise RuntimeError(f"{which} stream not available")
        self._state.taken.add(which)

    def stdout(self) -> ExecStdout:
        self._take("stdout")
        return ExecStdout._new(self._state.stdout)

    def stderr(self) -> ExecStderr:
        self._take("stderr")
        return ExecStderr._new(self._state.stderr)

    def stdin(self) -> ExecStdin:
        self._take("stdin")
        return ExecStdin._new(self._state)

    def wait(self) -> asyncio.Future:
        st = self._state

        async def run():
            code = await asyncio.shield(st.exit_fut)
            return ExecResult._make(exit_code=code, error_message=st.error_message)
        return submit(run)

    def kill(self) -> asyncio.Future:
        return self.signal(_signal.SIGKILL)

    def signal(self, signal: int) -> asyncio.Future:  # noqa: A002 - SDK keyword name
        if isinstance(signal, bool) or not isinstance(signal, int):
            raise TypeError(f"argument 'signal': '{type(signal).__name__}' object cannot be interpreted as an integer")
        st = self._state

        async def run():
            st.send_signal(signal)
            return ()
        return submit(run)

    def resize_tty(self, rows: int, cols: int) -> asyncio.Future:
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"argument '{name}': '{type(v).__name__}' object cannot be interpreted as an integer")
            if v < 0 or v > 0xFFFFFFFF:
                raise OverflowError("number too large to fit in target type" if v > 0 else
                                    "number too small to fit in target type")
        st = self._state

        async def run():
            if not st.tty:
                raise errors.InvalidStateError.make("resize_tty requires a tty execution")
            if st.stdin_fd is not None and not st.exit_fut.done():
                import fcntl
                import struct
                import termios
                try:
                    fcntl.ioctl(st.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                except OSError:
                    pass
            return ()
        return submit(run)

    def __repr__(self) -> str:
        return f"Execution(id={json.dumps(self._state.id)})"

"""The simulator's stand-in for the SDK's internal tokio runtime.

Every "async" SDK method is a plain function that needs a running asyncio
loop on the calling thread, starts its work at once on a private background
event loop (one daemon thread per process), and returns an ``asyncio.Future``
of the caller's loop that receives the result.  Objects are therefore not
bound to any caller loop, un-awaited calls still take effect, and
cancelling the returned future cancels the work, as in the real SDK.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def engine_loop() -> asyncio.AbstractEventLoop:
    """Return the background loop, starting its thread on first use."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="boxlite-sim-engine", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def on_engine() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def submit(coro_fn: Callable[[], Awaitable[Any]]) -> asyncio.Future:
    """Start ``coro_fn()`` on the engine; return a Future of the caller's loop.

    Raises ``RuntimeError('no running event loop')`` synchronously when the
    calling thread runs no asyncio loop (exactly like pyo3-async-runtimes).
    """
    caller = asyncio.get_running_loop()
    fut = caller.create_future()
    eng = engine_loop()
    cfut = asyncio.run_coroutine_threadsafe(_wrap(coro_fn), eng)

    def deliver(cf: concurrent.futures.Future) -> None:
        def settle() -> None:
            if fut.done():
                return
            if cf.cancelled():
                fut.cancel()
                return
            exc = cf.exception()
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(cf.result())

        try:
            caller.call_soon_threadsafe(settle)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting
            pass

    cfut.add_done_callback(deliver)

    def propagate_cancel(f: asyncio.Future) -> None:
        if f.cancelled():
            cfut.cancel()

    fut.add_done_callback(propagate_cancel)
    return fut


async def _wrap(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return await coro_fn()


def run_sync(coro_fn: Callable[[], Awaitable[Any]], timeout: float | None = None) -> Any:
    """Run ``coro_fn()`` on the engine from a thread that is not the engine."""
    return asyncio.run_coroutine_threadsafe(_wrap(coro_fn), engine_loop()).result(timeout)

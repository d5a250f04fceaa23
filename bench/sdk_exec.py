"""The one exec every Python-side bench baseline times: `bash -c true` through the boxlite SDK,
doing what any caller must (start, drain both streams, close stdin, wait)."""

import asyncio


async def drain(stream):
    async for _ in stream:
        pass


async def exec_true(box):
    """Runs `bash -c true` in `box` to its end; returns the exit code."""
    ex = await box.exec("bash", args=["-c", "true"])
    _, _, _, result = await asyncio.gather(drain(ex.stdout()), drain(ex.stderr()), ex.stdin().close(), ex.wait())
    return result.exit_code

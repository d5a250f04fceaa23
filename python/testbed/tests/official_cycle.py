"""The box life cycle the official boxlite Python clients (the 0.9 and 0.10 wheels' REST runtimes)
run as judges of a server: create, list, get, exec (output, exit code, stdin), copy in (a file and
a directory tree), copy out, stop, remove. Shared by ``test_official_clients.py`` and
``test_official_sse_client.py``; it takes the client's objects and imports no ``boxlite``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

STEP_TIMEOUT = 60  # seconds; a hang guard per command, not a performance target


async def drain(stream) -> str:
    out = []
    async for chunk in stream:
        out.append(chunk if isinstance(chunk, str) else chunk.decode())
    return "".join(out)


async def run(box, cmd: str, stdin: bytes | None = None) -> tuple[str, str, int]:
    """``sh -c cmd`` in the box: (stdout, stderr, exit code)."""
    ex = await box.exec("sh", args=["-c", cmd])
    if stdin is not None:
        si = ex.stdin()
        await si.send_input(stdin)
        await si.close()
    out, err, res = await asyncio.wait_for(
        asyncio.gather(drain(ex.stdout()), drain(ex.stderr()), ex.wait()), STEP_TIMEOUT)
    return out, err, res.exit_code


async def full_cycle(rt, options: Any, name: str, tmp_path: Path, *, stdin: bool = True,
                     copy_out_into_dir: bool = False, file_at: str = "/root/in.txt",
                     tree_at: str = "/root/tree") -> None:
    """The whole cycle on runtime ``rt``; ``options`` is the client's ``BoxOptions`` (with env
    GREETING=hi). ``stdin``: the server keeps an execution after its output is opened (the SSE-era
    boxlite serve forgets it). ``copy_out_into_dir``: copy out into an existing directory (where
    the file keeps its name) rather than to a new file path. ``file_at``/``tree_at``: where the
    server puts a file copied in to ``/root/in.txt`` and the contents of a tree copied in to
    ``/root/tree`` (the real servers place them differently: docs/testing.md)."""
    box = await rt.create(options, name=name)
    try:
        assert box.name == name
        assert box.id in [i.id for i in await rt.list_info()]
        info = await rt.get_info(name)
        assert info is not None and info.id == box.id
        got = await rt.get(box.id)
        assert await run(got, "echo $GREETING; echo oops >&2; exit 7") == ("hi\n", "oops\n", 7)
        if stdin:
            out, _, code = await run(got, "cat", stdin=b"through stdin")
            assert (out, code) == ("through stdin", 0)
        f = tmp_path / "in.txt"
        f.write_text("file content")
        d = tmp_path / "tree"
        (d / "sub").mkdir(parents=True)
        (d / "a").write_text("A")
        (d / "sub" / "b").write_text("B")
        await got.copy_in(str(f), "/root/in.txt")
        await got.copy_in(str(d), "/root/tree")
        out, _, _ = await run(got, f"cat {file_at}; echo; find /root/tree -type f | sort")
        assert out == f"file content\n{tree_at}/a\n{tree_at}/sub/b\n", out
        if copy_out_into_dir:
            dest = tmp_path / "out"
            dest.mkdir()
            await got.copy_out(file_at, str(dest))
            assert (dest / "in.txt").read_text() == "file content"
        else:
            dest = tmp_path / "out.txt"
            await got.copy_out(file_at, str(dest))
            assert dest.read_text() == "file content"
        # (the runtime's view: a 0.9 handle's info() is a snapshot taken when it was made)
        assert (await rt.get_info(box.id)).state.status == "running"
        await got.stop()
        assert (await rt.get_info(box.id)).state.status in ("stopped", "configured")
    finally:
        await rt.remove(box.id, force=True)
    assert await rt.get_info(box.id) is None
    assert box.id not in [i.id for i in await rt.list_info()]

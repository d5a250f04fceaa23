"""The baseline local mode is measured against: a minimal subprocess bridge, written by us.

A Node parent (bench/bridge/client.mjs) writes one JSON request per line on stdin; this child
runs it against the same boxlite SDK local mode embeds and writes one JSON reply per line on
stdout. Requests run concurrently (one asyncio task each); bytes travel as base64, as they must
in JSON. It does what the original TypeScript package's bridge does per call, no more: no
caching beyond box handles, no streaming.

    request:  {"id": 1, "op": "exec", "box_id": "...", "cmd": ["bash", "-c", "true"]}
    reply:    {"id": 1, "ok": true, "result": {...}}  or  {"id": 1, "ok": false, "error": "..."}
"""

import asyncio
import base64
import io
import json
import os
import sys
import tarfile
import tempfile

import boxlite

RT = None
BOXES = {}


async def _box(box_id):
    box = BOXES.get(box_id)
    if box is None:
        box = await RT.get(box_id)
        if box is None:
            raise LookupError(f"box {box_id} not found")
        BOXES[box_id] = box
    return box


async def op_create(req):
    box = await RT.create(boxlite.BoxOptions(image=req.get("image") or "ubuntu:24.04", auto_remove=False))
    await box.start()
    BOXES[box.id] = box
    info = await RT.get_info(box.id)
    return {"id": box.id, "status": str(info.state.status)}


async def _drain(stream):
    parts = []
    if stream is not None:
        async for chunk in stream:
            parts.append(chunk)
    return "".join(parts)


async def op_exec(req):
    box = await _box(req["box_id"])
    cmd = req["cmd"]
    ex = await box.exec(cmd[0], args=cmd[1:])
    stdin = ex.stdin()
    out, err, _, result = await asyncio.gather(_drain(ex.stdout()), _drain(ex.stderr()), stdin.close(),
                                               ex.wait())
    return {"stdout": out, "stderr": err, "exitCode": result.exit_code}


async def op_download(req):
    """The contents of `path` as a base64 tar.gz (gzip level 1, like the adapter's)."""
    box = await _box(req["box_id"])
    with tempfile.TemporaryDirectory(prefix="bridge-dl-") as tmp:
        await box.copy_out(req["path"].rstrip("/") + "/.", tmp + "/",
                           boxlite.CopyOptions(recursive=True, overwrite=True))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for name in sorted(os.listdir(tmp)):
                tar.add(os.path.join(tmp, name), arcname=name)
    return {"data": base64.b64encode(buf.getvalue()).decode()}


async def op_upload(req):
    """Extracts a base64 tar (plain or gzip) into `path`."""
    box = await _box(req["box_id"])
    data = base64.b64decode(req["data"])
    with tempfile.TemporaryDirectory(prefix="bridge-ul-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(tmp, filter="data")
        await box.copy_in(tmp + "/.", req["path"].rstrip("/") + "/",
                          boxlite.CopyOptions(recursive=True, overwrite=True))
    return None


async def op_destroy(req):
    BOXES.pop(req["box_id"], None)
    await RT.remove(req["box_id"], force=True)
    return None


OPS = {name[3:]: fn for name, fn in dict(globals()).items() if name.startswith("op_")}


async def handle(line, out):
    req = json.loads(line)
    try:
        reply = {"id": req["id"], "ok": True, "result": await OPS[req["op"]](req)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        reply = {"id": req["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out.write(json.dumps(reply).encode() + b"\n")


async def main():
    global RT
    RT = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    out.write(b'{"ready": true}\n')
    tasks = set()
    while line := await reader.readline():
        task = asyncio.ensure_future(handle(line, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    await RT.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""The official boxlite Python REST client (`Boxlite.rest`, real SDK) against a server, for
bench/run.mjs to compare remote mode with.

    python bench/official_client.py URL TOKEN [--execs N] [--creates N]

Run from python/testbed/.venv-official (the real boxlite wheel). Times N sequential
`bash -c true` execs on one box (start, drain both streams, close stdin, wait) and N creates
(create + start, i.e. until the box runs). Prints one JSON line:
{"exec_ms": [...], "create_ms": [...]}.
"""

import argparse
import asyncio
import json
import time

import boxlite
from sdk_exec import exec_true


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--execs", type=int, default=100)
    parser.add_argument("--creates", type=int, default=5)
    args = parser.parse_args()
    if getattr(boxlite, "__testbed__", False):
        raise SystemExit("this is the simulator, not the official client: run from python/testbed/.venv-official")
    rt = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=args.url, credential=boxlite.ApiKeyCredential(args.token)))
    creates = []
    for _ in range(args.creates):
        started = time.perf_counter()
        box = await rt.create(boxlite.BoxOptions(image="ubuntu:24.04", auto_delete=0))
        await box.start()
        creates.append((time.perf_counter() - started) * 1000)
        await rt.remove(box.id, force=True)
    box = await rt.create(boxlite.BoxOptions(image="ubuntu:24.04", auto_delete=0))
    await box.start()
    for _ in range(10):  # warm-up
        await exec_true(box)
    execs = []
    for _ in range(args.execs):
        started = time.perf_counter()
        assert await exec_true(box) == 0
        execs.append((time.perf_counter() - started) * 1000)
    await rt.remove(box.id, force=True)
    print(json.dumps({"exec_ms": execs, "create_ms": creates}))


if __name__ == "__main__":
    asyncio.run(main())

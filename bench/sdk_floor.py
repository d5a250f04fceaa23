"""The floor of local-mode exec: the boxlite SDK alone, called from plain asyncio Python.

    python bench/sdk_floor.py HOME [--execs N] [--concurrency C] [--rounds R]

Creates a box, then times N sequential `exec('bash', ['-c', 'true'])` (start, drain both
streams, close stdin, wait: what any caller must do) and R rounds of C concurrent ones. Prints one
JSON line: {"exec_ms": [...], "concurrent_per_s": [...], "concurrent_cpu_us": N} (the process's CPU
time per exec over the concurrent rounds: a measure of the SDK's own cost that load from other
processes barely moves, unlike rates). Nothing can do an exec faster than
this through the SDK; run it with BOXLITE_SIM_EXEC=noop to see the SDK's own overhead.
"""

import argparse
import asyncio
import json
import time

import boxlite
from sdk_exec import exec_true


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("home")
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rt = boxlite.Boxlite(boxlite.Options(home_dir=args.home))
    box = await rt.create(boxlite.BoxOptions(auto_remove=False))
    await box.start()
    for _ in range(20):  # warm-up
        await exec_true(box)
    samples = []
    for _ in range(args.execs):
        started = time.perf_counter()
        await exec_true(box)
        samples.append((time.perf_counter() - started) * 1000)
    rates = []
    cpu_started = time.process_time()
    for _ in range(args.rounds):
        started = time.perf_counter()
        codes = await asyncio.gather(*(exec_true(box) for _ in range(args.concurrency)))
        rates.append(args.concurrency / (time.perf_counter() - started))
        assert all(c == 0 for c in codes)
    cpu_us = (time.process_time() - cpu_started) * 1e6 / (args.rounds * args.concurrency)
    await rt.remove(box.id, force=True)
    await rt.shutdown()
    print(json.dumps({"exec_ms": samples, "concurrent_per_s": rates, "concurrent_cpu_us": cpu_us}))


if __name__ == "__main__":
    asyncio.run(main())

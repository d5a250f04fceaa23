"""The bridge's entry module, `boxlite_bridge` (loaded last, after its parts): the metrics and
self-test ops, and the table of every op the Rust side may call. The engine calls `setup` and
then `run_forever` on the `py-asyncio` thread.
"""

import asyncio
import os
import sys
import time

from boxlite_bridge import boxes, execs, files, runtimes, state
from boxlite_bridge.jobs import run_forever, setup  # noqa: F401 - called by the engine
from boxlite_bridge.runtimes import _rt, _use_box

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

state.OPS.update({
    name[3:]: fn
    for module in (runtimes, boxes, execs, files, sys.modules[__name__])
    for name, fn in vars(module).items()
    if name.startswith("op_")
})

"""Boxes: creating them from the caller's options, reading, listing, starting, stopping and
deleting them, and the record the Rust side reads of each.
"""

from boxlite_bridge import state
from boxlite_bridge.jobs import _cancel_jobs
from boxlite_bridge.runtimes import _forget_handles, _rt, _use_box
from boxlite_bridge.state import EXECS, HANDLES, LIFECYCLE_OPS, BridgeNotFound



def _record(info):
    state = getattr(info, "state", None)
    status = getattr(state, "status", None) if state is not None else None
    rec = {
        "id": info.id,
        "name": getattr(info, "name", None),
        "status": str(status) if status is not None else "unknown",
        "created_at": str(getattr(info, "created_at", "") or ""),
        "image": str(getattr(info, "image", "") or ""),
    }
    started = getattr(info, "started_at", None)
    if started:
        rec["started_at"] = str(started)
    cpus = getattr(info, "cpus", None)
    if isinstance(cpus, int):
        rec["cpu"] = cpus
    mem = getattr(info, "memory_mib", None)
    if isinstance(mem, int):
        rec["memory_mb"] = mem
    return rec


def _network(spec):
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"mode": spec}
    if not isinstance(spec, dict):
        raise TypeError("network must be an object like {mode, allow_net}")
    outbound = spec.get("outbound", spec)
    mode = outbound.get("mode", "enabled")
    allow = outbound.get("allow_net", outbound.get("allowNet", [])) or []
    return state.sdk.NetworkSpec(outbound=state.sdk.OutboundNetworkSpec(mode=mode, allow_net=list(allow)))


def _box_options(p):
    kw = {}
    if p.get("rootfs_path"):
        kw["rootfs_path"] = p["rootfs_path"]
    elif p.get("image"):
        kw["image"] = p["image"]
    for src, dst in (("cpu", "cpus"), ("memory_mb", "memory_mib"), ("disk_size_gb", "disk_size_gb"),
                     ("working_dir", "working_dir"), ("user", "user")):
        if p.get(src) is not None:
            kw[dst] = p[src]
    if p.get("env"):
        kw["env"] = [(str(k), str(v)) for k, v in p["env"].items()]
    if p.get("ports"):
        kw["ports"] = [(int(h), int(g)) for h, g in p["ports"]]
    # Boxes survive stop unless the caller asks otherwise (the SDK's default deletes them).
    kw["auto_remove"] = bool(p.get("auto_remove", False))
    if p.get("cmd") is not None:
        kw["cmd"] = [str(a) for a in p["cmd"]]
    ep = p.get("entrypoint")
    if ep is not None:
        kw["entrypoint"] = [ep] if isinstance(ep, str) else [str(a) for a in ep]
    if p.get("network") is not None:
        kw["network"] = _network(p["network"])
    if p.get("secrets"):
        kw["secrets"] = [
            state.sdk.Secret(s["name"], s["value"], hosts=list(s.get("hosts", [])), placeholder=s.get("placeholder"))
            for s in p["secrets"]
        ]
    return state.sdk.BoxOptions(**kw)


async def op_create_box(_blob, home, params):
    rt = _rt(home)
    box = await rt.create(_box_options(params), name=params.get("name"))
    HANDLES[(home, box.id)] = box
    info = await rt.get_info(box.id)
    return _record(info if info is not None else await box.info())


async def op_get_box(_blob, home, box_id):
    info = await _rt(home).get_info(box_id)
    if info is None:
        raise BridgeNotFound("box", box_id)
    return _record(info)


async def op_list_boxes(_blob, home):
    return [_record(i) for i in await _rt(home).list_info()]


async def op_delete_box(_blob, home, box_id, force):
    _forget_handles(home, box_id)
    await _rt(home).remove(box_id, force=bool(force))
    if force:
        # A start still waiting on the removed box's VM would only fail, long after.
        await _cancel_jobs(lambda h, op, box: h == home and box == box_id and op in LIFECYCLE_OPS)
    for rec in list(EXECS.values()):
        if rec.home == home and rec.box_id == box_id:
            rec.forget()
    return None


async def op_start_box(_blob, home, box_id):
    """Starts the box and answers with it (the SDK's start returns once it runs)."""
    await _use_box(home, box_id, lambda box: box.start())
    return await op_get_box(None, home, box_id)


async def op_stop_box(_blob, home, box_id):
    # stop() invalidates every handle of the box: the cached ones go.
    try:
        await _use_box(home, box_id, lambda box: box.stop())
    finally:
        _forget_handles(home, box_id)
    return None

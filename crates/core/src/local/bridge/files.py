"""What is stored in and of a box: copying files in and out (the Rust side stages archives on
the host; no shell is involved anywhere), snapshots, clone, export and import.
"""

import os

from boxlite_bridge import state
from boxlite_bridge.boxes import _record, op_stop_box
from boxlite_bridge.runtimes import _box, _forget_handles, _rt, _status, _use_box



async def op_copy_in(_blob, home, box_id, host_dir, dest):
    # `SRC/.` copies the directory's contents; a trailing `/` makes `dest` a directory.
    target = dest if dest.endswith("/") else dest + "/"
    options = state.sdk.CopyOptions(recursive=True, overwrite=True)
    await _use_box(home, box_id, lambda box: box.copy_in(os.path.join(host_dir, "."), target, options))
    return None


async def op_copy_out(_blob, home, box_id, src, host_dir):
    options = state.sdk.CopyOptions(recursive=True, overwrite=True, follow_symlinks=False)
    await _use_box(home, box_id, lambda box: box.copy_out(src, host_dir.rstrip("/") + "/", options))
    return None


# --------------------------------------------------------------------------------------------
# Snapshots, clone, export, import


def _snapshot(s):
    out = {
        "id": str(getattr(s, "id", "")),
        "box_id": str(getattr(s, "box_id", "")),
        "name": str(getattr(s, "name", "")),
        "created_at": int(getattr(s, "created_at", 0) or 0),
        "size_bytes": int(getattr(s, "size_bytes", 0) or 0),
    }
    for field in ("guest_disk_bytes", "container_disk_bytes"):
        v = getattr(s, field, None)
        if isinstance(v, int):
            out[field] = v
    return out


async def _stopped(home, box_id, action):
    """Runs `action(fresh_box)` on a stopped box and leaves the box running again if it was."""
    status = await _status(home, box_id)
    was_running = status in ("running", "starting")
    if was_running:
        await op_stop_box(None, home, box_id)
    try:
        return await action(await _box(home, box_id))
    finally:
        _forget_handles(home, box_id)  # a snapshot restore replaces the box's state
        if was_running:
            await _use_box(home, box_id, lambda box: box.start())


async def op_snapshot_create(_blob, home, box_id, name):
    async def act(box):
        return _snapshot(await box.snapshot.create(name=name))

    return await _stopped(home, box_id, act)


async def op_snapshot_list(_blob, home, box_id):
    box = await _box(home, box_id)
    return [_snapshot(s) for s in await box.snapshot.list()]


async def op_snapshot_restore(_blob, home, box_id, name):
    async def act(box):
        await box.snapshot.restore(name)

    await _stopped(home, box_id, act)
    return None


async def op_snapshot_delete(_blob, home, box_id, name):
    await _use_box(home, box_id, lambda box: box.snapshot.remove(name))
    return None


async def op_clone_box(_blob, home, box_id, name):
    clone = await _use_box(home, box_id, lambda box: box.clone_box(options=state.sdk.CloneOptions(), name=name))
    info = await _rt(home).get_info(clone.id)
    return _record(info if info is not None else await clone.info())


async def op_export_box(_blob, home, box_id, dest_dir):
    path = await _use_box(home, box_id, lambda box: box.export(options=state.sdk.ExportOptions(), dest=dest_dir))
    return str(path)


async def op_import_box(_blob, home, archive_path, name):
    rt = _rt(home)
    box = await rt.import_box(archive_path, name=name)
    info = await rt.get_info(box.id)
    return _record(info if info is not None else await box.info())

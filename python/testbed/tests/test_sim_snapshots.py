"""SDK simulator: snapshots, clone, export/import."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from boxlite import BoxOptions
from boxlite import errors as E

from test_sim_basics import keep, run


async def started_then_stopped(rt, name=None):
    """A box that has a disk (was started) and is stopped; returns a fresh handle."""
    box = await rt.create(keep(), name=name)
    await run(box, "echo v1 > /root/state; echo tmp > /tmp/t")
    await box.stop()
    return await rt.get(box.id)


async def test_snapshot_needs_a_disk(sim_rt):
    box = await sim_rt.create(keep())
    with pytest.raises(E.StorageError, match="^storage error: Failed to write snapshot marker"):
        await box.snapshot.create(name="s")


async def test_snapshot_name_is_keyword_only_and_validated(sim_rt):
    box = await started_then_stopped(sim_rt)
    with pytest.raises(TypeError, match="takes 0 positional arguments but 1 was given"):
        box.snapshot.create("s1")
    for bad in ("", ".hidden", "a/b", "x" * 256):
        with pytest.raises(E.InvalidArgumentError):
            await box.snapshot.create(name=bad)


async def test_snapshot_create_list_get_and_restore_state(sim_rt):
    box = await started_then_stopped(sim_rt)
    s1 = await box.snapshot.create(name="s1")
    assert (s1.name, s1.box_id, len(s1.id)) == ("s1", box.id, 8)
    assert isinstance(s1.created_at, int) and s1.size_bytes > 0 and s1.container_disk_bytes == s1.size_bytes
    await run(box, "echo v2 > /root/state; echo new > /root/new")
    await box.stop()
    box = await sim_rt.get(box.id)
    await box.snapshot.create(name="s2")
    assert [s.name for s in await box.snapshot.list()] == ["s2", "s1"]
    assert (await box.snapshot.get("s1")).name == "s1"
    assert await box.snapshot.get("zz") is None
    assert await box.snapshot.restore("s1") == ()
    out, _, _ = await run(box, "cat /root/state; ls /root/new 2>/dev/null; ls /tmp")
    assert out == "v1\n"


async def test_snapshot_restore_refused_on_running_box(sim_rt):
    box = await started_then_stopped(sim_rt)
    await box.snapshot.create(name="s1")
    await box.start()
    with pytest.raises(E.InvalidStateError,
                       match="^invalid state: Cannot restore snapshot while box is running. Stop the box first.$"):
        await box.snapshot.restore("s1")


async def test_snapshot_errors(sim_rt):
    box = await started_then_stopped(sim_rt)
    await box.snapshot.create(name="s1")
    with pytest.raises(E.AlreadyExistsError, match=f"^already exists: snapshot 's1' already exists for box '{box.id}'$"):
        await box.snapshot.create(name="s1")
    with pytest.raises(E.NotFoundError, match=f"^not found: snapshot 'zz' not found for box '{box.id}'$"):
        await box.snapshot.restore("zz")
    with pytest.raises(E.NotFoundError):
        await box.snapshot.remove("zz")
    # the current disk depends on the newest snapshot until another one is restored
    with pytest.raises(E.InvalidStateError, match="current disk depends on this snapshot"):
        await box.snapshot.remove("s1")
    await box.snapshot.create(name="s2")
    assert await box.snapshot.remove("s1") == ()
    assert [s.name for s in await box.snapshot.list()] == ["s2"]


async def test_clone_copies_disk_not_tmp_and_starts_stopped(sim_rt):
    src = await sim_rt.create(keep(), name="src")
    await run(src, "echo disk > /root/f; echo tmp > /tmp/f")
    clone = await src.clone_box(name="copy")
    info = await clone.info()
    assert (info.state.status, info.name, info.image) == ("stopped", "copy", "alpine:latest")
    assert await clone.snapshot.list() == []
    out, _, _ = await run(clone, "cat /root/f; ls /tmp")
    assert out == "disk\n"
    await run(clone, "echo changed > /root/f")
    assert (await run(src, "cat /root/f"))[0] == "disk\n"


async def test_clone_name_collision_is_invalid_state_and_needs_disk(sim_rt):
    fresh = await sim_rt.create(keep(), name="fresh")
    with pytest.raises(E.StorageError, match="Container disk not found"):
        await fresh.clone_box(name="x")
    box = await started_then_stopped(sim_rt, name="src")
    with pytest.raises(E.InvalidStateError, match="^invalid state: box with name 'src' already exists$"):
        await box.clone_box(name="src")
    with pytest.raises(TypeError):
        box.clone_box(None, "positional")


async def test_export_and_import_round_trip(sim_rt, tmp_path):
    box = await started_then_stopped(sim_rt, name="exp")
    with pytest.raises(E.StorageError, match="Container disk not found"):
        await (await sim_rt.create(keep())).export(dest=str(tmp_path))
    path = await box.export(dest=str(tmp_path))
    assert path == os.path.join(str(tmp_path), "exp.boxlite") and os.path.getsize(path) > 0
    with tarfile.open(path) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
    assert "disk/root/state" in names and not any(n.startswith("tmp") for n in names)
    assert manifest["source_box_id"] == box.id
    path2 = await box.export(dest=str(tmp_path / "named.boxlite"))
    assert path2.endswith("named.boxlite")
    imported = await sim_rt.import_box(path, name="imp")
    info = await imported.info()
    assert (info.state.status, info.name, info.image) == ("stopped", "imp", "alpine:latest")
    assert (await run(imported, "cat /root/state"))[0] == "v1\n"


async def test_import_missing_archive_is_not_found(sim_rt, tmp_path):
    missing = str(tmp_path / "nope.boxlite")
    with pytest.raises(E.NotFoundError, match=f"^not found: Archive not found: {missing}$"):
        await sim_rt.import_box(missing)


async def test_snapshots_persist_across_runtimes(sim_home):
    import boxlite
    from test_sim_basics import wait_lock_free

    rt = boxlite.Boxlite(boxlite.Options(home_dir=sim_home))
    box = await started_then_stopped(rt, name="p")
    await box.snapshot.create(name="s1")
    await rt.shutdown()
    del rt, box
    wait_lock_free(sim_home)
    rt2 = boxlite.Boxlite(boxlite.Options(home_dir=sim_home))
    box = await rt2.get("p")
    assert [s.name for s in await box.snapshot.list()] == ["s1"]
    await rt2.shutdown()


async def test_detached_box_stays_running_for_the_next_runtime(sim_home):
    import boxlite
    from test_sim_basics import wait_lock_free

    rt = boxlite.Boxlite(boxlite.Options(home_dir=sim_home))
    box = await rt.create(BoxOptions(detach=True, auto_remove=False), name="d")
    await run(box, "echo keep > /tmp/t")
    del rt, box
    wait_lock_free(sim_home)
    rt2 = boxlite.Boxlite(boxlite.Options(home_dir=sim_home))
    assert (await rt2.get_info("d")).state.status == "running"
    box = await rt2.get("d")
    assert (await run(box, "cat /tmp/t"))[0] == "keep\n"
    await rt2.shutdown()


async def test_source_with_clones_needs_force_to_remove(sim_rt):
    src = await started_then_stopped(sim_rt, name="base")
    clone = await src.clone_box(name="child")
    with pytest.raises(E.InvalidStateError, match=f"boxes \\[{clone.id}\\] have clone dependencies"):
        await sim_rt.remove("base")
    await sim_rt.remove("child")
    await sim_rt.remove("base")
    assert await sim_rt.list_info() == []

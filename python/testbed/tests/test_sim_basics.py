"""SDK simulator: runtime, boxes, states, exec basics, errors, calling convention."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

import boxlite
from boxlite import BoxOptions, Options
from boxlite import errors as E


async def run(box, script, **kw):
    """Run ``bash -c script``; return (stdout, stderr, exit_code)."""
    ex = await box.exec("bash", ["-c", script], **kw)
    out, err = await asyncio.gather(collect(ex.stdout()), collect(ex.stderr()))
    res = await ex.wait()
    return out, err, res.exit_code


async def collect(stream):
    parts = []
    async for chunk in stream:
        assert isinstance(chunk, str)
        parts.append(chunk)
    return "".join(parts)


def keep():
    return BoxOptions(auto_remove=False)


def test_module_marks_itself_as_the_simulator():
    assert boxlite.__testbed__ is True
    assert boxlite.__version__ == "0.10.8"
    assert boxlite.NotFoundError is E.NotFoundError


def test_async_method_without_running_loop_raises_runtime_error(sim_rt):
    with pytest.raises(RuntimeError, match="no running event loop"):
        sim_rt.list_info()


async def test_async_method_returns_asyncio_future_not_coroutine(sim_rt):
    fut = sim_rt.list_info()
    assert type(fut) is asyncio.Future and not isinstance(fut, asyncio.Task)
    assert fut.get_loop() is asyncio.get_running_loop()
    assert await fut == []


async def test_unawaited_call_still_takes_effect(sim_rt):
    box = await sim_rt.create(keep(), name="gone")
    sim_rt.remove("gone")  # never awaited
    for _ in range(100):
        if await sim_rt.get_info(box.id) is None:
            break
        await asyncio.sleep(0.01)
    assert await sim_rt.get_info(box.id) is None


async def test_create_does_not_boot_and_reports_sdk_defaults(sim_rt):
    box = await sim_rt.create(BoxOptions())
    info = await box.info()
    assert info.state.status == "configured"
    assert info.state.running is False and info.state.pid is None
    assert (info.image, info.cpus, info.memory_mib) == ("alpine:latest", 1, 1024)
    assert (info.auto_delete, info.auto_resume, info.auto_stop) == (1, True, 0)
    assert info.network.outbound.mode == "enabled" and info.network.inbound.mode == "disabled"
    assert info.network.published_ports == []
    assert json.loads(str(info.state))["status"] == "configured"
    assert json.loads(repr(info))["id"] == box.id and len(box.id) == 12
    rootfs = await (await sim_rt.create(BoxOptions(rootfs_path="/x/oci"))).info()
    assert rootfs.image == "rootfs:/x/oci"


async def test_get_and_get_info_return_none_for_unknown(sim_rt):
    assert await sim_rt.get("nope") is None
    assert await sim_rt.get_info("nope") is None


async def test_get_returns_new_handle_by_id_or_name(sim_rt):
    box = await sim_rt.create(keep(), name="n1")
    a, b = await sim_rt.get("n1"), await sim_rt.get(box.id)
    assert a is not b and a.id == b.id == box.id and a.name == "n1"


async def test_list_info_is_newest_first(sim_rt):
    ids = [(await sim_rt.create(keep())).id for _ in range(3)]
    assert [i.id for i in await sim_rt.list_info()] == ids[::-1]


async def test_unit_results_are_empty_tuples(sim_rt):
    box = await sim_rt.create(keep())
    assert await box.stop() == ()
    assert await sim_rt.remove(box.id) == ()


async def test_duplicate_name_is_invalid_argument(sim_rt):
    await sim_rt.create(keep(), name="dup")
    with pytest.raises(E.InvalidArgumentError, match=r"^invalid argument: box with name 'dup' already exists$") as ei:
        await sim_rt.create(keep(), name="dup")
    assert ei.value.code == "invalid_argument"
    assert isinstance(ei.value, RuntimeError) and isinstance(ei.value, E.BoxliteError)


async def test_remove_unknown_is_not_found(sim_rt):
    with pytest.raises(E.NotFoundError, match="^not found: ghost$"):
        await sim_rt.remove("ghost")


async def test_get_or_create_returns_existing_by_name(sim_rt):
    b1, created1 = await sim_rt.get_or_create(keep(), name="g")
    b2, created2 = await sim_rt.get_or_create(BoxOptions(cpus=4), name="g")
    assert (created1, created2) == (True, False) and b1.id == b2.id


def test_box_options_type_checks_match_sdk():
    with pytest.raises(TypeError, match="'dict' object cannot be cast as 'Sequence'"):
        BoxOptions(env={"a": "b"})
    with pytest.raises(TypeError, match="'list' object cannot be cast as 'tuple'"):
        BoxOptions(env=[["a", "b"]])
    with pytest.raises(OverflowError):
        BoxOptions(cpus=300)
    with pytest.raises(RuntimeError, match=r"ports tuples must be"):
        BoxOptions(ports=[(1,)])
    with pytest.raises(RuntimeError, match="ports entries must be tuple or dict"):
        BoxOptions(ports=[[1, 2]])
    with pytest.raises(TypeError, match="Can't extract `str` to `Vec`"):
        BoxOptions(cmd="ls")
    with pytest.raises(TypeError, match="unexpected keyword"):
        BoxOptions(bogus=1)
    o = BoxOptions(env=[("A", "1")], ports=[(8080, 80), {"guest_port": 81}])
    assert o.env == [("A", "1")]
    with pytest.raises(AttributeError):
        o.ports  # noqa: B018 - write-only, as in the SDK


async def test_create_type_errors_are_synchronous(sim_rt):
    with pytest.raises(TypeError, match="cannot be cast as 'BoxOptions'"):
        sim_rt.create("x")


async def test_detach_with_auto_delete_is_refused_and_auto_stop_unsupported(sim_rt):
    with pytest.raises(E.InvalidArgumentError, match="remove-on-stop is incompatible with detach=true"):
        await sim_rt.create(BoxOptions(detach=True))
    with pytest.raises(E.UnsupportedError, match="AutoStop is only supported by REST runtimes"):
        await sim_rt.create(BoxOptions(auto_stop=5))


async def test_exec_runs_real_bash_with_separate_streams_and_exit_code(sim_rt):
    box = await sim_rt.create(keep())
    out, err, code = await run(box, "echo out; echo err >&2; exit 3")
    assert (out, err, code) == ("out\n", "err\n", 3)
    assert (await box.info()).state.status == "running"  # exec started the box lazily


async def test_noop_exec_mode_exits_zero_at_once_without_running_the_command(sim_rt, monkeypatch, tmp_path):
    box = await sim_rt.create(keep())
    monkeypatch.setenv("BOXLITE_SIM_EXEC", "noop")
    marker = tmp_path / "ran"
    assert await run(box, f"echo out; touch {marker}; exit 3") == ("", "", 0)
    assert not marker.exists()
    assert (await box.metrics()).commands_executed_total == 1
    monkeypatch.delenv("BOXLITE_SIM_EXEC")
    assert await run(box, "echo out; exit 3") == ("out\n", "", 3)


async def test_exec_killed_by_signal_reports_negative_signal_number(sim_rt):
    box = await sim_rt.create(keep())
    assert (await run(box, "kill -9 $$"))[2] == -9
    assert (await run(box, "kill -TERM $$"))[2] == -15
    # bash reports its child's signal death as 128+N
    assert (await run(box, "sleep 5 & kill -9 $!; wait $!"))[2] == 137


async def test_exec_env_cwd_and_box_defaults(sim_rt):
    box = await sim_rt.create(BoxOptions(auto_remove=False, env=[("A", "box"), ("B", "box")], working_dir="/srv"))
    out, _, _ = await run(box, 'echo "$A $B $PWD $HOME"', env=[("B", "exec")])
    assert out == "box exec /srv /root\n"
    out, _, _ = await run(box, "pwd", cwd="/var")
    assert out == "/var\n"
    other = await sim_rt.create(BoxOptions(auto_remove=False, working_dir="/app/src"))
    assert (await run(other, "pwd"))[0] == "/app/src\n"  # created like an image WORKDIR
    with pytest.raises(E.ExecutionError):
        await other.exec("pwd", cwd="/does/not/exist")


async def test_exec_user_option_runs_as_that_user(sim_rt):
    box = await sim_rt.create(keep())
    out, _, _ = await run(box, "id -u; id -g", user="65534:65534")
    assert out == "65534\n65534\n"


async def test_exec_missing_program_is_execution_error(sim_rt):
    box = await sim_rt.create(keep())
    with pytest.raises(E.ExecutionError) as ei:
        await box.exec("/no/such/program")
    assert ei.value.code == "execution_failed"
    m = await box.metrics()
    assert m.exec_errors_total == 1


async def test_exec_argument_types_checked_synchronously(sim_rt):
    box = await sim_rt.create(keep())
    with pytest.raises(TypeError, match="Can't extract `str` to `Vec`"):
        box.exec("ls", args="-l")
    with pytest.raises(TypeError, match="cannot be cast as 'Sequence'"):
        box.exec("ls", env={"a": "b"})
    with pytest.raises(TypeError):
        box.exec("ls", working_dir="/")
    with pytest.raises(E.InvalidArgumentError, match="timeout_seconds must be a non-negative finite number"):
        await box.exec("ls", timeout_secs=-1)


async def test_output_is_lossy_utf8_text(sim_rt):
    box = await sim_rt.create(keep())
    out, _, _ = await run(box, r"printf 'a\377b\xc3\xa9'")
    assert out == "a\ufffdb\u00e9"


async def test_stdout_delivered_in_real_time_before_command_ends(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("bash", ["-c", "echo first; sleep 2; echo second"])
    t0 = time.monotonic()
    it = ex.stdout().__aiter__()
    first = await it.__anext__()
    assert first == "first\n" and time.monotonic() - t0 < 1.5
    rest = await collect(it)
    assert rest == "second\n"
    assert (await ex.wait()).exit_code == 0


async def test_streams_can_be_taken_once(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("true")
    ex.stdout()
    with pytest.raises(RuntimeError, match="stdout stream not available"):
        ex.stdout()
    assert isinstance(ex.id(), str)
    await ex.wait()


async def test_boxes_do_not_share_tmp_or_root(sim_rt):
    a, b = await sim_rt.create(keep()), await sim_rt.create(keep())
    await run(a, "echo A > /tmp/f; echo A > /root/f; echo A > /dev/shm/f; mkdir -p /data; echo A > /data/f")
    out, _, _ = await run(b, "cat /tmp/f /root/f /dev/shm/f /data/f 2>&1; true")
    assert "A" not in out
    out, _, _ = await run(a, "cat /tmp/f /root/f /dev/shm/f /data/f")
    assert out == "A\nA\nA\nA\n"


async def test_stop_wipes_tmp_but_keeps_disk(sim_rt):
    box = await sim_rt.create(keep())
    await run(box, "echo x > /tmp/t; echo y > /dev/shm/s; echo z > /root/r")
    await box.stop()
    box = await sim_rt.get(box.id)
    assert (await box.info()).state.status == "stopped"
    out, _, _ = await run(box, "ls /tmp /dev/shm; cat /root/r")
    assert out.split() == ["/dev/shm:", "/tmp:", "z"]


async def test_stop_invalidates_every_earlier_handle(sim_rt):
    box = await sim_rt.create(keep())
    other = await sim_rt.get(box.id)
    await box.start()
    await box.stop()
    for h in (box, other):
        with pytest.raises(E.StoppedError, match=r"^stopped: Handle invalidated after stop\(\). Use runtime.get\(\) to get a new handle.$"):
            await h.exec("true")
        assert (await h.info()).state.status == "stopped"
        assert await h.snapshot.list() == []
        assert await h.stop() == ()
    fresh = await sim_rt.get(box.id)
    assert (await run(fresh, "echo ok"))[0] == "ok\n"


async def test_stop_deletes_box_with_default_auto_delete(sim_rt):
    box = await sim_rt.create(BoxOptions())
    await box.start()
    await box.stop()
    assert await sim_rt.get_info(box.id) is None


async def test_remove_running_box_needs_force(sim_rt):
    box = await sim_rt.create(keep())
    await box.start()
    with pytest.raises(E.InvalidStateError, match="Use force=true to stop first"):
        await sim_rt.remove(box.id)
    await sim_rt.remove(box.id, force=True)
    assert await sim_rt.get_info(box.id) is None
    with pytest.raises(E.NotFoundError):
        await (await sim_rt.get(box.id) or box).info()


async def test_shutdown_stops_boxes_and_refuses_create(sim_rt):
    box = await sim_rt.create(keep())
    await box.start()
    assert await sim_rt.shutdown() == ()
    assert (await sim_rt.get_info(box.id)).state.status == "stopped"
    with pytest.raises(E.StoppedError, match="^stopped: Cannot create box: runtime has been shut down$"):
        await sim_rt.create(keep())


def test_second_runtime_on_same_home_in_same_process_fails(sim_rt, sim_home):
    with pytest.raises(E.InternalError) as ei:
        boxlite.Boxlite(Options(home_dir=sim_home))
    assert str(ei.value).startswith(
        f"internal error: Failed to acquire runtime lock at {sim_home}: internal error: "
        f"Another BoxliteRuntime is already using directory: {sim_home}")


def test_second_runtime_on_same_home_in_another_process_fails(sim_rt, sim_home):
    code = ("import boxlite,sys\n"
            "try:\n boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))\n"
            "except boxlite.InternalError as e:\n print(e.code); sys.exit(0)\n"
            "sys.exit(1)")
    p = subprocess.run([sys.executable, "-c", code, sim_home], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.strip() == "internal", p.stderr


def test_lock_released_when_runtime_and_boxes_are_dropped(sim_home):
    import gc

    rt = boxlite.Boxlite(Options(home_dir=sim_home))
    del rt
    gc.collect()
    rt2 = boxlite.Boxlite(Options(home_dir=sim_home))
    assert rt2 is not None


def wait_lock_free(home, timeout=3.0):
    import fcntl
    import gc
    import os

    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        fd = os.open(os.path.join(home, ".lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            os.close(fd)


def test_boxes_persist_across_runtimes_and_processes(sim_home):
    import gc

    async def make():
        rt = boxlite.Boxlite(Options(home_dir=sim_home))
        box = await rt.create(keep(), name="persist")
        await run(box, "echo kept > /root/file")
        await rt.shutdown()
        return box.id

    box_id = asyncio.run(make())
    gc.collect()
    wait_lock_free(sim_home)
    code = ("import asyncio,boxlite,sys\n"
            "async def main():\n"
            " rt=boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))\n"
            " print([(i.id,i.name,i.state.status) for i in await rt.list_info()])\n"
            " b=await rt.get('persist'); e=await b.exec('cat',['/root/file'])\n"
            " print(''.join([c async for c in e.stdout()]).strip()); await rt.shutdown()\n"
            "asyncio.run(main())")
    p = subprocess.run([sys.executable, "-c", code, sim_home], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == str([(box_id, "persist", "stopped")])
    assert lines[1] == "kept"


async def test_kvm_failure_mode_raises_engine_error(sim_rt, monkeypatch):
    monkeypatch.setenv("BOXLITE_SIM_FAIL_KVM", "1")
    box = await sim_rt.create(keep(), name="kvm")
    with pytest.raises(E.EngineError, match=r"^engine reported an error: The VM failed to start\.$") as ei:
        await box.exec("true")
    assert ei.value.code == "engine_unavailable"
    assert [i.state.status for i in await sim_rt.list_info()] == ["failed"]
    assert (await sim_rt.get_info("kvm")).state.status == "configured"
    assert (await sim_rt.metrics()).boxes_failed_total == 1


async def test_future_is_bound_to_caller_loop_and_objects_are_not(sim_home):
    rt = boxlite.Boxlite(Options(home_dir=sim_home))
    box = await rt.create(keep())

    def other_loop():
        async def go():
            return (await run(box, "echo hi"))[0]
        return asyncio.run(go())

    out = await asyncio.get_running_loop().run_in_executor(None, other_loop)
    assert out == "hi\n"
    await rt.shutdown()


async def test_cancelling_the_future_cancels_the_work(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("sleep", ["30"])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ex.wait(), 0.2)
    await ex.kill()
    assert (await ex.wait()).exit_code == -9


async def test_async_context_manager_starts_and_stops(sim_rt):
    box = await sim_rt.create(keep())
    async with box as b:
        assert b is box and (await box.info()).state.status == "running"
    assert (await sim_rt.get_info(box.id)).state.status == "stopped"


async def test_simplebox_wrapper_runs_over_the_simulator(sim_rt):
    async with boxlite.SimpleBox(runtime=sim_rt, name="sb") as sb:
        res = await sb.exec("bash", "-c", "echo $X; echo e >&2; exit 2", env={"X": "1"}, cwd="/tmp")
        assert (res.exit_code, res.stdout, res.stderr) == (2, "1\n", "e\n")
        assert await sim_rt.get_info("sb") is not None
    assert await sim_rt.get_info("sb") is None  # auto_remove=True by default


def test_default_runtime_uses_boxlite_home_and_init_default_ordering(tmp_path):
    code = ("import boxlite,os\n"
            "a=boxlite.Boxlite.default(); b=boxlite.Boxlite.default(); assert a is b\n"
            "assert os.path.exists(os.path.join(os.environ['BOXLITE_HOME'],'.lock'))\n"
            "try:\n boxlite.Boxlite.init_default(boxlite.Options())\n"
            "except boxlite.InternalError as e:\n print(e)\n")
    env = dict(os.environ, BOXLITE_HOME=str(tmp_path / "h"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("internal error: Default runtime already initialized.")


async def test_stop_on_invalidated_handle_does_not_touch_the_restarted_box(sim_rt):
    box = await sim_rt.create(keep())
    await box.start()
    await box.stop()
    fresh = await sim_rt.get(box.id)
    await fresh.start()
    assert await box.stop() == ()
    assert (await sim_rt.get_info(box.id)).state.status == "running"


async def test_boot_delay_and_cancelled_start_leaves_box_configured(sim_rt, monkeypatch):
    monkeypatch.setenv("BOXLITE_SIM_BOOT_DELAY", "0.5")
    box = await sim_rt.create(keep())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(box.start(), 0.1)
    assert (await box.info()).state.status == "configured"
    t0 = time.monotonic()
    await box.start()
    assert time.monotonic() - t0 >= 0.5
    assert (await box.info()).state.status == "running"


async def test_attach_by_execution_id_and_local_only_surfaces(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("bash", ["-c", "read x; echo got $x"])
    again = await box.attach(ex.id())
    await again.stdin().send_input(b"hi\n")
    assert await collect(again.stdout()) == "got hi\n"
    assert (await ex.wait()).exit_code == 0
    with pytest.raises(E.UnsupportedError):
        await box.attach()
    assert await sim_rt.images.list() == []
    with pytest.raises(E.UnsupportedError, match="named volumes are not supported yet"):
        await sim_rt.volumes.list()
    with pytest.raises(E.InvalidStateError, match="outbound policy updates require a running box"):
        await (await sim_rt.create(keep())).network.update_outbound(boxlite.OutboundNetworkSpec())
    assert await box.network.revoke_tunnel(80) == ()


def test_result_classes_cannot_be_constructed():
    for cls in (boxlite.Box, boxlite.BoxInfo, boxlite.Execution, boxlite.SnapshotInfo, boxlite.BoxMetrics):
        with pytest.raises(TypeError, match="cannot create"):
            cls()
    assert repr(BoxOptions(image="a")) == 'BoxOptions(image=Some("a"), rootfs_path=None, cpus=None, memory_mib=None, advanced=false)'
    assert repr(Options(home_dir="/h")) == 'Options(home_dir=Some("/h"), image_registries=[])'

"""The fake VM (crates/fakevm) under the unmodified boxlite 0.10.8 wheel: the real runtime
creates, starts, execs, copies and stops boxes whose "VM" is our daemon (TEST ONLY: box
commands run as host processes, NO VM isolation).

Run from the official-clients venv (it holds the real wheel), as root, with a local OCI layout:

    BOXLITE_TEST_ROOTFS=~/.cache/sandbank-boxlite/debian-oci \\
      python/testbed/.venv-official/bin/python -m pytest python/testbed/tests/test_fakevm.py

Skipped (with the reason) in the simulator venv, without root, without the built binary
(``cargo build -p boxlite-fakevm``) or without ``BOXLITE_TEST_ROOTFS``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

import boxlite  # must be the real SDK: imported before python/testbed joins sys.path

if getattr(boxlite, "__testbed__", False):
    pytest.skip("the fake VM runs under the real boxlite wheel (python/testbed/.venv-official)",
                allow_module_level=True)

TESTBED = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTBED not in sys.path:
    sys.path.append(TESTBED)
from realpath.fakevm import FakeVm, default_binary, unavailable_reason  # noqa: E402

BINARY = Path(os.environ["BOXLITE_FAKEVM_BIN"]) if os.environ.get("BOXLITE_FAKEVM_BIN") else default_binary()
ROOTFS = os.environ.get("BOXLITE_TEST_ROOTFS", "")
_reason = unavailable_reason(BINARY) or (
    None if ROOTFS and Path(ROOTFS, "index.json").is_file()
    else "BOXLITE_TEST_ROOTFS must name a local OCI layout (scripts/build-oci-rootfs.sh)")
if _reason:
    pytest.skip(_reason, allow_module_level=True)


@pytest.fixture(scope="module")
def fakevm(tmp_path_factory):
    vm = FakeVm(BINARY, tmp_path_factory.mktemp("fakevm")).start()
    old = os.environ.get("BOXLITE_RUNTIME_DIR")
    os.environ["BOXLITE_RUNTIME_DIR"] = vm.env()["BOXLITE_RUNTIME_DIR"]
    yield vm
    if old is None:
        os.environ.pop("BOXLITE_RUNTIME_DIR", None)
    else:
        os.environ["BOXLITE_RUNTIME_DIR"] = old
    vm.stop()


@pytest.fixture(scope="module")
def rt(fakevm, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return boxlite.Boxlite(boxlite.Options(home_dir=str(home)))


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _drain(stream) -> str:
    if stream is None:
        return ""
    out = []
    async for chunk in stream:
        out.append(chunk if isinstance(chunk, str) else chunk.decode())
    return "".join(out)


async def sh(box, cmd: str, **kw):
    ex = await box.exec("sh", args=["-c", cmd], **kw)
    out, err, res = await asyncio.gather(_drain(ex.stdout()), _drain(ex.stderr()), ex.wait())
    return out, err, res.exit_code


async def new_box(rt, **kw):
    box = await rt.create(boxlite.BoxOptions(rootfs_path=ROOTFS, auto_remove=False, **kw))
    await box.start()
    return box


def test_exec_reports_stdout_stderr_and_exit_code(rt):
    async def main():
        box = await new_box(rt)
        out, err, code = await sh(box, "echo out; echo err >&2; exit 3")
        assert (out, err, code) == ("out\n", "err\n", 3)
        await box.stop()
    run(main())


def test_env_workdir_and_user_apply(rt):
    async def main():
        box = await new_box(rt)
        out, _, code = await sh(box, 'echo "$GREETING $(pwd) $(id -u):$(id -g) $HOME"',
                                env=[("GREETING", "hi")], cwd="/var", user="nobody")
        assert code == 0
        assert out == "hi /var 65534:65534 /nonexistent\n"
        out, _, _ = await sh(box, "id -u; cat /etc/debian_version >/dev/null && echo debian")
        assert out == "0\ndebian\n"
        await box.stop()
    run(main())


def test_a_signal_death_is_reported_as_minus_the_signal(rt):
    async def main():
        box = await new_box(rt)
        _, _, code = await sh(box, "kill -TERM $$")
        assert code == -signal.SIGTERM
        await box.stop()
    run(main())


def test_tmp_is_shared_by_execs_and_cleared_by_a_restart_while_the_rootfs_persists(rt):
    async def main():
        box = await new_box(rt)
        box_id = box.id
        assert (await sh(box, "echo t > /tmp/t; echo r > /root/r; echo s > /dev/shm/s"))[2] == 0
        out, _, _ = await sh(box, "cat /tmp/t /dev/shm/s /root/r")
        assert out == "t\ns\nr\n"
        await box.stop()
        box = await rt.get(box_id)
        await box.start()
        out, _, _ = await sh(box, "cat /root/r; find /tmp /dev/shm -mindepth 1 | wc -l")
        assert out == "r\n0\n"
        await box.stop()
    run(main())


def test_copy_in_and_copy_out_place_files_like_the_guest(rt, tmp_path):
    async def main():
        box = await new_box(rt)
        src = tmp_path / "in.txt"
        src.write_text("payload\n")
        await box.copy_in(str(src), "/root/in.txt")
        out, _, _ = await sh(box, "cat /root/in.txt")
        assert out == "payload\n"
        # Under /tmp the file lands beneath the tmpfs, invisible to commands (as in the guest).
        await box.copy_in(str(src), "/tmp/hidden.txt")
        assert (await sh(box, "test -e /tmp/hidden.txt"))[2] == 1
        await sh(box, "mkdir -p /root/d && echo a > /root/d/a")
        dest = tmp_path / "out"
        dest.mkdir()
        await box.copy_out("/root/d", str(dest))
        assert (dest / "d" / "a").read_text() == "a\n"
        await box.stop()
    run(main())


def test_volumes_are_shared_with_the_host(rt, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-host").write_text("h\n")

    async def main():
        box = await new_box(rt, volumes=[(str(vol), "/data")])
        out, _, _ = await sh(box, "cat /data/from-host; echo g > /data/from-guest")
        assert out == "h\n"
        await box.stop()
    run(main())
    assert (vol / "from-guest").read_text() == "g\n"


def host_pids(token: str) -> list[int]:
    """Host pids of the processes whose command line contains `token` (box pids differ: each
    box has its own PID namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


async def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return not any(Path(f"/proc/{p}").exists() for p in pids)


def test_kill_ends_the_exec_with_sigkill_and_stop_ends_what_it_left(rt):
    # boxlite 0.10.8's kill() asks the guest for the process only (Kill.process_group false), so
    # a background child outlives it, as in a real guest, until the box stops.
    async def main():
        box = await new_box(rt)
        ex = await box.exec("sh", args=["-c", "sleep 300.101 & echo $!; wait"])
        stdout = ex.stdout()
        first = await stdout.__anext__()
        child = int((first if isinstance(first, str) else first.decode()).strip())
        await ex.kill()
        res = await ex.wait()
        assert res.exit_code == -signal.SIGKILL
        _, _, alive = await sh(box, f"kill -0 {child}")
        assert alive == 0, "the background child should outlive a kill of its parent only"
        on_host = host_pids("300.101")
        assert on_host
        await box.stop()
        assert await gone(on_host), "the background child outlived stop()"
    run(main())


def test_stop_leaves_no_box_process_behind(rt):
    async def main():
        box = await new_box(rt)
        await sh(box, "setsid sleep 300.102 >/dev/null 2>&1 &")
        on_host = host_pids("300.102")
        assert on_host
        await box.stop()
        assert await gone(on_host), "a detached box process outlived stop()"
    run(main())


def test_each_box_sees_only_its_own_processes(rt):
    # A VM has its own PID namespace: pgrep/ps in a box must not see other boxes or the host.
    async def main():
        host = await asyncio.create_subprocess_exec("sleep", "300.103")
        one, two = await new_box(rt), await new_box(rt)
        try:
            await sh(one, "sleep 300.104 >/dev/null 2>&1 &")
            out, _, _ = await sh(one, "pgrep -f '300[.]10[34]' || true")
            assert len(out.split()) == 1, f"box one should see only its own sleep: {out!r}"
            out, _, _ = await sh(two, "pgrep -f '300[.]10[34]' || true")
            assert out == "", f"box two sees other processes: {out!r}"
            out, _, _ = await sh(two, "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
            pid, init = out.splitlines()
            assert int(pid) < 100 and "pid-init" in init, out
        finally:
            host.kill()
            await host.wait()
            await one.stop()
            await two.stop()
    run(main())


def test_many_concurrent_streams_do_not_exhaust_the_agent(rt):
    async def main():
        box = await new_box(rt)
        results = await asyncio.gather(*(sh(box, f"sleep 0.5; echo {i}") for i in range(48)))
        assert [r[0] for r in results] == [f"{i}\n" for i in range(48)]
        await box.stop()
    run(main(), timeout=180)

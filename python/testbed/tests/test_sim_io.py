"""SDK simulator: copy_in/copy_out (incl. the /tmp rule), stdin, tty, signals, timeouts, metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from boxlite import BoxOptions, CopyOptions
from boxlite import errors as E

from test_sim_basics import collect, keep, run


async def test_copy_in_file_to_new_path_and_into_directory(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    src = tmp_path / "a.txt"
    src.write_text("hello")
    assert await box.copy_in(str(src), "/root/renamed.txt") == ()
    await box.copy_in(str(src), "/work/")
    out, _, _ = await run(box, "cat /root/renamed.txt; echo; cat /work/a.txt")
    assert out == "hello\nhello"


async def test_copy_in_directory_and_directory_contents(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    d = tmp_path / "proj"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("F")
    await run(box, "mkdir -p /srv/existing")
    await box.copy_in(str(d), "/srv/existing")      # existing dir receives proj/
    await box.copy_in(str(d), "/srv/fresh")         # new path becomes the dir
    await box.copy_in(str(d) + "/.", "/srv/flat")   # contents only
    out, _, _ = await run(box, "cat /srv/existing/proj/sub/f /srv/fresh/sub/f /srv/flat/sub/f")
    assert out == "FFF"


async def test_copy_in_overwrite_false_refuses_existing(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    src = tmp_path / "x"
    src.write_text("1")
    await box.copy_in(str(src), "/root/x")
    with pytest.raises(E.AlreadyExistsError, match="exists and overwrite=false"):
        await box.copy_in(str(src), "/root/x", CopyOptions(overwrite=False))


async def test_copy_in_starts_box_lazily(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    src = tmp_path / "x"
    src.write_text("1")
    await box.copy_in(str(src), "/root/x")
    assert (await box.info()).state.status == "running"


async def test_copy_in_under_tmp_is_hidden_from_exec(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    src = tmp_path / "up.txt"
    src.write_text("hidden")
    await box.copy_in(str(src), "/tmp/conf-upload-dest")
    await box.copy_in(str(src), "/dev/shm/up.txt")
    out, _, code = await run(box, "ls /tmp/conf-upload-dest /dev/shm/up.txt")
    assert code != 0 and out == ""
    # copy_out reads the same hidden layer, not what exec wrote
    await run(box, "echo from-exec > /tmp/conf-upload-dest")
    dst = tmp_path / "back.txt"
    await box.copy_out("/tmp/conf-upload-dest", str(dst))
    assert dst.read_text() == "hidden"


async def test_copy_out_file_and_directory(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    await run(box, "mkdir -p /root/d/sub && echo one > /root/d/sub/f && printf '\\377\\000bin' > /root/b")
    await box.copy_out("/root/b", str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"\xff\x00bin"
    (tmp_path / "into").mkdir()
    await box.copy_out("/root/d", str(tmp_path / "into"))
    assert (tmp_path / "into" / "d" / "sub" / "f").read_text() == "one\n"
    await box.copy_out("/root/d/.", str(tmp_path / "contents"))
    assert (tmp_path / "contents" / "sub" / "f").read_text() == "one\n"


async def test_copy_out_missing_source_is_not_found(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    with pytest.raises(E.NotFoundError):
        await box.copy_out("/root/missing", str(tmp_path / "m"))


async def test_copy_in_read_only_host_base_is_refused(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    src = tmp_path / "x"
    src.write_text("1")
    with pytest.raises(E.StorageError):
        await box.copy_in(str(src), "/usr/bin/x")


async def test_stdin_send_and_close(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("bash", ["-c", "tr a-z A-Z; echo done"])
    stdin = ex.stdin()
    await stdin.send_input(b"hello ")
    await stdin.send_input(b"world\n")
    assert await stdin.is_closed() is False
    await stdin.close()
    assert await stdin.is_closed() is True
    out = await collect(ex.stdout())
    assert out == "HELLO WORLD\ndone\n"
    assert (await ex.wait()).exit_code == 0
    with pytest.raises(TypeError):
        stdin.send_input("str")


async def test_tty_merges_stderr_into_stdout_and_has_a_terminal(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("bash", ["-c", "test -t 0 && test -t 1 && echo tty; echo err >&2; stty size"], tty=True)
    out, err = await asyncio.gather(collect(ex.stdout()), collect(ex.stderr()))
    assert (await ex.wait()).exit_code == 0
    assert err == ""
    assert out.replace("\r\n", "\n") == "tty\nerr\n24 80\n"
    assert "\r\n" in out


async def test_tty_stdin_and_resize(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("bash", ["-c", "read -r line; echo got:$line; stty size"], tty=True)
    await ex.resize_tty(40, 100)
    await ex.stdin().send_input(b"abc\n")
    out = await collect(ex.stdout())
    assert "got:abc" in out and "40 100" in out


async def test_signal_and_kill_give_negative_exit_codes(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("sleep", ["30"])
    await ex.signal(signal.SIGTERM)
    assert (await ex.wait()).exit_code == -15
    ex = await box.exec("sleep", ["30"])
    assert await ex.kill() == ()
    assert (await ex.wait()).exit_code == -9
    # a handler-trapped signal lets the process choose its exit status
    ex = await box.exec("bash", ["-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done"])
    it = ex.stdout().__aiter__()
    assert await it.__anext__() == "ready\n"
    await ex.signal(signal.SIGUSR1)
    assert (await ex.wait()).exit_code == 7


async def test_timeout_kills_the_process(sim_rt):
    box = await sim_rt.create(keep())
    t0 = time.monotonic()
    ex = await box.exec("sleep", ["30"], timeout_secs=0.5)
    res = await ex.wait()
    assert res.exit_code == -9 and "timed out" in res.error_message
    assert time.monotonic() - t0 < 5


async def test_wait_on_execution_when_box_stops(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("sleep", ["30"])
    await box.stop()
    res = await ex.wait()
    assert res.exit_code == -1 and res.error_message


async def test_background_process_survives_its_exec_until_stop(sim_rt):
    box = await sim_rt.create(keep())
    out, _, code = await run(box, "nohup sleep 30 >/dev/null 2>&1 & echo $!")
    assert code == 0
    pid = out.strip()
    _, _, alive = await run(box, f"kill -0 {pid}")
    assert alive == 0


async def test_box_metrics_count_real_work(sim_rt):
    box = await sim_rt.create(keep())
    ex = await box.exec("bash", ["-c", "cat; echo 12345"])
    stdin = ex.stdin()
    await stdin.send_input(b"abc")
    await stdin.close()
    out = await collect(ex.stdout())
    await ex.wait()
    assert out == "abc12345\n"
    await run(box, "true")
    m = await box.metrics()
    assert m.commands_executed_total == 2
    assert m.exec_errors_total == 0
    assert m.bytes_sent_total == 3
    assert m.bytes_received_total == 9
    assert m.guest_boot_duration_ms is not None and m.total_create_duration_ms is not None
    assert m.memory_bytes and m.memory_bytes > 0
    for name in ("cpu_percent", "network_bytes_sent", "network_tcp_connections", "stage_filesystem_setup_ms",
                 "stage_box_spawn_ms", "stage_container_init_ms"):
        getattr(m, name)
    rm = await sim_rt.metrics()
    assert (rm.boxes_created_total, rm.total_commands_executed, rm.num_running_boxes) == (1, 2, 1)


async def test_box_metrics_auto_start(sim_rt):
    box = await sim_rt.create(keep())
    await box.metrics()
    assert (await box.info()).state.status == "running"


async def test_concurrent_execs_share_one_box(sim_rt):
    box = await sim_rt.create(keep())
    results = await asyncio.gather(*(run(box, f"echo {i} > /root/f{i}; cat /root/f{i}") for i in range(6)))
    assert [r[0] for r in results] == [f"{i}\n" for i in range(6)]


async def test_volume_is_bound_into_the_box(sim_rt, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("host")
    box = await sim_rt.create(BoxOptions(auto_remove=False, volumes=[(str(shared), "/mnt/shared")]))
    out, _, _ = await run(box, "cat /mnt/shared/in; echo box > /mnt/shared/out")
    assert out == "host"
    assert (shared / "out").read_text() == "box\n"
    assert os.path.exists(shared / "out")


async def test_tunnel_connects_to_a_server_in_the_box(sim_rt):
    import socket as _s

    with _s.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = await sim_rt.create(keep())
    server = await box.exec("python3", ["-c", (
        "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.bind(('127.0.0.1',{port}));s.listen();print('up',flush=True);"
        "c,_=s.accept();c.sendall(c.recv(100).upper());c.close()")])
    it = server.stdout().__aiter__()
    assert await it.__anext__() == "up\n"
    tunnel = await box.network.tunnel(port)
    assert tunnel.uri() is None
    conn = await tunnel.connect()
    await conn.write(b"ping")
    assert await conn.read(100) == b"PING"
    await conn.close()
    with pytest.raises(E.InvalidStateError):
        await tunnel.connect()
    assert (await server.wait()).exit_code == 0


async def test_copy_in_files_belong_to_the_box_user(sim_rt, tmp_path):
    box = await sim_rt.create(BoxOptions(auto_remove=False, user="65534:65534"))
    src = tmp_path / "d"
    src.mkdir()
    (src / "f").write_text("x")
    await box.copy_in(str(src), "/home/d")
    out, _, _ = await run(box, "stat -c '%u:%g' /home/d /home/d/f; id -u")
    assert out == "65534:65534\n65534:65534\n65534\n"


async def test_copy_mount_refusal_mode(sim_rt, tmp_path, monkeypatch):
    monkeypatch.setenv("BOXLITE_SIM_COPY_MOUNTS", "refuse")
    box = await sim_rt.create(keep())
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(E.InvalidArgumentError, match="guest mount /tmp"):
        await box.copy_in(str(src), "/tmp/f")
    with pytest.raises(E.InvalidArgumentError, match="guest mount /dev/shm"):
        await box.copy_out("/dev", str(tmp_path / "dev"))
    await box.copy_in(str(src), "/root/f")  # elsewhere unaffected


async def test_published_ports_forward_to_the_guest(sim_rt):
    import socket as _s

    def free_port():
        with _s.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    guest, host = free_port(), free_port()
    box = await sim_rt.create(BoxOptions(auto_remove=False, ports=[(host, guest), {"guest_port": guest}]))
    assert (await box.info()).network.published_ports == []
    server = await box.exec("python3", ["-c", (
        "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.bind(('127.0.0.1',{guest}));s.listen();print('up',flush=True);"
        "c,_=s.accept();c.sendall(b'hello');c.close()")])
    assert await server.stdout().__aiter__().__anext__() == "up\n"
    ports = (await box.info()).network.published_ports
    assert [(p.guest_port, p.protocol) for p in ports] == [(guest, "tcp"), (guest, "tcp")]
    assert ports[0].host_port == host and ports[1].host_port not in (0, guest)
    reader, writer = await asyncio.open_connection("127.0.0.1", host)
    assert await reader.read() == b"hello"
    writer.close()


async def test_copy_paths_resolve_symlinks_inside_the_box(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    await run(box, "mkdir -p /srv/real && ln -s /srv/real /work/link && ln -s / /root/escape")
    src = tmp_path / "f"
    src.write_text("via-link")
    await box.copy_in(str(src), "/work/link/f")
    assert (await run(box, "cat /srv/real/f"))[0] == "via-link"
    await box.copy_in(str(src), "/root/escape/opt/g")  # "/" of the box, not of the host
    assert (await run(box, "cat /opt/g"))[0] == "via-link"
    assert not os.path.exists("/opt/g")


async def test_copy_out_follow_symlinks_resolves_in_the_box(sim_rt, tmp_path):
    box = await sim_rt.create(keep())
    await run(box, "echo inside > /root/target && ln -s /root/target /srv/link")
    await box.copy_out("/srv/link", str(tmp_path / "as-link"))
    assert os.path.islink(tmp_path / "as-link")
    await box.copy_out("/srv/link", str(tmp_path / "followed"), CopyOptions(follow_symlinks=True))
    assert (tmp_path / "followed").read_text() == "inside\n"


async def test_background_child_holding_stdout_does_not_block_stream_end(sim_rt):
    box = await sim_rt.create(keep())
    t0 = time.monotonic()
    out, err, code = await run(box, "sleep 30 & echo hi")
    assert (out, code) == ("hi\n", 0)
    assert time.monotonic() - t0 < 5


async def test_exec_accepts_argv_and_env_near_arg_max(sim_rt):
    box = await sim_rt.create(keep())
    big = "x" * 120_000
    out, _, code = await run(box, 'echo ${#BIG} $#; for a in "$@"; do echo ${#a}; done', env=[("BIG", big)])
    assert (out, code) == ("120000 0\n", 0)
    ex = await box.exec("bash", ["-c", 'echo $#; n=0; for a in "$@"; do n=$((n+${#a})); done; echo $n', "_"]
                        + [big] * 12)
    assert await collect(ex.stdout()) == "12\n1440000\n"


async def test_agent_falls_back_to_the_simulator_interpreter(sim_rt, monkeypatch):
    from boxlite import _sandbox

    monkeypatch.setattr(_sandbox, "SYSTEM_PYTHON", "/nonexistent/python3")
    box = await sim_rt.create(keep())
    assert (await run(box, "echo ok"))[0] == "ok\n"

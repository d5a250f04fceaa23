"""Official clients against the test server.

Run from the official-clients venv (``python/testbed/setup-official.sh``):

    python/testbed/.venv-official/bin/pytest python/testbed/tests/test_official_clients.py

* the real ``boxlite`` 0.10.8 SDK's REST runtime (``Boxlite.rest``) against
  the ``current`` dialect;
* ``boxrun-sdk`` (PyPI) against the ``boxrun`` dialect;
* the same REST runtime against a real ``boxlite serve`` when ``BOXLITE_REAL_CURRENT_URL`` (and
  ``BOXLITE_REAL_CURRENT_API_KEY``) name one.

The SSE-era client (boxlite 0.9.3) has its own venv and module: ``test_official_sse_client.py``.

The server process runs from the simulator venv (``.venv``, or
``$BOXLITE_TESTBED_SIM_PYTHON``). Everything is skipped when this module is
collected in a venv whose ``boxlite`` is the simulator.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

import boxlite  # must be the real SDK: imported before python/testbed joins sys.path

if getattr(boxlite, "__testbed__", False):
    pytest.skip("official clients run from python/testbed/.venv-official (setup-official.sh)",
                allow_module_level=True)
boxrun_sdk = pytest.importorskip("boxrun_sdk")

TESTBED = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTBED not in sys.path:
    sys.path.append(TESTBED)  # after the real boxlite is imported, for the harness only
from boxlite_testbed.server.harness import ServerProc  # noqa: E402
from official_cycle import full_cycle, run  # noqa: E402

SIM_PY = os.environ.get("BOXLITE_TESTBED_SIM_PYTHON", os.path.join(TESTBED, ".venv", "bin", "python"))
TOKEN = "blk_test_official"


def _server(*args, **kw) -> ServerProc:
    if not os.path.exists(SIM_PY):
        pytest.skip(f"simulator venv missing: {SIM_PY} (run python/testbed/setup.sh)")
    return ServerProc(*args, python=SIM_PY, **kw)


@pytest.fixture(scope="module")
def rest_srv():
    # --upload-style ref: single-file downloads come back as one tar entry, which
    # the 0.10.8 client writes as the destination file (see README, "Server").
    s = _server("--dialect", "current", "--auth", "token", "--token", TOKEN, "--upload-style", "ref")
    yield s
    assert s.stop() == 0


def test_real_sdk_rest_runtime_full_cycle(rest_srv, tmp_path):
    rt = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=rest_srv.url, credential=boxlite.ApiKeyCredential(TOKEN)))
    options = boxlite.BoxOptions(image="alpine:latest", auto_delete=0, env=[("GREETING", "hi")])
    asyncio.run(full_cycle(rt, options, "official-1", tmp_path))
    log = rest_srv.control("GET", "/requests").json()["requests"]
    assert log and all(e["authorization"] == {"present": True, "scheme": "Bearer", "token": TOKEN} for e in log)
    paths = {(e["method"], e["path"].split("/executions/")[0] + ("/executions" if "/executions/" in e["path"] else ""))
             for e in log}
    assert ("POST", "/v1/boxes") in paths
    assert any(e["path"].endswith("/attach") and e["status"] == 101 for e in log)
    assert any(e["method"] == "PUT" and "source_is_dir=" in e["query"] for e in log)


@pytest.mark.skipif(not os.environ.get("BOXLITE_REAL_CURRENT_URL"),
                    reason="no real boxlite serve (set BOXLITE_REAL_CURRENT_URL and BOXLITE_REAL_CURRENT_API_KEY)")
def test_real_sdk_rest_runtime_full_cycle_against_a_real_serve(tmp_path):
    url = os.environ["BOXLITE_REAL_CURRENT_URL"]
    key = os.environ.get("BOXLITE_REAL_CURRENT_API_KEY")
    rootfs = os.environ.get("BOXLITE_TEST_ROOTFS")
    image = {"rootfs_path": rootfs} if rootfs else {"image": os.environ.get("BOXLITE_TEST_IMAGE", "alpine:latest")}

    cred = boxlite.ApiKeyCredential(key) if key else None
    rt = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=url, credential=cred))
    options = boxlite.BoxOptions(auto_delete=0, env=[("GREETING", "hi")], **image)
    # The real serve 0.11.0 unpacks an upload into a temporary `extracted` directory and copies that
    # directory itself into the destination: everything lands under `<dest>/extracted/`. A file
    # copied out to a new path becomes a directory there; into an existing one it keeps its name.
    asyncio.run(full_cycle(rt, options, f"official-py-{os.getpid()}", tmp_path,
                           file_at="/root/in.txt/extracted/in.txt", tree_at="/root/tree/extracted/tree",
                           copy_out_into_dir=True))


def test_real_sdk_rest_runtime_with_path_prefix():
    s = _server("--dialect", "current", "--prefix", "acme/team-7")
    try:
        async def main():
            rt = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=s.url, path_prefix="acme/team-7"))
            box = await rt.create(boxlite.BoxOptions(image="alpine:latest", auto_delete=0))
            out, _, code = await run(box, "echo prefixed")
            assert (out, code) == ("prefixed\n", 0)
            await rt.remove(box.id, force=True)

        asyncio.run(main())
        log = s.control("GET", "/requests").json()["requests"]
        box_calls = [e["path"] for e in log if "/boxes" in e["path"]]
        assert box_calls and all(p.startswith("/v1/acme/team-7/boxes") for p in box_calls)
        assert not any(e["authorization"]["present"] for e in log)
    finally:
        assert s.stop() == 0


def test_real_sdk_rest_runtime_surfaces_server_errors():
    s = _server("--dialect", "current", "--auth", "token", "--token", TOKEN)
    try:
        async def main():
            bad = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=s.url, credential=boxlite.ApiKeyCredential("x")))
            with pytest.raises(Exception) as ei:
                await bad.list_info()
            rt = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=s.url, credential=boxlite.ApiKeyCredential(TOKEN)))
            assert await rt.get_info("does-not-exist") is None
            return ei.value

        err = asyncio.run(main())
        assert "unauthenticated" in str(err).lower() or "401" in str(err) or "api key" in str(err).lower()
    finally:
        assert s.stop() == 0


def test_boxrun_sdk_full_cycle(tmp_path):
    s = _server("--dialect", "boxrun", env={"BOXRUN_MAX_CPU": "64", "BOXRUN_MAX_MEMORY_MB": "65536"})
    try:
        async def main():
            async with boxrun_sdk.BoxRunClient(base_url=s.url) as client:
                box = await client.create("ubuntu:24.04", name="br-1", env={"K": "v"})
                assert box.info.status == "running" and box.name == "br-1"
                assert [b.id for b in await client.list_boxes()] == [box.id]
                assert (await client.get_box("br-1")).id == box.id
                ei = await box.exec(["sh", "-c", "echo $K; exit 3"])
                assert ei.status == "failed" and ei.exit_code == 3
                events = [e async for e in box.exec_stream(["sh", "-c", "echo out; echo err >&2"])]
                logs = {(e.stream, e.data) for e in events if e.type == "log"}
                assert logs == {("stdout", "out\n"), ("stderr", "err\n")}
                assert events[-1].type == "exit"
                src = tmp_path / "up.bin"
                src.write_bytes(bytes(range(256)))
                await box.upload(str(src), "/root/up.bin")
                dst = tmp_path / "down.bin"
                await box.download("/root/up.bin", str(dst))
                assert dst.read_bytes() == bytes(range(256))
                with pytest.raises(boxrun_sdk.BoxRunError) as ei2:
                    await box.remove()
                assert ei2.value.code == "BOX_ALREADY_RUNNING"
                await box.stop()
                await box.start()
                await box.remove(force=True)
                assert await client.list_boxes() == []
                res = await client.run("ubuntu:24.04", ["sh", "-c", "echo one-shot"])
                assert res.exit_code == 0 and res.stdout == "one-shot\n"

        asyncio.run(main())
    finally:
        assert s.stop() == 0


def test_real_sdk_rest_tunnel_connects_to_an_in_box_service(rest_srv):
    import socket
    import threading

    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]

    def serve_once():
        c, _ = lst.accept()
        c.sendall(b"echo:" + c.recv(100))
        c.close()

    threading.Thread(target=serve_once, daemon=True).start()

    async def main():
        rt = boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=rest_srv.url,
                                                             credential=boxlite.ApiKeyCredential(TOKEN)))
        box = await rt.create(boxlite.BoxOptions(image="alpine:latest", auto_delete=0))
        tunnel = await box.network.tunnel(port)
        assert tunnel.uri().startswith("http://127.0.0.1:")
        conn = await asyncio.wait_for(tunnel.connect(), 10)
        await conn.write(b"hi")
        data = await asyncio.wait_for(conn.read(100), 10)
        await conn.close()
        await rt.remove(box.id, force=True)
        return bytes(data)

    try:
        assert asyncio.run(main()) == b"echo:hi"
    finally:
        lst.close()

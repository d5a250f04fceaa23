"""The official SSE-era client as a judge of the test server's "sse" dialect.

The ``boxlite`` 0.9.3 wheel's REST runtime (``Boxlite.rest``) speaks the SSE-era BoxLite REST API:
OAuth2 client credentials, tenant prefix in paths, exec output as server-sent events. Run from its
own venv (``python/testbed/setup-official.sh`` makes ``.venv-official-sse``):

    python/testbed/.venv-official-sse/bin/pytest python/testbed/tests/test_official_sse_client.py

against both SSE-era flavours of the test server (the reference server and the SSE-era
``boxlite serve``), and against a real SSE-era server when ``BOXLITE_REAL_SSE_URL``,
``BOXLITE_REAL_SSE_CLIENT_ID`` and ``BOXLITE_REAL_SSE_CLIENT_SECRET`` name one. Everything is
skipped when this module is collected in a venv without the 0.9 wheel.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

import boxlite  # must be the real 0.9 wheel: imported before python/testbed joins sys.path

if getattr(boxlite, "__testbed__", False) or not str(getattr(boxlite, "__version__", "")).startswith("0.9."):
    pytest.skip("the SSE-era client runs from python/testbed/.venv-official-sse (setup-official.sh)",
                allow_module_level=True)

TESTBED = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTBED not in sys.path:
    sys.path.append(TESTBED)  # after the real boxlite is imported, for the harness only
from boxlite_testbed.server.harness import ServerProc  # noqa: E402
from official_cycle import full_cycle  # noqa: E402

SIM_PY = os.environ.get("BOXLITE_TESTBED_SIM_PYTHON", os.path.join(TESTBED, ".venv", "bin", "python"))
CLIENT_ID, CLIENT_SECRET = "official-sse", "official-sse-secret"


def _server(dialect: str, *args: str) -> ServerProc:
    if not os.path.exists(SIM_PY):
        pytest.skip(f"simulator venv missing: {SIM_PY} (run python/testbed/setup.sh)")
    return ServerProc("--dialect", dialect, "--auth", "client-credentials", "--client-id", CLIENT_ID,
                      "--client-secret", CLIENT_SECRET, *args, python=SIM_PY)


def _options(**image):
    return boxlite.BoxOptions(auto_remove=False, env=[("GREETING", "hi")], **image)


def _runtime(url: str, client_id: str, secret: str):
    # No prefix: the 0.9.3 client then uses "default" (passing "default" explicitly makes it
    # ask for tokens under the prefix, which no server serves).
    return boxlite.Boxlite.rest(boxlite.BoxliteRestOptions(url=url, client_id=client_id, client_secret=secret))


@pytest.mark.parametrize("flavor", ["ref", "serve"])
def test_sse_era_client_full_cycle_against_the_test_server(flavor, tmp_path):
    s = _server("sse-serve", "--prefix", "default") if flavor == "serve" else _server("sse-ref")
    try:
        # stdin: the SSE-era serve forgets an execution once its output is opened.
        asyncio.run(full_cycle(_runtime(s.url, CLIENT_ID, CLIENT_SECRET), _options(image="alpine:latest"),
                               f"official-sse-{flavor}", tmp_path, stdin=flavor == "ref", copy_out_into_dir=True))
        log = s.control("GET", "/requests").json()["requests"]
        assert any(e["path"] == "/v1/oauth/tokens" and e["status"] == 200 for e in log)
        box_calls = [e for e in log if "/boxes" in e["path"]]
        assert box_calls and all(e["path"].startswith("/v1/default/boxes") for e in box_calls)
        assert all(e["authorization"]["present"] for e in box_calls)
        assert any(e["path"].endswith("/output") and e["status"] == 200 for e in log)
    finally:
        assert s.stop() == 0


def test_sse_era_client_reports_wrong_credentials():
    s = _server("sse-ref")
    try:
        async def main():
            with pytest.raises(Exception) as ei:
                await _runtime(s.url, CLIENT_ID, "wrong").list_info()
            return ei.value

        err = asyncio.run(main())
        assert "401" in str(err) or "token" in str(err).lower() or "credential" in str(err).lower()
    finally:
        assert s.stop() == 0


@pytest.mark.skipif(not os.environ.get("BOXLITE_REAL_SSE_URL"),
                    reason="no real SSE-era server (set BOXLITE_REAL_SSE_URL, _CLIENT_ID, _CLIENT_SECRET)")
def test_sse_era_client_full_cycle_against_a_real_server(tmp_path):
    rt = _runtime(os.environ["BOXLITE_REAL_SSE_URL"], os.environ.get("BOXLITE_REAL_SSE_CLIENT_ID", ""),
                  os.environ.get("BOXLITE_REAL_SSE_CLIENT_SECRET", ""))
    rootfs = os.environ.get("BOXLITE_TEST_ROOTFS")
    image = {"rootfs_path": rootfs} if rootfs else {"image": os.environ.get("BOXLITE_TEST_IMAGE", "alpine:latest")}
    # The reference server extracts every upload *into* the destination as a directory: a single
    # file sent to /root/in.txt becomes /root/in.txt/in.txt.
    asyncio.run(full_cycle(rt, _options(**image), f"official-sse-{os.getpid()}", tmp_path, copy_out_into_dir=True,
                           file_at="/root/in.txt/in.txt"))

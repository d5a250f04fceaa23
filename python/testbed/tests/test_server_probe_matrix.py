"""docs/dialects.md, "Detection": the probe matrix a client uses to tell the dialects apart."""

from __future__ import annotations

import pytest

from boxlite_testbed.server.harness import ServerProc


@pytest.fixture(scope="module")
def servers():
    procs = {d: ServerProc("--dialect", d, "--auth", "none") for d in ("sse", "current", "boxrun")}
    yield procs
    for p in procs.values():
        assert p.stop() == 0


def status(s, method, path, **kw):
    r = s.req(method, path, **kw)
    return r.status_code, r


def test_probe_matrix_distinguishes_the_three_dialects(servers):
    a, b, c = servers["sse"], servers["current"], servers["boxrun"]
    # GET /v1/config
    code, r = status(a, "GET", "/v1/config")
    assert code == 200 and "defaults" in r.json()
    code, r = status(b, "GET", "/v1/config")
    assert code == 200 and set(r.json()) == {"capabilities"}
    code, r = status(c, "GET", "/v1/config")
    assert code == 404 and r.content == b""
    # POST /v1/oauth/tokens
    form = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
    assert status(a, "POST", "/v1/oauth/tokens", data=form)[0] == 200
    assert status(b, "POST", "/v1/oauth/tokens", data=form)[0] == 404
    assert status(c, "POST", "/v1/oauth/tokens", data=form)[0] == 404
    # GET /v1/me
    assert status(a, "GET", "/v1/me")[0] == 404
    code, r = status(b, "GET", "/v1/me")
    assert code == 200 and r.json()["sub"] == "local-anonymous"
    assert status(c, "GET", "/v1/me")[0] == 404
    # GET /v1/info
    assert status(a, "GET", "/v1/info")[0] == 404
    assert status(b, "GET", "/v1/info")[0] == 404
    code, r = status(c, "GET", "/v1/info")
    assert code == 200 and set(r.json()) == {"max_cpu", "max_memory_mb"}
    # GET /v1/boxes
    assert status(a, "GET", "/v1/boxes")[0] == 404
    code, r = status(b, "GET", "/v1/boxes")
    assert code == 200 and r.json() == {"boxes": []}
    code, r = status(c, "GET", "/v1/boxes")
    assert code == 200 and r.json() == []

"""Every route of the SSE-era and `current` dialects answers as the official OpenAPI contract says.

Each test walks all routes the dialect serves, validates status, media type,
declared headers and JSON bodies against the contract file, and finally checks
that every served route was validated (route names are the contract's
operationIds)."""

from __future__ import annotations

import io
import tarfile

import pytest
import requests

from boxlite_testbed.server.contract import Contract, ContractError
from boxlite_testbed.server.harness import RawWebSocket, ServerProc, make_tar


class Checker:
    def __init__(self, dialect: str, srv: ServerProc):
        self.c = Contract(dialect)
        self.srv = srv
        self.by_op = {op: (m, t) for m, t, op in self.c.operations()}
        self.covered: set[str] = set()

    def check(self, op: str, r: requests.Response, status: int) -> requests.Response:
        assert r.status_code == status, f"{op}: {r.status_code} {r.text[:300]}"
        m, t = self.by_op[op]
        self.c.validate_response(m, t, r.status_code, body=r.content if m != "HEAD" else b"",
                                 content_type=r.headers.get("Content-Type"), headers=r.headers)
        self.covered.add(op)
        return r

    def served_ops(self) -> set[str]:
        routes = self.srv.control("GET", "/info").json()["routes"]
        names = {r["name"] for r in routes}
        unknown = names - set(self.by_op)
        assert not unknown, f"routes not in the contract: {unknown}"
        return names


def test_contract_loader_rejects_a_wrong_shape():
    c = Contract("current")
    with pytest.raises(ContractError):
        c.validate_response("GET", "/{prefix}/boxes/{box_id}", 200, body=b'{"id": "x"}',
                            content_type="application/json")
    with pytest.raises(ContractError):
        c.validate_response("GET", "/{prefix}/boxes/{box_id}", 418, body=b"{}", content_type="application/json")
    # the unmodified contract really differs where the documented deviations are applied
    strict = Contract("current", apply_deviations=False)
    snap = b'{"id":"a","box_id":"b","name":"s","created_at":1,"container_disk_bytes":1,"size_bytes":1}'
    with pytest.raises(ContractError):
        strict.validate_response("GET", "/{prefix}/boxes/{box_id}/snapshots/{snapshot_name}", 200, body=snap,
                                 content_type="application/json")
    c.validate_response("GET", "/{prefix}/boxes/{box_id}/snapshots/{snapshot_name}", 200, body=snap,
                        content_type="application/json")


def test_every_current_dialect_route_matches_the_box_openapi_contract():
    token = "blk_test_contract"
    srv = ServerProc("--dialect", "current", "--auth", "token", "--token", token, "--prefix", "acme/team-1")
    srv.s.headers["Authorization"] = f"Bearer {token}"
    P = "/v1/acme/team-1"
    k = Checker("current", srv)
    try:
        k.check("getConfig", srv.req("GET", "/v1/config"), 200)
        k.check("getCurrentPrincipal", srv.req("GET", "/v1/me"), 200)
        k.c.validate_response("GET", "/me", 401, body=requests.get(srv.url + "/v1/me", timeout=10).content,
                              content_type="application/json")
        r = k.check("createBox", srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest", "name": "c1",
                                                                      "cpus": 1, "memory_mib": 256,
                                                                      "env": {"A": "1"}}), 201)
        bid = r.json()["box_id"]
        k.check("listBoxes", srv.req("GET", f"{P}/boxes"), 200)
        k.check("getBox", srv.req("GET", f"{P}/boxes/{bid}"), 200)
        k.check("getBox", srv.req("GET", f"{P}/boxes/none"), 404)
        k.check("boxExists", srv.req("HEAD", f"{P}/boxes/{bid}"), 204)
        k.check("boxExists", srv.req("HEAD", f"{P}/boxes/none"), 404)
        k.check("startBox", srv.req("POST", f"{P}/boxes/{bid}/start"), 200)
        k.check("getRuntimeMetrics", srv.req("GET", f"{P}/metrics"), 200)
        k.check("getBoxMetrics", srv.req("GET", f"{P}/boxes/{bid}/metrics"), 200)
        r = k.check("startExecution", srv.req("POST", f"{P}/boxes/{bid}/exec",
                                              json={"command": "sh", "args": ["-c", "cat; echo done"]}), 201)
        eid = r.json()["execution_id"]
        k.check("getExecution", srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}"), 200)
        k.check("getExecution", srv.req("GET", f"{P}/boxes/{bid}/executions/nope"), 404)
        k.check("resizeExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/resize",
                                           json={"cols": 100, "rows": 40}), 409)  # not a tty execution
        k.check("signalExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/signal",
                                           json={"signal": 28}), 204)
        ws = RawWebSocket(srv.url, f"{P}/boxes/{bid}/executions/{eid}/attach",
                          {"Authorization": f"Bearer {token}"})
        try:
            assert ws.status == 101
            k.c.validate_response("GET", "/{prefix}/boxes/{box_id}/executions/{exec_id}/attach", 101)
            r409 = srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}/attach",
                           headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            k.check("attachExecution", r409, 409)
            ws.send_frame(0x1, b'{"type":"stdin_eof"}')
            frames = ws.frames_until_close()
        finally:
            ws.close()
        assert (0x1, b'{"type":"exit","exit_code":0}') in frames
        r = k.check("attachExecution", srv.req("GET", f"{P}/boxes/{bid}/executions/nope/attach"), 404)
        eid2 = srv.req("POST", f"{P}/boxes/{bid}/exec", json={"command": "sleep", "args": ["30"]}).json()[
            "execution_id"]
        k.check("killExecution", srv.req("DELETE", f"{P}/boxes/{bid}/executions/{eid2}"), 204)
        k.check("killExecution", srv.req("DELETE", f"{P}/boxes/{bid}/executions/{eid2}"), 404)
        k.check("uploadFiles", srv.req("PUT", f"{P}/boxes/{bid}/files?path=/root/up",
                                       data=make_tar({"f.txt": b"hi"}), headers={"Content-Type": "application/x-tar"}),
                204)
        r = k.check("downloadFiles", srv.req("GET", f"{P}/boxes/{bid}/files?path=/root/up"), 200)
        assert tarfile.open(fileobj=io.BytesIO(r.content)).getnames()
        k.check("downloadFiles", srv.req("GET", f"{P}/boxes/none/files?path=/root"), 404)
        r = srv.req("POST", f"{P}/boxes/{bid}/network/tunnel?port=8080")
        k.check("prepareTunnel", r, r.status_code if r.status_code in (200, 400) else 200)
        k.check("createSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s1"}), 409)
        k.check("stopBox", srv.req("POST", f"{P}/boxes/{bid}/stop", json={"timeout_seconds": 1}), 200)
        k.check("createSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s1"}), 201)
        k.check("createSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s2"}), 201)
        k.check("listSnapshots", srv.req("GET", f"{P}/boxes/{bid}/snapshots"), 200)
        k.check("getSnapshot", srv.req("GET", f"{P}/boxes/{bid}/snapshots/s1"), 200)
        k.check("getSnapshot", srv.req("GET", f"{P}/boxes/{bid}/snapshots/zz"), 404)
        k.check("restoreSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots/s1/restore"), 204)
        k.check("removeSnapshot", srv.req("DELETE", f"{P}/boxes/{bid}/snapshots/s2"), 204)
        k.check("removeSnapshot", srv.req("DELETE", f"{P}/boxes/{bid}/snapshots/s2"), 404)
        r = k.check("cloneBox", srv.req("POST", f"{P}/boxes/{bid}/clone", json={"name": "c2"}), 201)
        r = k.check("exportBox", srv.req("POST", f"{P}/boxes/{bid}/export"), 200)
        archive = r.content
        k.check("importBox", srv.req("POST", f"{P}/boxes/import?name=c3", data=archive,
                                     headers={"Content-Type": "application/octet-stream"}), 201)
        k.check("importBox", srv.req("POST", f"{P}/boxes/import", data=b"",
                                     headers={"Content-Type": "application/octet-stream"}), 400)
        k.check("removeBox", srv.req("DELETE", f"{P}/boxes/{bid}?force=true"), 204)
        k.check("removeBox", srv.req("DELETE", f"{P}/boxes/{bid}"), 404)
        k.check("startBox", srv.req("POST", f"{P}/boxes/{bid}/start"), 404)
        k.check("stopBox", srv.req("POST", f"{P}/boxes/{bid}/stop"), 404)
        k.check("startExecution", srv.req("POST", f"{P}/boxes/{bid}/exec", json={"command": "true"}), 404)
        k.check("signalExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/x/signal", json={"signal": 15}), 404)
        k.check("resizeExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/x/resize",
                                           json={"cols": 1, "rows": 1}), 404)
        k.check("uploadFiles", srv.req("PUT", f"{P}/boxes/{bid}/files?path=/x", data=make_tar({"a": b""})), 404)
        k.check("getBoxMetrics", srv.req("GET", f"{P}/boxes/{bid}/metrics"), 404)
        k.check("prepareTunnel", srv.req("POST", f"{P}/boxes/{bid}/network/tunnel?port=80"), 404)
        k.check("cloneBox", srv.req("POST", f"{P}/boxes/{bid}/clone", json={}), 404)
        k.check("listSnapshots", srv.req("GET", f"{P}/boxes/{bid}/snapshots"), 404)
        k.check("restoreSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots/s1/restore"), 404)
        missing = k.served_ops() - k.covered
        assert not missing, f"served but not validated: {missing}"
    finally:
        assert srv.stop() == 0


def test_every_sse_dialect_route_matches_the_sse_era_contract():
    srv = ServerProc("--dialect", "sse-ref", "--auth", "client-credentials")
    k = Checker("sse", srv)
    P = "/v1/tenant"
    try:
        k.check("getConfig", srv.req("GET", "/v1/config"), 200)
        r = k.check("getToken", srv.req("POST", "/v1/oauth/tokens", data={
            "grant_type": "client_credentials", "client_id": "test-client", "client_secret": "test-secret",
            "scope": "boxes:read"}), 200)
        srv.s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
        # 401 bodies of Ref are {"detail": {"error": …}}: the contract's ErrorResponse is nested one level
        bad = srv.req("POST", "/v1/oauth/tokens", data={"grant_type": "client_credentials", "client_id": "x",
                                                        "client_secret": "y"})
        assert bad.status_code == 401
        k.c.schema_validate({"$ref": "#/components/schemas/ErrorResponse"}, bad.json()["detail"], "401 detail")
        r = k.check("createBox", srv.req("POST", f"{P}/boxes", json={
            "image": "alpine:latest", "name": "a1", "cpus": 1, "memory_mib": 256, "auto_remove": False,
            "env": {"A": "1"}, "ports": [{"guest_port": 80}], "network": {"mode": "enabled"}}), 201)
        bid = r.json()["box_id"]
        k.check("listBoxes", srv.req("GET", f"{P}/boxes?status=configured"), 200)
        k.check("getBox", srv.req("GET", f"{P}/boxes/{bid}"), 200)
        k.check("boxExists", srv.req("HEAD", f"{P}/boxes/{bid}"), 204)
        k.check("boxExists", srv.req("HEAD", f"{P}/boxes/nope"), 404)
        k.check("startBox", srv.req("POST", f"{P}/boxes/{bid}/start"), 200)
        k.check("getRuntimeMetrics", srv.req("GET", f"{P}/metrics"), 200)
        k.check("getBoxMetrics", srv.req("GET", f"{P}/boxes/{bid}/metrics"), 200)
        r = k.check("startExecution", srv.req("POST", f"{P}/boxes/{bid}/exec",
                                              json={"command": "cat", "tty": False}), 201)
        eid = r.json()["execution_id"]
        k.check("getExecution", srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}"), 200)
        k.check("sendExecutionInput", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/input", data=b"x",
                                              headers={"Content-Type": "application/octet-stream",
                                                       "X-Close-Stdin": "true"}), 204)
        k.check("resizeExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/resize",
                                           json={"cols": 10, "rows": 10}), 409)
        r = k.check("streamExecutionOutput", srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}/output",
                                                     stream=False), 200)
        assert b"event: exit" in r.content
        k.check("getExecution", srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}"), 200)
        k.check("sendExecutionInput", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/input", data=b"x"), 409)
        k.check("signalExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/signal",
                                           json={"signal": 9}), 409)
        eid2 = srv.req("POST", f"{P}/boxes/{bid}/exec", json={"command": "sleep", "args": ["30"]}).json()[
            "execution_id"]
        k.check("signalExecution", srv.req("POST", f"{P}/boxes/{bid}/executions/{eid2}/signal",
                                           json={"signal": 15}), 204)
        k.check("getExecution", srv.req("GET", f"{P}/boxes/{bid}/executions/{eid2}"), 200)
        k.check("uploadFiles", srv.req("PUT", f"{P}/boxes/{bid}/files?path=/root/f.txt&overwrite=true",
                                       data=make_tar({"f.txt": b"hi"}), headers={"Content-Type": "application/x-tar"}),
                204)
        k.check("downloadFiles", srv.req("GET", f"{P}/boxes/{bid}/files?path=/root/f.txt"), 200)
        k.check("stopBox", srv.req("POST", f"{P}/boxes/{bid}/stop", json={"timeout_seconds": 1}), 200)
        k.check("createSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s1"}), 201)
        k.check("createSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s2"}), 201)
        k.check("createSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s2"}), 409)
        k.check("listSnapshots", srv.req("GET", f"{P}/boxes/{bid}/snapshots"), 200)
        k.check("getSnapshot", srv.req("GET", f"{P}/boxes/{bid}/snapshots/s1"), 200)
        k.check("restoreSnapshot", srv.req("POST", f"{P}/boxes/{bid}/snapshots/s1/restore"), 204)
        k.check("removeSnapshot", srv.req("DELETE", f"{P}/boxes/{bid}/snapshots/s2"), 204)
        k.check("cloneBox", srv.req("POST", f"{P}/boxes/{bid}/clone", json={}), 201)
        r = k.check("exportBox", srv.req("POST", f"{P}/boxes/{bid}/export", json={}), 200)
        k.check("importBox", srv.req("POST", f"{P}/boxes/import?name=imp", data=r.content,
                                     headers={"Content-Type": "application/octet-stream"}), 201)
        k.check("removeBox", srv.req("DELETE", f"{P}/boxes/{bid}?force=true"), 204)
        missing = k.served_ops() - k.covered
        assert not missing, f"served but not validated: {missing}"
    finally:
        assert srv.stop() == 0

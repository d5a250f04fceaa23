"""Fault injection, request log and control endpoints of the test server."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from boxlite_testbed.server.harness import RawWebSocket, ServerProc, parse_sse

TOKEN = "tkn"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def srv():
    s = ServerProc("--dialect", "current", "--auth", "token", "--token", TOKEN,
                   "--faults", json.dumps({"kind": "error", "path": "^/v1/metrics$", "status": 502}))
    s.s.headers.update(AUTH)
    yield s
    assert s.stop() == 0


def add(srv, *rules):
    r = srv.control("POST", "/faults", json=list(rules))
    assert r.status_code == 200, r.text
    return r.json()


def raw_request(srv, method, path, headers=None, body=b""):
    """Send one request on a raw socket; return all bytes until the server closes."""
    host, port = srv.info["host"], srv.info["port"]
    sock = socket.create_connection((host, port), timeout=10)
    h = {"Host": f"{host}:{port}", "Connection": "close", "Content-Length": str(len(body)), **AUTH,
         **(headers or {})}
    sock.sendall((f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
                  ).encode() + body)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def test_faults_given_at_start_apply_once(srv):
    # module fixture: --faults error 502 on /v1/metrics, nth=1 times=1 (consumed by the first call)
    r = srv.req("GET", "/v1/metrics")
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unavailable"
    assert srv.req("GET", "/v1/metrics").status_code == 200


def test_error_on_nth_matching_call_with_dialect_body(srv):
    add(srv, {"kind": "error", "method": "GET", "path": "^/v1/boxes$", "nth": 2, "status": 503})
    assert srv.req("GET", "/v1/boxes").status_code == 200
    r = srv.req("GET", "/v1/boxes")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "upstream_unavailable" and r.headers["X-Request-Id"]
    assert srv.req("GET", "/v1/boxes").status_code == 200
    rules = srv.control("GET", "/faults").json()["faults"]
    assert rules[0]["seen"] == 3 and rules[0]["fired"] == 1


def test_error_times_zero_fires_forever_and_custom_body(srv):
    add(srv, {"kind": "error", "path": "/v1/me", "times": 0, "status": 500, "body": "boom"})
    for _ in range(3):
        r = srv.req("GET", "/v1/me")
        assert r.status_code == 500 and r.text == "boom"
    srv.control("DELETE", "/faults")
    assert srv.req("GET", "/v1/me").status_code == 200


def test_latency(srv):
    add(srv, {"kind": "latency", "path": "^/v1/config$", "delay_ms": 400})
    t0 = time.time()
    assert srv.req("GET", "/v1/config").status_code == 200
    assert time.time() - t0 >= 0.38


def test_drop_before_response(srv):
    add(srv, {"kind": "drop", "path": "^/v1/me$"})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(srv.url + "/v1/me", headers=AUTH, timeout=10)
    assert srv.req("GET", "/v1/me").status_code == 200


def test_truncated_body_keeps_full_content_length(srv):
    add(srv, {"kind": "truncate", "path": "^/v1/me$", "after_bytes": 10})
    raw = raw_request(srv, "GET", "/v1/me")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    cl = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    assert len(body) == 10 < cl


def test_malformed_json(srv):
    add(srv, {"kind": "malformed_json", "path": "^/v1/boxes$"})
    r = srv.req("GET", "/v1/boxes")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert int(r.headers["Content-Length"]) == len(r.content)


def test_expire_token_fault_gives_401(srv):
    add(srv, {"kind": "expire_token", "path": "^/v1/boxes"})
    r = srv.req("GET", "/v1/boxes")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert srv.req("GET", "/v1/boxes").status_code == 200


def test_drop_websocket_attach_after_n_frames(srv):
    bid = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest"}).json()["box_id"]
    eid = srv.req("POST", f"/v1/boxes/{bid}/exec",
                  json={"command": "sh", "args": ["-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.05; done"]}
                  ).json()["execution_id"]
    time.sleep(0.8)
    add(srv, {"kind": "drop", "path": "/attach$", "after_events": 2})
    ws = RawWebSocket(srv.url, f"/v1/boxes/{bid}/executions/{eid}/attach", AUTH)
    frames = []
    try:
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                frames.append(ws.recv_frame())
    finally:
        ws.close()
    assert len(frames) == 2 and all(op == 0x2 for op, _ in frames)
    # reattach works and replays the backlog to the end
    ws = RawWebSocket(srv.url, f"/v1/boxes/{bid}/executions/{eid}/attach", AUTH)
    try:
        frames = ws.frames_until_close()
    finally:
        ws.close()
    assert b"".join(p[1:] for op, p in frames if op == 0x2) == b"1\n2\n3\n4\n5\n"


def test_request_log_records_auth_presence_scheme_and_token(srv):
    srv.control("DELETE", "/requests")
    srv.req("GET", "/v1/boxes")
    requests.get(srv.url + "/v1/config", timeout=10)
    log = srv.control("GET", "/requests").json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in log] == [("GET", "/v1/boxes", 200),
                                                                    ("GET", "/v1/config", 200)]
    assert log[0]["authorization"] == {"present": True, "scheme": "Bearer", "token": TOKEN}
    assert log[0]["headers"]["Authorization"] == "<redacted>"
    assert log[1]["authorization"]["present"] is False
    since = srv.control("GET", f"/requests?since={log[0]['seq']}").json()["requests"]
    assert [e["path"] for e in since] == ["/v1/config"]


def test_control_endpoints_bypass_auth_and_are_not_logged(srv):
    srv.control("DELETE", "/requests")
    r = srv.control("GET", "/info")
    assert r.status_code == 200 and r.json()["dialect"] == "current"
    assert {"method": "GET", "path": "/boxes/{box_id}/executions/{exec_id}/attach",
            "name": "attachExecution"} in r.json()["routes"]
    assert srv.control("GET", "/requests").json()["requests"] == []
    assert srv.control("POST", "/faults", json={"kind": "nope"}).status_code == 400
    assert srv.control("GET", "/bogus").status_code == 404


def test_reset_removes_boxes(srv):
    srv.req("POST", "/v1/boxes", json={"image": "alpine:latest"})
    r = srv.control("POST", "/reset?boxes=true")
    assert r.json()["boxes_removed"] == 1
    assert srv.req("GET", "/v1/boxes").json()["boxes"] == []


def test_sse_drop_mid_stream_and_boxrun_events_drop():
    s = ServerProc("--dialect", "sse-ref", "--auth", "none")
    try:
        bid = s.req("POST", "/v1/p/boxes", json={"image": "alpine:latest", "auto_remove": False}).json()["box_id"]
        eid = s.req("POST", f"/v1/p/boxes/{bid}/exec", json={"command": "sh", "args": ["-c", "echo 1; echo 2"]}
                    ).json()["execution_id"]
        time.sleep(0.5)
        s.control("POST", "/faults", json={"kind": "drop", "path": "/output$", "after_events": 1})
        r = s.req("GET", f"/v1/p/boxes/{bid}/executions/{eid}/output", stream=True)
        with pytest.raises(Exception):
            r.raw.read()
            raise AssertionError("stream ended cleanly")
        log = s.control("GET", "/requests").json()["requests"]
        assert log[-1]["faults"] == ["drop"]
    finally:
        assert s.stop() == 0
    s = ServerProc("--dialect", "boxrun", "--faults", json.dumps(
        {"kind": "drop", "path": "/events$", "after_events": 1}))
    try:
        bid = s.req("POST", "/v1/boxes", json={"image": "x", "cpu": 1, "memory_mb": 128}).json()["id"]
        eid = s.req("POST", f"/v1/boxes/{bid}/exec", json={"cmd": ["sh", "-c", "echo 1; echo 2"]}).json()["id"]
        time.sleep(0.5)
        r = s.req("GET", f"/v1/boxes/{bid}/exec/{eid}/events", stream=True)
        got = b""
        try:
            for chunk in r.raw.stream(1024):
                got += chunk
        except Exception:
            pass
        evs = [e for e in parse_sse(got) if "event" in e]
        assert len(evs) == 1
        # replay after reconnect is complete
        raw = s.req("GET", f"/v1/boxes/{bid}/exec/{eid}/events", stream=True).raw.read()
        assert [e["event"] for e in parse_sse(raw) if "event" in e][-1] == "exit"
    finally:
        assert s.stop() == 0


def test_boxrun_events_stall_sends_nothing_after_n_events_while_the_client_waits():
    s = ServerProc("--dialect", "boxrun", "--keepalive", "0.2", "--faults", json.dumps(
        {"kind": "stall", "path": "/events$", "after_events": 1}))
    try:
        bid = s.req("POST", "/v1/boxes", json={"image": "x", "cpu": 1, "memory_mb": 128}).json()["id"]
        eid = s.req("POST", f"/v1/boxes/{bid}/exec", json={"cmd": ["sh", "-c", "echo 1; echo 2"]}).json()["id"]
        time.sleep(0.5)
        host, port = s.info["host"], s.info["port"]
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(f"GET /v1/boxes/{bid}/exec/{eid}/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.settimeout(1.5)
        got = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass  # still connected, nothing more is coming: the stall
        sock.close()
        body = got.split(b"\r\n\r\n", 1)[1]
        assert body.count(b"event: ") == 1, got  # one event, then not even keep-alives
        assert b":\n\n" not in body
        # The fault fired once: a new connection replays everything up to the exit.
        raw = s.req("GET", f"/v1/boxes/{bid}/exec/{eid}/events", stream=True).raw.read()
        assert [e["event"] for e in parse_sse(raw) if "event" in e][-1] == "exit"
    finally:
        assert s.stop() == 0


def test_sse_expire_token_fault_and_client_credentials():
    s = ServerProc("--dialect", "sse-ref", "--client-id", "me", "--client-secret", "pw")
    try:
        tok = s.req("POST", "/v1/oauth/tokens", data={"grant_type": "client_credentials", "client_id": "me",
                                                      "client_secret": "pw"}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        s.control("POST", "/faults", json={"kind": "expire_token"})
        r = s.req("GET", "/v1/x/boxes", headers=h)
        assert r.status_code == 401 and r.json()["detail"]["error"]["message"] == "token expired"
        assert s.req("GET", "/v1/x/boxes", headers=h).status_code == 200
    finally:
        assert s.stop() == 0


def test_non_loopback_host_is_refused():
    import subprocess
    import sys

    from boxlite_testbed.server.harness import TESTBED_DIR
    p = subprocess.run([sys.executable, "-m", "boxlite_testbed.server", "--host", "0.0.0.0", "--port", "0"],
                       cwd=TESTBED_DIR, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "non-loopback" in p.stderr and "BOXLITE_TESTBED_READY" not in p.stdout


def test_ready_line_and_sigterm_clean_exit():
    s = ServerProc("--dialect", "boxrun")
    assert s.ready_line.startswith("BOXLITE_TESTBED_READY {")
    info = s.info
    assert info["url"] == f"http://127.0.0.1:{info['port']}" and info["dialect"] == "boxrun"
    assert info["python"] and info["sdk_version"] == "0.10.8"
    assert s.stop() == 0


def test_faults_file_argument(tmp_path):
    f = tmp_path / "faults.json"
    f.write_text(json.dumps({"faults": [{"kind": "error", "path": "^/v1/info$", "status": 500, "times": 2}]}))
    s = ServerProc("--dialect", "boxrun", "--faults", f"@{f}")
    try:
        codes = [s.req("GET", "/v1/info").status_code for _ in range(3)]
        assert codes == [500, 500, 200]
        assert s.req("GET", "/v1/info").json()["max_cpu"] >= 1
        r = s.control("GET", "/faults").json()["faults"][0]
        assert r["fired"] == 2 and r["seen"] == 4
    finally:
        assert s.stop() == 0


def test_bad_faults_argument_is_rejected_at_start():
    import subprocess
    import sys

    from boxlite_testbed.server.harness import TESTBED_DIR
    p = subprocess.run([sys.executable, "-m", "boxlite_testbed.server", "--faults", '{"kind":"bogus"}'],
                       cwd=TESTBED_DIR, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "unknown fault kind" in p.stderr

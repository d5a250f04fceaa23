"""The `current` dialect (BoxLite REST, boxlite serve 0.11.x) served by the test server."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from boxlite_testbed.server.harness import RawWebSocket, ServerProc, make_tar, tar_members, wait_until

TOKEN = "blk_test_testbed"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def srv():
    s = ServerProc("--dialect", "current", "--auth", "token", "--token", TOKEN, "--keepalive", "1")
    s.s.headers.update(AUTH)
    yield s
    assert s.stop() == 0


def create(srv, **body):
    body.setdefault("image", "alpine:latest")
    r = srv.req("POST", "/v1/boxes", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def start_exec(srv, box_id, command, *args, **extra):
    r = srv.req("POST", f"/v1/boxes/{box_id}/exec", json={"command": command, "args": list(args), **extra})
    assert r.status_code == 201, r.text
    return r.json()["execution_id"]


async def attach_collect(srv, box_id, exec_id, *, stdin: bytes | None = None, eof: bool = False,
                         timeout: float = 20.0):
    """Attach and collect (frames, exit_code, close_code)."""
    url = srv.url.replace("http", "ws", 1) + f"/v1/boxes/{box_id}/executions/{exec_id}/attach"
    frames = []
    exit_code = None
    async with aiohttp.ClientSession() as cs:
        async with cs.ws_connect(url, headers=AUTH, autoping=True) as ws:
            if stdin is not None:
                await ws.send_bytes(stdin)
            if eof:
                await ws.send_str(json.dumps({"type": "stdin_eof"}))
            while True:
                msg = await asyncio.wait_for(ws.receive(), timeout)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    frames.append((msg.data[0], msg.data[1:]))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    ctl = json.loads(msg.data)
                    frames.append(("text", ctl))
                    if ctl.get("type") == "exit":
                        exit_code = ctl["exit_code"]
                else:
                    break
            close_code = ws.close_code
    return frames, exit_code, close_code


def test_config_is_public_and_has_serve_capability_flags(srv):
    r = srv.req("GET", "/v1/config", headers={"Authorization": ""})
    assert r.status_code == 200
    assert set(r.json()["capabilities"]) == {"linux_capabilities_enabled", "snapshots_enabled", "clone_enabled",
                                             "export_enabled", "import_enabled", "exec_user_enabled"}
    assert r.headers.get("X-Request-Id")


def test_me_reports_prefix_key_null_like_real_servers(srv):
    r = srv.req("GET", "/v1/me")
    assert r.status_code == 200
    me = r.json()
    assert "prefix" in me and me["prefix"] is None
    assert "path_prefix" not in me
    assert me["principal_type"] == "service_account"


def test_wrong_or_missing_bearer_is_401_unauthenticated_envelope(srv):
    for h in ({"Authorization": "Bearer nope"}, {"Authorization": ""}):
        r = srv.s.request("GET", srv.url + "/v1/boxes", headers=h, timeout=10)
        assert r.status_code == 401
        assert r.json() == {"error": {"message": "invalid or missing API key", "type": "AuthError",
                                      "code": "unauthenticated"}}
        assert r.headers["X-Request-Id"]
    r = srv.s.request("GET", srv.url + "/v1/me", headers={"Authorization": "bearer " + TOKEN}, timeout=10)
    assert r.status_code == 200  # lower-case scheme accepted


def test_request_id_header_is_echoed(srv):
    r = srv.req("GET", "/v1/boxes/nope", headers={"X-Request-Id": "req_abc"})
    assert r.status_code == 404
    assert r.headers["X-Request-Id"] == "req_abc"
    assert r.json()["error"]["code"] == "not_found"
    assert "request_id" not in r.json()["error"]  # serve 0.11.0: only in the header


def test_unknown_routes_answer_empty_404_and_405(srv):
    r = srv.req("GET", "/v1/nothing/here")
    assert r.status_code == 404 and r.content == b""
    r = srv.req("PATCH", "/v1/boxes")
    assert r.status_code == 405 and r.content == b""
    r = srv.req("POST", "/v1/oauth/tokens", data={"grant_type": "client_credentials"})
    assert r.status_code == 404


def test_create_returns_configured_box_with_location_and_auto_fields(srv):
    r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", "name": "b-one", "cpus": 2})
    assert r.status_code == 201
    box = r.json()
    assert box["status"] == "configured"
    assert box["name"] == "b-one" and box["cpus"] == 2
    assert box["auto_stop"] == 0 and box["auto_delete"] == 0 and box["auto_resume"] is True
    assert box["network"] == {"outbound": {"mode": "enabled", "allow_net": []},
                              "inbound": {"mode": "disabled", "allow_net": []}}
    assert r.headers["Location"] == f"/v1/boxes/{box['box_id']}"


def test_create_rejects_unknown_and_serve_rejected_keys_with_plain_text_422(srv):
    for key in ("auto_pause", "ports", "security", "labels", "cpu"):
        r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", key: []})
        assert r.status_code == 422, key
        assert r.headers["Content-Type"].startswith("text/plain")
        assert "unknown field" in r.text


def test_create_accepts_the_per_direction_network_shape_of_the_official_node_sdk(srv):
    r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", "detach": False, "network": {
        "outbound": {"mode": "enabled", "allow_net": ["example.com"]}, "inbound": {"mode": "enabled"}}})
    assert r.status_code == 201, r.text
    assert r.json()["network"] == {"outbound": {"mode": "enabled", "allow_net": ["example.com"]},
                                   "inbound": {"mode": "enabled", "allow_net": []}}
    for bad in ({"outbound": {"mode": "bogus"}}, {"outbound": {"mode": "enabled", "x": 1}},
                {"outbound": {"mode": "enabled"}, "mode": "enabled"}, {"inbound": "enabled"}):
        r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", "network": bad})
        assert r.status_code == 422 and r.headers["Content-Type"].startswith("text/plain"), bad


def test_create_without_json_content_type_is_415_plain(srv):
    r = srv.req("POST", "/v1/boxes", data=b'{"image":"alpine"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.headers["Content-Type"].startswith("text/plain")
    r = srv.req("POST", "/v1/boxes", data=b'{"image":', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/plain")


def test_list_get_head_delete_lifecycle(srv):
    box = create(srv, name="life")
    bid = box["box_id"]
    r = srv.req("GET", "/v1/boxes?status=running&pageSize=1")
    assert r.status_code == 200
    body = r.json()
    assert "next_page_token" not in body
    assert [b["box_id"] for b in body["boxes"]] == [bid]  # serve ignores filters
    assert srv.req("GET", "/v1/boxes/life").json()["box_id"] == bid  # by name
    assert srv.req("HEAD", f"/v1/boxes/{bid}").status_code == 204
    r = srv.req("DELETE", f"/v1/boxes/{bid}")
    assert r.status_code == 204 and r.content == b""
    r = srv.req("HEAD", f"/v1/boxes/{bid}")
    assert r.status_code == 404 and r.content == b""
    r = srv.req("DELETE", f"/v1/boxes/{bid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_start_stop_keep_box_because_auto_delete_defaults_to_zero(srv):
    bid = create(srv)["box_id"]
    r = srv.req("POST", f"/v1/boxes/{bid}/start")
    assert r.status_code == 200 and r.json()["status"] == "running"
    r = srv.req("POST", f"/v1/boxes/{bid}/start")
    assert r.status_code == 200 and r.json()["status"] == "running"  # idempotent
    r = srv.req("POST", f"/v1/boxes/{bid}/stop", json={"timeout_seconds": 1})
    assert r.status_code == 200 and r.json()["status"] in ("stopped", "configured")
    assert srv.req("GET", f"/v1/boxes/{bid}").status_code == 200
    r = srv.req("POST", f"/v1/boxes/{bid}/start")  # restart after stop (fresh handle)
    assert r.status_code == 200 and r.json()["status"] == "running"
    r = srv.req("DELETE", f"/v1/boxes/{bid}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"
    assert srv.req("DELETE", f"/v1/boxes/{bid}?force=true").status_code == 204


@pytest.mark.asyncio
async def test_exec_attach_streams_channel_frames_then_exit_and_codeless_close(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "echo out; echo err >&2; exit 3")
    frames, code, close_code = await attach_collect(srv, bid, eid)
    out = b"".join(p for ch, p in frames if ch == 1)
    err = b"".join(p for ch, p in frames if ch == 2)
    assert out == b"out\n" and err == b"err\n"
    assert code == 3
    assert frames[-1] == ("text", {"type": "exit", "exit_code": 3})
    r = srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}")
    assert r.json() == {"execution_id": eid, "status": "completed", "exit_code": 3}


def test_attach_byte_level_exit_text_frame_then_close_frame_without_status_code(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "printf abc")
    ws = RawWebSocket(srv.url, f"/v1/boxes/{bid}/executions/{eid}/attach", AUTH)
    try:
        assert ws.status == 101
        frames = ws.frames_until_close()
    finally:
        ws.close()
    assert frames[0] == (0x2, b"\x01abc")
    assert frames[-2] == (0x1, b'{"type":"exit","exit_code":0}')
    assert frames[-1] == (0x8, b"")  # serve: close frame without a status code (clients see 1005)


@pytest.mark.asyncio
async def test_attach_after_exit_replays_backlog_and_reattach_is_allowed(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "printf 'a\\nb\\n'")
    wait_until(lambda: srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}").json()["status"] == "completed")
    for _ in range(2):
        frames, code, _ = await attach_collect(srv, bid, eid)
        assert b"".join(p for ch, p in frames if ch == 1) == b"a\nb\n"
        assert code == 0


@pytest.mark.asyncio
async def test_stdin_binary_frames_and_stdin_eof(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "cat")
    frames, code, _ = await attach_collect(srv, bid, eid, stdin=b"hello stdin", eof=True)
    assert b"".join(p for ch, p in frames if ch == 1) == b"hello stdin"
    assert code == 0


@pytest.mark.asyncio
async def test_second_attach_is_409_before_upgrade(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sleep", "30")
    url = srv.url.replace("http", "ws", 1) + f"/v1/boxes/{bid}/executions/{eid}/attach"
    async with aiohttp.ClientSession() as cs:
        async with cs.ws_connect(url, headers=AUTH):
            await asyncio.sleep(0.2)
            r = srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}/attach",
                        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert r.status_code == 409
            assert r.json()["error"]["code"] == "invalid_state"
    assert srv.req("DELETE", f"/v1/boxes/{bid}/executions/{eid}").status_code == 204


@pytest.mark.asyncio
async def test_bad_control_frames_get_error_frames_and_connection_stays(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "cat")
    url = srv.url.replace("http", "ws", 1) + f"/v1/boxes/{bid}/executions/{eid}/attach"
    async with aiohttp.ClientSession() as cs:
        async with cs.ws_connect(url, headers=AUTH) as ws:
            await ws.send_str("not json")
            m = await asyncio.wait_for(ws.receive(), 5)
            assert json.loads(m.data)["type"] == "error"
            await ws.send_str(json.dumps({"type": "signal", "sig": 9}))
            m = await asyncio.wait_for(ws.receive(), 5)
            assert json.loads(m.data)["type"] == "error"
            await ws.send_str(json.dumps({"type": "bogus"}))
            m = await asyncio.wait_for(ws.receive(), 5)
            assert json.loads(m.data)["type"] == "error"
            await ws.send_str(json.dumps({"type": "signal", "sig": 15}))
            while True:
                m = await asyncio.wait_for(ws.receive(), 10)
                if m.type == aiohttp.WSMsgType.TEXT and json.loads(m.data)["type"] == "exit":
                    assert json.loads(m.data)["exit_code"] == -15
                    break


def test_signal_whitelist_and_delete_execution(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sleep", "30")
    r = srv.req("POST", f"/v1/boxes/{bid}/executions/{eid}/signal", json={"signal": 9})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
    r = srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}")
    assert r.json() == {"execution_id": eid, "status": "running"}  # no exit_code while running
    r = srv.req("DELETE", f"/v1/boxes/{bid}/executions/{eid}")
    assert r.status_code == 204
    r = srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_signal_term_reports_negative_exit_code(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sleep", "30")
    time_ok = srv.req("POST", f"/v1/boxes/{bid}/executions/{eid}/signal", json={"signal": 15})
    assert time_ok.status_code == 204
    st = wait_until(lambda: (lambda j: j if j["status"] == "completed" else None)(
        srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}").json()))
    assert st["exit_code"] == -15
    r = srv.req("POST", f"/v1/boxes/{bid}/executions/{eid}/signal", json={"signal": 15})
    assert r.status_code == 409


def test_execution_of_another_box_is_404(srv):
    a = create(srv)["box_id"]
    b = create(srv)["box_id"]
    eid = start_exec(srv, a, "true")
    r = srv.req("GET", f"/v1/boxes/{b}/executions/{eid}")
    assert r.status_code == 404


def test_exec_honours_working_dir_and_env(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "pwd; echo $FOO", working_dir="/etc", env={"FOO": "bar"})
    frames, code, _ = asyncio.run(attach_collect(srv, bid, eid))
    assert b"".join(p for ch, p in frames if ch == 1) == b"/etc\nbar\n"


def test_upload_plain_tar_serve_nesting_and_download_dot_entries(srv):
    bid = create(srv)["box_id"]
    srv.req("POST", f"/v1/boxes/{bid}/start")
    tar = make_tar({"a.txt": b"A", "sub/b.txt": b"B"})
    # destination does not exist yet: contents land directly under it
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/new", data=tar, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 204, r.text
    # destination exists: serve nests the temp dir "extracted"
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/new", data=tar, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 204
    r = srv.req("GET", f"/v1/boxes/{bid}/files?path=/root/new")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-tar")
    m = tar_members(r.content)
    assert m["./new/a.txt"] == b"A" and m["./new/sub/b.txt"] == b"B"
    assert m["./new/extracted/a.txt"] == b"A"
    assert "." in m


def test_upload_rejects_gzip_and_caps_body_size(srv):
    bid = create(srv)["box_id"]
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/x", data=make_tar({"f": b"1"}, gz=True),
                headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
    big = make_tar({"big": b"\0" * (2 * 1024 * 1024 + 10)})
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/x", data=big, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 413 and r.headers["Content-Type"].startswith("text/plain")


def test_download_single_file_has_basename_entry(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "mkdir -p /root/d && printf xyz > /root/d/f.bin")
    wait_until(lambda: srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}").json()["status"] == "completed")
    r = srv.req("GET", f"/v1/boxes/{bid}/files?path=/root/d/f.bin")
    assert r.status_code == 200
    assert tar_members(r.content)["./f.bin"] == b"xyz"


def test_snapshots_require_stopped_box_and_have_no_guest_disk_bytes(srv):
    bid = create(srv)["box_id"]
    srv.req("POST", f"/v1/boxes/{bid}/start")
    r = srv.req("POST", f"/v1/boxes/{bid}/snapshots", json={"name": "s1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"
    srv.req("POST", f"/v1/boxes/{bid}/stop")
    r = srv.req("POST", f"/v1/boxes/{bid}/snapshots", json={"name": "s1"})
    assert r.status_code == 201, r.text
    snap = r.json()
    assert "guest_disk_bytes" not in snap and isinstance(snap["created_at"], int)
    r = srv.req("GET", f"/v1/boxes/{bid}/snapshots")
    assert [s["name"] for s in r.json()["snapshots"]] == ["s1"]
    assert srv.req("GET", f"/v1/boxes/{bid}/snapshots/s1").status_code == 200
    assert srv.req("GET", f"/v1/boxes/{bid}/snapshots/zz").status_code == 404


def test_clone_export_import_roundtrip(srv):
    bid = create(srv, name="orig")["box_id"]
    srv.req("POST", f"/v1/boxes/{bid}/start")
    srv.req("POST", f"/v1/boxes/{bid}/stop")
    r = srv.req("POST", f"/v1/boxes/{bid}/clone", json={"name": "copy"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "copy" and r.headers["Location"].endswith(r.json()["box_id"])
    r = srv.req("POST", f"/v1/boxes/{bid}/export")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
    r2 = srv.req("POST", "/v1/boxes/import?name=imported", data=r.content,
                 headers={"Content-Type": "application/octet-stream"})
    assert r2.status_code == 201, r2.text
    assert r2.json()["name"] == "imported"


def test_metrics_routes(srv):
    r = srv.req("GET", "/v1/metrics")
    assert r.status_code == 200 and "num_running_boxes" in r.json()
    bid = create(srv)["box_id"]
    r = srv.req("GET", f"/v1/boxes/{bid}/metrics")
    assert r.status_code == 200 and "boot_timing" in r.json()


def test_prefixed_deployment_uses_verbatim_multi_segment_prefix():
    s = ServerProc("--dialect", "current", "--prefix", "us-east/team-42", "--me-prefix-key", "path_prefix")
    try:
        me = s.req("GET", "/v1/me").json()
        assert me["path_prefix"] == "us-east/team-42" and "prefix" not in me
        r = s.req("POST", "/v1/us-east/team-42/boxes", json={"image": "alpine:latest"})
        assert r.status_code == 201
        assert r.headers["Location"].startswith("/v1/us-east/team-42/boxes/")
        assert s.req("GET", "/v1/boxes").status_code == 404
        assert s.req("GET", "/v1/us-east/team-42/boxes").json()["boxes"]
        assert s.req("GET", "/v1/us-east/team-42/me").status_code == 404
    finally:
        assert s.stop() == 0


def test_no_auth_mode_accepts_requests_without_authorization():
    s = ServerProc("--dialect", "current", "--me-prefix-key", "both")
    try:
        me = s.req("GET", "/v1/me").json()
        assert me["prefix"] is None and me["path_prefix"] is None
        assert s.req("GET", "/v1/boxes").status_code == 200
        log = s.control("GET", "/requests").json()["requests"]
        assert all(not e["authorization"]["present"] for e in log)
    finally:
        assert s.stop() == 0


def test_upload_with_source_is_dir_places_single_entry_like_local_copy_in(srv):
    """boxlite 0.10.8's REST client sends ?source_is_dir= (not in the contract) and a tar whose
    top-level entry is basename(src); the entry lands at `path` with docker-cp rules."""
    bid = create(srv)["box_id"]
    h = {"Content-Type": "application/x-tar"}
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/target.txt&source_is_dir=false",
                data=make_tar({"in.txt": b"F"}), headers=h)
    assert r.status_code == 204
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/tree&source_is_dir=true",
                data=make_tar({"dir/a": b"A", "dir/sub/b": b"B"}, dirs=("dir", "dir/sub")), headers=h)
    assert r.status_code == 204
    r = srv.req("PUT", f"/v1/boxes/{bid}/files?path=/root/tree&source_is_dir=true",
                data=make_tar({"dir/c": b"C"}, dirs=("dir",)), headers=h)  # existing dest: nested
    assert r.status_code == 204
    eid = start_exec(srv, bid, "sh", "-c", "cat /root/target.txt; echo; cd /root/tree && find . -type f | sort")
    frames, code, _ = asyncio.run(attach_collect(srv, bid, eid))
    assert b"".join(p for ch, p in frames if ch == 1) == b"F\n./a\n./dir/c\n./sub/b\n"


def test_boot_delay_postpones_running():
    import time

    s = ServerProc("--dialect", "current", "--boot-delay", "0.6")
    try:
        bid = s.req("POST", "/v1/boxes", json={"image": "alpine:latest"}).json()["box_id"]
        t0 = time.time()
        r = s.req("POST", f"/v1/boxes/{bid}/start")
        assert r.status_code == 200 and r.json()["status"] == "running"
        assert time.time() - t0 >= 0.55
        other = s.req("POST", "/v1/boxes", json={"image": "alpine:latest"}).json()["box_id"]
        t0 = time.time()
        assert s.req("POST", f"/v1/boxes/{other}/exec", json={"command": "true"}).status_code == 201
        assert time.time() - t0 >= 0.55  # lazy start through exec is delayed too
    finally:
        assert s.stop() == 0


def test_unappliable_option_value_is_400_invalid_argument(srv):
    r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", "memory_mib": 2 ** 40})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"


def test_attach_sends_websocket_pings_at_keepalive_interval(srv):
    import time

    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sleep", "5")
    ws = RawWebSocket(srv.url, f"/v1/boxes/{bid}/executions/{eid}/attach", AUTH)
    try:
        t0 = time.time()
        op, data = ws.recv_frame()  # no output: the first frame is a ping (--keepalive 1)
        assert op == 0x9 and time.time() - t0 < 3
        ws.send_frame(0xA, data)
    finally:
        ws.close()
    assert srv.req("DELETE", f"/v1/boxes/{bid}/executions/{eid}").status_code == 204


def test_base_path_like_the_cloud_api_prefix():
    s = ServerProc("--dialect", "current", "--base-path", "/api", "--prefix", "org_1")
    try:
        assert s.info["box_base"] == "/api/v1/org_1/boxes"
        assert s.req("GET", "/api/v1/me").json()["prefix"] == "org_1"
        r = s.req("POST", "/api/v1/org_1/boxes", json={"image": "alpine:latest"})
        assert r.status_code == 201 and r.headers["Location"].startswith("/api/v1/org_1/boxes/")
        assert s.req("GET", "/v1/org_1/boxes").status_code == 404
        assert s.control("GET", "/info").status_code == 200
    finally:
        assert s.stop() == 0


def test_create_accepts_contract_options_and_rejects_bad_advanced(srv):
    r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", "advanced": {"capabilities": {"add": ["SYS_ADMIN"],
                                                                                                  "drop": []}},
                                          "auto_stop": 60, "auto_delete": 0, "auto_resume": False,
                                          "network": {"mode": "disabled"}, "working_dir": "/root",
                                          "entrypoint": ["sh"], "cmd": ["-c", "true"], "tty": False})
    assert r.status_code == 201, r.text
    assert r.json()["auto_stop"] == 60 and r.json()["auto_resume"] is False
    assert r.json()["network"]["outbound"]["mode"] == "disabled"
    r = srv.req("POST", "/v1/boxes", json={"image": "alpine:latest", "advanced": {"privileged": True}})
    assert r.status_code == 422 and r.headers["Content-Type"].startswith("text/plain")


def test_late_attach_replays_only_the_byte_capped_backlog(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "head -c 700000 /dev/zero | tr '\\0' x; echo END")
    wait_until(lambda: srv.req("GET", f"/v1/boxes/{bid}/executions/{eid}").json()["status"] == "completed")
    frames, code, _ = asyncio.run(attach_collect(srv, bid, eid))
    out = b"".join(p for ch, p in frames if ch == 1)
    assert code == 0 and out.endswith(b"END\n")
    assert 0 < len(out) <= 256 * 1024 + 65536  # 256 KiB per stream, at least the last chunk


def test_network_tunnel_reaches_an_in_box_tcp_service_directly_and_via_connect(srv):
    import socket

    bid = create(srv)["box_id"]
    # an in-box TCP service (the simulator's boxes share the host network)
    srv_sock = socket.socket()
    srv_sock.bind(("127.0.0.1", 0))
    srv_sock.listen(4)
    port = srv_sock.getsockname()[1]

    def serve_once():
        c, _ = srv_sock.accept()
        data = c.recv(100)
        c.sendall(b"echo:" + data)
        c.close()

    import threading
    for use_connect in (False, True):
        t = threading.Thread(target=serve_once, daemon=True)
        t.start()
        r = srv.req("POST", f"/v1/boxes/{bid}/network/tunnel?port={port}")
        assert r.status_code == 200, r.text
        uri = r.json()["uri"]
        assert srv.req("POST", f"/v1/boxes/{bid}/network/tunnel?port={port}").json()["uri"] == uri  # stable
        host, tport = uri.split("//", 1)[1].split(":")
        c = socket.create_connection((host, int(tport)), timeout=10)
        if use_connect:
            c.sendall(f"CONNECT {host}:{tport} HTTP/1.1\r\nHost: {host}:{tport}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(1)
            assert head.startswith(b"HTTP/1.1 200")
        c.sendall(b"ping")
        got = b""
        while True:
            chunk = c.recv(100)
            if not chunk:
                break
            got += chunk
        c.close()
        t.join(5)
        assert got == b"echo:ping"
    srv_sock.close()
    assert srv.req("POST", f"/v1/boxes/{bid}/network/tunnel?port=0").status_code == 400

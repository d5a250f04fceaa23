"""The SSE-era dialects (BoxLite REST, Python reference server) served by the test server."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from boxlite_testbed.server.harness import ServerProc, make_tar, parse_sse, tar_members, wait_until

P = "/v1/default"


def get_token(srv, cid="test-client", secret="test-secret"):
    r = srv.req("POST", "/v1/oauth/tokens",
                data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret})
    return r


@pytest.fixture(scope="module")
def srv():
    s = ServerProc("--dialect", "sse-ref", "--auth", "client-credentials", "--keepalive", "0.3")
    r = get_token(s)
    assert r.status_code == 200, r.text
    s.s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
    yield s
    assert s.stop() == 0


def create(srv, **body):
    body.setdefault("image", "alpine:latest")
    body.setdefault("auto_remove", False)
    r = srv.req("POST", f"{P}/boxes", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def start_exec(srv, bid, command, *args, **extra):
    r = srv.req("POST", f"{P}/boxes/{bid}/exec", json={"command": command, "args": list(args), **extra})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"execution_id"}
    return r.json()["execution_id"]


def read_output(srv, bid, eid, timeout=20):
    r = srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}/output", headers={"Accept": "text/event-stream"},
                stream=True, timeout=timeout)
    assert r.status_code == 200
    raw = r.raw.read()
    return r, raw


def decode_events(raw):
    out, err, exit_ev = b"", b"", None
    for ev in parse_sse(raw):
        if ev.get("event") == "stdout":
            out += base64.b64decode(json.loads(ev["data"])["data"])
        elif ev.get("event") == "stderr":
            err += base64.b64decode(json.loads(ev["data"])["data"])
        elif ev.get("event") == "exit":
            exit_ev = json.loads(ev["data"])
    return out, err, exit_ev


# ---------------------------------------------------------------- token endpoint
def test_token_endpoint_issues_bearer_with_expires_in(srv):
    r = get_token(srv)
    tok = r.json()
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 3600 and tok["access_token"].count(".") == 2
    assert "scope" in tok


def test_token_endpoint_accepts_form_only_and_client_credentials_grant_only(srv):
    r = srv.req("POST", "/v1/oauth/tokens", json={"grant_type": "client_credentials", "client_id": "test-client",
                                                  "client_secret": "test-secret"})
    assert r.status_code == 400 and "InvalidArgumentError" in r.text
    r = srv.req("POST", "/v1/oauth/tokens", data={"grant_type": "password", "client_id": "test-client",
                                                  "client_secret": "test-secret"})
    assert r.status_code == 400
    r = get_token(srv, secret="wrong")
    assert r.status_code == 401
    assert r.json()["detail"]["error"] == {"message": "invalid client credentials", "type": "UnauthorizedError",
                                           "code": 401}


def test_missing_malformed_and_expired_tokens_are_401(srv):
    r = requests.get(srv.url + f"{P}/boxes", timeout=10)
    assert r.status_code == 401 and r.json()["detail"]["error"]["code"] == 401
    r = requests.get(srv.url + f"{P}/boxes", headers={"Authorization": "Bearer abc.def.ghi"}, timeout=10)
    assert r.status_code == 401 and r.json()["detail"]["error"]["message"] == "invalid token"
    r = requests.get(srv.url + "/v1/config", timeout=10)
    assert r.status_code == 200  # /config needs no auth


def test_short_token_lifetime_expires_and_refresh_works():
    s = ServerProc("--dialect", "sse-ref", "--token-lifetime", "1")
    try:
        tok = get_token(s).json()
        assert tok["expires_in"] == 1
        h = {"Authorization": "Bearer " + tok["access_token"]}
        assert s.req("GET", f"{P}/boxes", headers=h).status_code == 200
        time.sleep(1.2)
        r = s.req("GET", f"{P}/boxes", headers=h)
        assert r.status_code == 401 and r.json()["detail"]["error"]["message"] == "token expired"
        h = {"Authorization": "Bearer " + get_token(s).json()["access_token"]}
        assert s.req("GET", f"{P}/boxes", headers=h).status_code == 200
    finally:
        assert s.stop() == 0


def test_control_endpoint_expires_all_issued_tokens(srv):
    old = srv.s.headers["Authorization"]
    assert srv.control("POST", "/expire-tokens").status_code == 200
    r = srv.req("GET", f"{P}/boxes")
    assert r.status_code == 401 and r.json()["detail"]["error"]["message"] == "token expired"
    srv.s.headers["Authorization"] = "Bearer " + get_token(srv).json()["access_token"]
    assert srv.s.headers["Authorization"] != old
    assert srv.req("GET", f"{P}/boxes").status_code == 200


def test_no_auth_mode_is_serve_stub_token_and_enforces_nothing():
    s = ServerProc("--dialect", "sse-serve", "--auth", "none", "--prefix", "default")
    try:
        r = get_token(s, "any", "thing")
        assert r.json()["access_token"] == "boxlite-local-token" and r.json()["expires_in"] == 86400
        assert s.req("GET", "/v1/default/boxes").status_code == 200
        assert s.req("GET", "/v1/other/boxes").status_code == 404  # serve: prefix must be "default"
        assert s.req("GET", "/v1/config").json() == {"capabilities": {
            "snapshots_enabled": True, "clone_enabled": True, "export_enabled": True, "import_enabled": True}}
    finally:
        assert s.stop() == 0


# ---------------------------------------------------------------- boxes
def test_prefix_is_required_and_any_prefix_works_like_ref(srv):
    r = srv.req("GET", "/v1/boxes")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    assert srv.req("GET", "/v1/tenant-x/boxes").json() == {"boxes": [], "next_page_token": None}
    r = srv.req("GET", "/v1/me")
    assert r.status_code == 404


def test_create_defaults_configured_with_location_and_rejects_unknown_keys_422(srv):
    r = srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest", "name": "a1"})
    assert r.status_code == 201
    b = r.json()
    assert b["status"] == "configured" and b["labels"] == {} and b["updated_at"] == b["created_at"]
    assert r.headers["Location"] == f"{P}/boxes/{b['box_id']}"
    assert "auto_pause" not in b
    r = srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest", "cpu": 2, "memory_mb": 512})
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert ["body", "cpu"] in locs and ["body", "memory_mb"] in locs


def test_list_honours_status_and_has_null_next_page_token(srv):
    a = create(srv)["box_id"]
    b = create(srv)["box_id"]
    srv.req("POST", f"{P}/boxes/{b}/start")
    body = srv.req("GET", f"{P}/boxes?status=running&pageSize=1").json()
    assert [x["box_id"] for x in body["boxes"]] == [b] and body["next_page_token"] is None
    assert {x["box_id"] for x in srv.req("GET", f"{P}/boxes").json()["boxes"]} == {a, b}


def test_get_unknown_box_is_404_detail_wrapped_and_delete_unknown_is_500_internal(srv):
    r = srv.req("GET", f"{P}/boxes/nope")
    assert r.status_code == 404
    assert r.json() == {"detail": {"error": {"message": "box not found: nope", "type": "NotFoundError",
                                             "code": 404}}}
    r = srv.req("DELETE", f"{P}/boxes/nope")  # Ref with SDK 0.10.8
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "InternalError" and r.json()["error"]["message"].startswith("not found:")
    assert srv.req("HEAD", f"{P}/boxes/nope").status_code == 404


def test_stop_deletes_box_created_with_default_auto_remove(srv):
    r = srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest"})
    bid = r.json()["box_id"]
    srv.req("POST", f"{P}/boxes/{bid}/start")
    r = srv.req("POST", f"{P}/boxes/{bid}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    assert srv.req("GET", f"{P}/boxes/{bid}").status_code == 404
    kept = create(srv)["box_id"]  # auto_remove false
    srv.req("POST", f"{P}/boxes/{kept}/start")
    srv.req("POST", f"{P}/boxes/{kept}/stop", json={"timeout_seconds": 2})
    assert srv.req("GET", f"{P}/boxes/{kept}").status_code == 200
    assert srv.req("DELETE", f"{P}/boxes/{kept}").status_code == 204


def test_snapshots_object_list_and_unix_seconds(srv):
    bid = create(srv)["box_id"]
    srv.req("POST", f"{P}/boxes/{bid}/start")
    srv.req("POST", f"{P}/boxes/{bid}/stop")
    r = srv.req("POST", f"{P}/boxes/{bid}/snapshots", json={"name": "s1"})
    assert r.status_code == 201, r.text
    assert r.json()["guest_disk_bytes"] == 0 and isinstance(r.json()["created_at"], int)
    assert [s["name"] for s in srv.req("GET", f"{P}/boxes/{bid}/snapshots").json()["snapshots"]] == ["s1"]


# ---------------------------------------------------------------- exec + SSE
def test_exec_sse_crlf_framing_base64_chunks_and_exit_last(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "echo out; echo err >&2; exit 3")
    r, raw = read_output(srv, bid, eid)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert b"\r\n\r\n" in raw and raw.endswith(b"\r\n\r\n")
    assert b'event: stdout\r\ndata: {"data": "' + base64.b64encode(b"out\n") + b'"}\r\n\r\n' in raw
    out, err, ex = decode_events(raw)
    assert out == b"out\n" and err == b"err\n"
    assert ex["exit_code"] == 3 and isinstance(ex["duration_ms"], int)
    assert parse_sse(raw)[-1]["event"] == "exit"
    assert raw.rstrip(b"\r\n").split(b"\r\n")[-1].startswith(b'data: {"exit_code": 3, "duration_ms": ')
    info = srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}").json()
    assert info["status"] == "completed" and info["exit_code"] == 3
    assert "stdout" not in info and "stderr" not in info


def test_sse_sends_comment_keepalives_and_is_take_once(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "echo early; sleep 1; echo late")
    r, raw = read_output(srv, bid, eid)
    evs = parse_sse(raw)
    assert any("comment" in e and e["comment"].startswith(" ping - ") for e in evs)
    out, _, ex = decode_events(raw)
    assert out == b"early\nlate\n" and ex["exit_code"] == 0
    # a second reader gets only what is left: nothing, not even exit
    r2, raw2 = read_output(srv, bid, eid)
    assert decode_events(raw2) == (b"", b"", None)


def test_output_buffered_until_first_reader(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sh", "-c", "echo buffered")
    wait_until(lambda: srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}").json()["status"] == "completed")
    _, raw = read_output(srv, bid, eid)
    assert decode_events(raw)[0] == b"buffered\n"


def test_input_raw_body_and_x_close_stdin(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "cat")
    r = srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/input", data=b"raw bytes\n",
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    r = srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/input", data=b"",
                headers={"Content-Type": "application/octet-stream", "X-Close-Stdin": "true"})
    assert r.status_code == 204
    _, raw = read_output(srv, bid, eid)
    out, _, ex = decode_events(raw)
    assert out == b"raw bytes\n" and ex["exit_code"] == 0
    r = srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/input", data=b"x")
    assert r.status_code == 409


def test_signal_always_kills_and_exit_code_is_null(srv):
    bid = create(srv)["box_id"]
    eid = start_exec(srv, bid, "sleep", "30")
    r = srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/signal", json={"signal": 15})
    assert r.status_code == 204
    _, raw = read_output(srv, bid, eid)
    ex = decode_events(raw)[2]
    assert ex["exit_code"] is None
    info = srv.req("GET", f"{P}/boxes/{bid}/executions/{eid}").json()
    assert info["status"] == "killed" and info["exit_code"] is None
    r = srv.req("POST", f"{P}/boxes/{bid}/executions/{eid}/signal", json={"signal": 15})
    assert r.status_code == 409


def test_exec_missing_command_is_422_and_ref_ignores_working_dir(srv):
    bid = create(srv)["box_id"]
    r = srv.req("POST", f"{P}/boxes/{bid}/exec", json={"args": ["x"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "command"]
    eid = start_exec(srv, bid, "pwd", working_dir="/etc")
    out = decode_events(read_output(srv, bid, eid)[1])[0]
    assert out != b"/etc\n"


def test_lf_framing_variant_uses_compact_json_and_bare_comment():
    s = ServerProc("--dialect", "sse-ref", "--auth", "none", "--sse-framing", "lf", "--keepalive", "0.3")
    try:
        bid = s.req("POST", f"{P}/boxes", json={"image": "alpine:latest"}).json()["box_id"]
        eid = s.req("POST", f"{P}/boxes/{bid}/exec", json={"command": "sh", "args": ["-c", "sleep 0.7; echo hi"]}
                    ).json()["execution_id"]
        raw = s.req("GET", f"{P}/boxes/{bid}/executions/{eid}/output", stream=True).raw.read()
        assert b"\r" not in raw
        assert b":\n\n" in raw
        assert b'event: stdout\ndata: {"data":"aGkK"}\n\n' in raw
        assert b'event: exit\ndata: {"duration_ms":' in raw and raw.endswith(b',"exit_code":0}\n\n')
    finally:
        assert s.stop() == 0


def test_serve_flavor_evicts_execution_when_output_is_opened():
    s = ServerProc("--dialect", "sse-serve", "--auth", "none")
    try:
        bid = s.req("POST", f"{P}/boxes", json={"image": "alpine:latest"}).json()["box_id"]
        eid = s.req("POST", f"{P}/boxes/{bid}/exec", json={"command": "true"}).json()["execution_id"]
        time.sleep(0.3)
        assert s.req("GET", f"{P}/boxes/{bid}/executions/{eid}").json() == {"execution_id": eid,
                                                                             "status": "running"}
        raw = s.req("GET", f"{P}/boxes/{bid}/executions/{eid}/output", stream=True).raw.read()
        assert b"event: exit\n" in raw
        r = s.req("GET", f"{P}/boxes/{bid}/executions/{eid}")
        assert r.status_code == 404
        assert s.req("GET", "/v1/nothing").content == b""  # axum: empty 404
    finally:
        assert s.stop() == 0


# ---------------------------------------------------------------- files (Ref placement)
def _run(srv, bid, script):
    eid = start_exec(srv, bid, "sh", "-c", script)
    return decode_events(read_output(srv, bid, eid)[1])


def test_upload_single_file_is_written_as_path_and_multi_into_dir(srv):
    bid = create(srv)["box_id"]
    r = srv.req("PUT", f"{P}/boxes/{bid}/files?path=/root/renamed.txt", data=make_tar({"orig.txt": b"one"}),
                headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 204, r.text
    r = srv.req("PUT", f"{P}/boxes/{bid}/files?path=/root/multi", data=make_tar({"a": b"A", "d/b": b"B"}, gz=True),
                headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 204, r.text  # Ref accepts gzip
    r = srv.req("PUT", f"{P}/boxes/{bid}/files?path=/root/multi/", data=make_tar({"c": b"C"}),
                headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 204
    out, err, ex = _run(srv, bid, "cat /root/renamed.txt; echo; cat /root/multi/a /root/multi/d/b /root/multi/c")
    assert out == b"one\nABC", err


def test_upload_requires_path_and_valid_archive(srv):
    bid = create(srv)["box_id"]
    r = srv.req("PUT", f"{P}/boxes/{bid}/files", data=make_tar({"a": b"A"}))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "path"]
    r = srv.req("PUT", f"{P}/boxes/{bid}/files?path=/root/x", data=b"not a tar")
    assert r.status_code == 400


def test_download_has_basename_top_level_entry(srv):
    bid = create(srv)["box_id"]
    _run(srv, bid, "mkdir -p /root/dd/sub && printf 1 > /root/dd/one && printf 2 > /root/dd/sub/two")
    r = srv.req("GET", f"{P}/boxes/{bid}/files?path=/root/dd", headers={"Accept": "application/x-tar"})
    assert r.status_code == 200
    m = tar_members(r.content)
    assert m["dd/one"] == b"1" and m["dd/sub/two"] == b"2"
    assert not any(k.startswith("./") for k in m)


def test_metrics_are_prefixed(srv):
    assert srv.req("GET", f"{P}/metrics").status_code == 200
    assert srv.req("GET", "/v1/metrics").status_code == 404


def test_non_sdk_exception_is_plain_text_500(srv):
    r = srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest", "memory_mib": 2 ** 40})
    assert r.status_code == 500
    assert r.headers["Content-Type"].startswith("text/plain") and r.text == "Internal Server Error"


def test_create_rejects_pair_ports_string_entrypoint_and_bad_network_with_422(srv):
    for extra in ({"ports": [[8080, 80]]}, {"entrypoint": "sh"}, {"network": {"mode": "bogus"}},
                  {"volumes": [{"host_path": "/x"}]}, {"env": {"A": 1}}):
        r = srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest", **extra})
        assert r.status_code == 422, (extra, r.text)
        assert isinstance(r.json()["detail"], list)
    r = srv.req("POST", f"{P}/boxes", json={"image": "alpine:latest", "auto_remove": False,
                                           "ports": [{"guest_port": 80, "host_port": 0, "protocol": "tcp"}],
                                           "network": {"mode": "enabled", "allow_net": ["example.com"]},
                                           "secrets": [{"name": "k", "value": "v", "hosts": ["example.com"]}],
                                           "entrypoint": ["sh"], "cmd": ["-c", "true"]})
    assert r.status_code == 201, r.text


def test_dialect_names_of_the_code_select_the_sse_flavours_and_sse_stays_an_alias():
    from boxlite_testbed.server.__main__ import parse_args

    for argv, flavor, framing in (
        (["--dialect", "sse-ref"], "ref", "crlf"),
        (["--dialect", "sse-serve"], "serve", "lf"),
        (["--dialect", "sse"], "ref", "crlf"),
        (["--dialect", "sse", "--sse-flavor", "serve"], "serve", "lf"),
    ):
        cfg = parse_args(argv)
        assert (cfg.dialect, cfg.sse_flavor, cfg.sse_framing, cfg.auth) == ("sse", flavor, framing, "client-credentials"), argv
    with pytest.raises(SystemExit):
        parse_args(["--dialect", "sse-ref", "--sse-flavor", "serve"])

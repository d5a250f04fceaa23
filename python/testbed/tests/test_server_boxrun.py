"""The `boxrun` dialect (BoxRun API) served by the test server."""

from __future__ import annotations

import json
import time

import pytest

from boxlite_testbed.server.harness import ServerProc, parse_sse, wait_until

J = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def srv():
    s = ServerProc("--dialect", "boxrun", "--keepalive", "0.3")
    yield s
    assert s.stop() == 0


def create(srv, **body):
    body.setdefault("image", "ubuntu:24.04")
    body.setdefault("cpu", 1)
    body.setdefault("memory_mb", 256)
    r = srv.req("POST", "/v1/boxes", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def exec_(srv, bid, *cmd, **extra):
    r = srv.req("POST", f"/v1/boxes/{bid}/exec", json={"cmd": list(cmd), **extra})
    assert r.status_code == 201, r.text
    return r.json()


def events(srv, bid, eid, timeout=20):
    r = srv.req("GET", f"/v1/boxes/{bid}/exec/{eid}/events", stream=True, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.raw.read()


def logs(raw):
    evs = [e for e in parse_sse(raw) if "event" in e]
    return [(e["event"], json.loads(e["data"])) for e in evs]


def test_info_and_unmatched_routes(srv):
    r = srv.req("GET", "/v1/info")
    assert r.status_code == 200 and set(r.json()) == {"max_cpu", "max_memory_mb"}
    for path in ("/v1/config", "/v1/me", "/v1/nope"):
        r = srv.req("GET", path)
        assert r.status_code == 404 and r.content == b""
    r = srv.req("PUT", "/v1/info")
    assert r.status_code == 405 and r.content == b""


def test_create_is_synchronous_running_with_all_keys_and_no_network_default(srv):
    b = create(srv, name="dev", env={"K": "v"})
    assert b["status"] == "running" and b["id"].startswith("box_") and len(b["id"]) == 16
    assert b["network"] is False and b["workdir"] == "/root" and b["disk_size_gb"] == 8
    assert set(b) == {"id", "name", "status", "image", "cpu", "memory_mb", "disk_size_gb", "network", "workdir",
                      "env", "volumes", "boxlite_id", "error_code", "error_message", "created_at", "started_at",
                      "stopped_at"}
    assert b["stopped_at"] is None and b["error_code"] is None and b["created_at"].endswith("+00:00")


def test_create_validation_errors(srv):
    r = srv.req("POST", "/v1/boxes", data=b'{"image":"x"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.headers["Content-Type"].startswith("text/plain")
    r = srv.req("POST", "/v1/boxes", json={"cpu": 1})
    assert r.status_code == 422 and "missing field `image`" in r.text
    r = srv.req("POST", "/v1/boxes", json={"image": "x", "cpu": 1.5})
    assert r.status_code == 422 and r.headers["Content-Type"].startswith("text/plain")
    r = srv.req("POST", "/v1/boxes", json={"image": "x", "cpu": 0})
    assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR"
    create(srv, name="same")
    r = srv.req("POST", "/v1/boxes", json={"image": "x", "name": "same", "cpu": 1, "memory_mb": 128})
    assert r.status_code == 409 and r.json()["code"] == "NAME_ALREADY_EXISTS"
    r = srv.req("POST", "/v1/boxes", json={"image": "x", "cpu": 100000})
    assert r.status_code == 409 and r.json()["code"] == "RESOURCE_EXCEEDED"
    r = srv.req("POST", "/v1/boxes", json={"image": "x", "cpu": 1, "memory_mb": 128,
                                           "volumes": [{"host_path": "/nonexistent/x", "guest_path": "/mnt"}]})
    assert r.status_code == 400 and r.json()["code"] == "RUNTIME_ERROR"


def test_list_is_bare_array_newest_first_with_status_filter(srv):
    a = create(srv)["id"]
    time.sleep(0.01)
    b = create(srv)["id"]
    srv.req("POST", f"/v1/boxes/{a}:stop")
    r = srv.req("GET", "/v1/boxes")
    assert [x["id"] for x in r.json()] == [b, a]
    assert [x["id"] for x in srv.req("GET", "/v1/boxes?status=stopped").json()] == [a]
    assert len(srv.req("GET", "/v1/boxes?status=all").json()) == 2


def test_colon_actions_and_their_errors(srv):
    b = create(srv, name="act")
    bid = b["id"]
    r = srv.req("POST", f"/v1/boxes/{bid}:start")
    assert r.status_code == 409 and r.json() == {"code": "BOX_ALREADY_RUNNING",
                                                 "message": f"Box '{bid}' is already running"}
    r = srv.req("POST", "/v1/boxes/act:stop")  # by name
    assert r.status_code == 200 and r.json()["status"] == "stopped" and r.json()["stopped_at"]
    r = srv.req("POST", f"/v1/boxes/{bid}:stop")
    assert r.status_code == 400 and r.json()["code"] == "BOX_NOT_RUNNING"
    r = srv.req("POST", f"/v1/boxes/{bid}:start")
    assert r.status_code == 200 and r.json()["status"] == "running"
    r = srv.req("POST", f"/v1/boxes/{bid}")
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR" and "Missing action" in r.json()["message"]
    r = srv.req("POST", f"/v1/boxes/{bid}:explode")
    assert r.status_code == 400 and r.json()["message"] == "Unknown action: explode"
    assert srv.req("GET", f"/v1/boxes/{bid}:whatever").json()["id"] == bid  # GET strips after ':'
    r = srv.req("GET", "/v1/boxes/missing")
    assert r.status_code == 404 and r.json() == {"code": "BOX_NOT_FOUND", "message": "Box 'missing' not found"}


def test_delete_requires_literal_force_true_for_running_box(srv):
    bid = create(srv)["id"]
    for q in ("", "?force=1", "?force=True"):
        r = srv.req("DELETE", f"/v1/boxes/{bid}{q}")
        assert r.status_code == 409 and r.json()["message"] == "Box is running. Use force=true to remove."
    r = srv.req("DELETE", f"/v1/boxes/{bid}?force=true")
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert srv.req("GET", f"/v1/boxes/{bid}").status_code == 404


def test_exec_events_byte_level_shared_seq_and_json_string_exit(srv):
    bid = create(srv)["id"]
    e = exec_(srv, bid, "sh", "-c", "echo hello; echo oops >&2; exit 4")
    assert e["status"] == "running" and e["exit_code"] is None and e["id"].startswith("exec_")
    assert e["workdir"] == "/root"
    assert set(e) == {"id", "box_id", "status", "cmd", "env", "workdir", "timeout_ms", "exit_code",
                      "error_message", "created_at", "finished_at"}
    assert e["box_id"] == bid and e["cmd"] == ["sh", "-c", "echo hello; echo oops >&2; exit 4"]
    raw = events(srv, bid, e["id"])
    assert b"\r" not in raw
    assert b'event: log\ndata: {"data":"hello\\n","seq":' in raw
    evs = logs(raw)
    assert [d["seq"] for _, d in evs] == sorted(d["seq"] for _, d in evs) == list(range(len(evs)))
    assert evs[-1][0] == "exit" and evs[-1][1]["stream"] is None
    assert json.loads(evs[-1][1]["data"]) == {"exit_code": 4}
    assert raw.endswith(b'"stream":null}\n\n')
    streams = {d["stream"]: d["data"] for k, d in evs if k == "log"}
    assert streams == {"stdout": "hello\n", "stderr": "oops\n"}
    info = srv.req("GET", f"/v1/boxes/whatever/exec/{e['id']}").json()  # box segment ignored
    assert info["status"] == "failed" and info["exit_code"] == 4 and info["finished_at"]
    assert "stdout" not in info


def test_events_replay_from_zero_on_every_connect(srv):
    bid = create(srv)["id"]
    e = exec_(srv, bid, "sh", "-c", "echo a; echo b")
    first = logs(events(srv, bid, e["id"]))
    second = logs(events(srv, bid, e["id"]))
    assert first == second and first[0][1]["seq"] == 0
    assert srv.req("GET", f"/v1/boxes/{bid}/exec/{e['id']}").json()["status"] == "succeeded"


def test_exec_requires_running_box_and_validates(srv):
    bid = create(srv)["id"]
    r = srv.req("POST", f"/v1/boxes/{bid}/exec", json={"cmd": []})
    assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR"
    r = srv.req("POST", f"/v1/boxes/{bid}/exec", json={"cmd": ["true"], "workdir": "rel"})
    assert r.status_code == 422
    srv.req("POST", f"/v1/boxes/{bid}:stop")
    r = srv.req("POST", f"/v1/boxes/{bid}/exec", json={"cmd": ["true"]})
    assert r.status_code == 400 and r.json()["code"] == "BOX_NOT_RUNNING"
    r = srv.req("GET", f"/v1/boxes/{bid}/exec/exec_nope/events")
    assert r.status_code == 404 and r.json()["code"] == "EXEC_NOT_FOUND"


def test_exec_workdir_env_and_execs_list(srv):
    bid = create(srv, env={"BOXV": "1"})["id"]
    e1 = exec_(srv, bid, "sh", "-c", "pwd; echo $BOXV$X", env={"X": "2"}, workdir="/etc")
    ev = logs(events(srv, bid, e1["id"]))
    assert "".join(d["data"] for k, d in ev if k == "log") == "/etc\n12\n"
    e2 = exec_(srv, bid, "true")
    assert [x["id"] for x in srv.req("GET", f"/v1/boxes/{bid}/execs").json()] == [e2["id"], e1["id"]]


def test_cancel_synthesizes_exit_for_new_subscribers_and_live_ones_never_end(srv):
    bid = create(srv)["id"]
    e = exec_(srv, bid, "sh", "-c", "echo started; sleep 30")
    eid = e["id"]
    wait_until(lambda: b"started" in srv.req("GET", f"/v1/boxes/{bid}/exec/{eid}/events", stream=True,
                                             timeout=(5, 0.5)).raw.read(20) or True)
    live = srv.req("GET", f"/v1/boxes/{bid}/exec/{eid}/events", stream=True, timeout=(5, 10))
    r = srv.req("POST", f"/v1/boxes/{bid}/exec/{eid}:cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["exit_code"] is None
    r = srv.req("POST", f"/v1/boxes/{bid}/exec/{eid}:cancel")
    assert r.status_code == 400 and r.json()["code"] == "EXEC_ALREADY_FINISHED"
    wait_until(lambda: srv.req("GET", f"/v1/boxes/{bid}/exec/{eid}").json()["status"] == "canceled")
    time.sleep(0.5)
    raw = events(srv, bid, eid)
    evs = logs(raw)
    assert evs[-1][0] == "exit" and json.loads(evs[-1][1]["data"]) == {"exit_code": None}
    assert evs[-1][1]["seq"] == len(evs) - 1
    # the live subscriber keeps receiving keep-alives and no exit
    got = b""
    t0 = time.time()
    for chunk in live.raw.stream(64, decode_content=False):
        got += chunk
        if time.time() - t0 > 1.0:
            break
    live.close()
    assert b"event: exit" not in got and b":\n\n" in got


def test_upload_multipart_and_json_download(srv):
    bid = create(srv)["id"]
    data = bytes(range(256)) * 10
    r = srv.req("POST", f"/v1/boxes/{bid}/files/upload",
                files={"file": ("ignored.bin", data), "dest": (None, "/root/payload.bin")})
    assert r.status_code == 200 and r.json() == {"ok": True, "dest": "/root/payload.bin"}
    r = srv.req("POST", f"/v1/boxes/{bid}/files/download", json={"path": "/root/payload.bin"})
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == 'attachment; filename="payload.bin"'
    r = srv.req("POST", f"/v1/boxes/{bid}/files/download", json={"path": "/root"})
    assert r.status_code == 400 and r.json()["code"] == "RUNTIME_ERROR"
    r = srv.req("POST", f"/v1/boxes/{bid}/files/download", json={"path": "/root/missing"})
    assert r.status_code == 400 and r.json()["code"] == "RUNTIME_ERROR"


def test_upload_errors(srv):
    bid = create(srv)["id"]
    r = srv.req("POST", f"/v1/boxes/{bid}/files/upload", files={"dest": (None, "/root/x")})
    assert r.status_code == 400 and r.json()["message"] == "Missing file field"
    r = srv.req("POST", f"/v1/boxes/{bid}/files/upload", files={"file": ("f", b"x")})
    assert r.status_code == 400 and r.json()["message"] == "Missing dest field"
    r = srv.req("POST", f"/v1/boxes/{bid}/files/upload",
                files={"file": ("f", b"\0" * (2 * 1024 * 1024 + 1)), "dest": (None, "/root/big")})
    assert r.status_code == 400 and r.json()["message"] == "Missing file field"
    srv.req("POST", f"/v1/boxes/{bid}:stop")
    r = srv.req("POST", f"/v1/boxes/{bid}/files/upload", files={"file": ("f", b"x"), "dest": (None, "/root/x")})
    assert r.status_code == 400 and r.json()["code"] == "BOX_NOT_RUNNING"


def test_run_one_shot_and_gc(srv):
    r = srv.req("POST", "/v1/run", json={"image": "ubuntu:24.04", "cpu": 1, "memory_mb": 128,
                                         "cmd": ["sh", "-c", "echo ran; echo e >&2; exit 2"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"exit_code": 2, "stdout": "ran\n", "stderr": "e\n", "error_message": None}
    assert srv.req("GET", "/v1/boxes").json() == []
    bid = create(srv)["id"]
    srv.req("POST", f"/v1/boxes/{bid}:stop")
    assert srv.req("POST", "/v1/gc", json={"older_than": 3600}).json() == {"removed": 0}
    assert srv.req("POST", "/v1/gc", json={"older_than": 0}).json() == {"removed": 1}


@pytest.mark.asyncio
async def test_attach_terminal_websocket(srv):
    import aiohttp

    bid = create(srv)["id"]
    url = srv.url.replace("http", "ws", 1) + f"/v1/boxes/{bid}/attach?shell=/bin/sh&cols=100&rows=30"
    async with aiohttp.ClientSession() as cs:
        async with cs.ws_connect(url) as ws:
            await ws.send_bytes(b"echo hi-$((1+2))\nexit 5\n")
            out = b""
            exit_msg = None
            while True:
                m = await ws.receive(timeout=15)
                if m.type == aiohttp.WSMsgType.BINARY:
                    out += m.data
                elif m.type == aiohttp.WSMsgType.TEXT:
                    exit_msg = json.loads(m.data)
                    break
                else:
                    break
    assert b"hi-3" in out
    assert exit_msg == {"type": "exit", "code": 5}


@pytest.mark.asyncio
async def test_attach_to_stopped_box_sends_error_frame(srv):
    import aiohttp

    bid = create(srv)["id"]
    srv.req("POST", f"/v1/boxes/{bid}:stop")
    url = srv.url.replace("http", "ws", 1) + f"/v1/boxes/{bid}/attach"
    async with aiohttp.ClientSession() as cs:
        async with cs.ws_connect(url) as ws:
            m = await ws.receive(timeout=10)
            assert json.loads(m.data)["type"] == "error" and json.loads(m.data)["code"] == "BOX_NOT_RUNNING"

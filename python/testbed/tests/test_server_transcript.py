"""The "current" dialect answers like a real `boxlite serve` 0.11.0.

Replays the requests of ``fixtures/serve-0.11.0-answers.json`` (see the README there) and compares
each answer with the recorded one: status, content type, the key structure of JSON bodies (keys and
value kinds, recursively; list items as a set of shapes), the error ``code`` of JSON errors, and the
leading phrase of plain-text rejections. Targets: the test server, always; a real server too when
``BOXLITE_REAL_CURRENT_URL`` (and ``BOXLITE_REAL_CURRENT_API_KEY``) name one, which re-verifies the
fixture itself.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any, Optional

import pytest
import requests

from boxlite_testbed.server.harness import ServerProc

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve-0.11.0-answers.json")
TOKEN = "blk_test_transcript"


def shape(value: Any) -> Any:
    """The key structure of a JSON value: objects keep their keys, lists become the set of their
    items' shapes, scalars become their kind (integers and floats are both numbers)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        seen: list[Any] = []
        for item in value:
            s = shape(item)
            if s not in seen:
                seen.append(s)
        return sorted(seen, key=lambda s: json.dumps(s, sort_keys=True))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def _media(ct: str) -> str:
    return ct.replace(" ", "").lower()


def _own_boxes(body: Any) -> Any:
    """A box list narrowed to the boxes the replay creates (``cmp-*``): a live server may hold
    others, in other states (a running box has a numeric ``pid``)."""
    if isinstance(body, dict) and isinstance(body.get("boxes"), list):
        return dict(body, boxes=[b for b in body["boxes"] if str(b.get("name", "")).startswith("cmp-")])
    return body


def differences(label: str, want: dict, got: dict) -> list[str]:
    """What differs between a recorded and a live answer (empty when they agree)."""
    out = []
    if want["status"] != got["status"]:
        out.append(f"{label}: status {got['status']}, real server {want['status']}")
    if _media(want["content_type"]) != _media(got["content_type"]):
        out.append(f"{label}: content type {got['content_type']!r}, real server {want['content_type']!r}")
    wb, gb = _own_boxes(want["body"]), _own_boxes(got["body"])
    if isinstance(wb, str) or isinstance(gb, str):
        # Plain-text rejections: the framework's leading phrase must match (the detail may differ).
        lead = lambda s: s.split(":", 1)[0] if isinstance(s, str) else repr(type(s))  # noqa: E731
        if lead(wb) != lead(gb):
            out.append(f"{label}: body {str(gb)[:120]!r}, real server {str(wb)[:120]!r}")
        return out
    if shape(wb) != shape(gb):
        out.append(f"{label}: body shape {json.dumps(shape(gb), sort_keys=True)}\n"
                   f"    real server {json.dumps(shape(wb), sort_keys=True)}")
    if isinstance(wb, dict) and isinstance(wb.get("error"), dict):
        if not isinstance(gb, dict) or not isinstance(gb.get("error"), dict) or \
                gb["error"].get("code") != wb["error"].get("code"):
            out.append(f"{label}: error {gb!r}, real server code {wb['error'].get('code')!r}")
    return out


def _tar_of_size(n: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("big.bin")
        info.size = n - 4096  # header and end blocks bring it to about n bytes
        tf.addfile(info, io.BytesIO(b"\0" * info.size))
    return buf.getvalue()


def replay(url: str, key: Optional[str]) -> tuple[list[str], list[str]]:
    """Replays every exchange; returns (differences, ids of boxes it created)."""
    with open(FIXTURE, encoding="utf-8") as f:
        exchanges = json.load(f)["exchanges"]
    saved: dict[str, str] = {}
    diffs: list[str] = []
    for ex in exchanges:
        r = ex["request"]
        path = r["path"]
        for k, v in saved.items():
            path = path.replace("{" + k + "}", v)
        headers = {}
        if key and r.get("auth", True):
            headers["Authorization"] = f"Bearer {key}"
        kw: dict[str, Any] = {"headers": headers, "timeout": 30}
        if "json" in r:
            kw["json"] = r["json"]
        elif "data" in r:
            kw["data"] = r["data"].encode()
        elif "tar_bytes" in r:
            kw["data"] = _tar_of_size(r["tar_bytes"])
        if "content_type" in r:
            headers["Content-Type"] = r["content_type"]
        # A connection of its own per request: a server may close a connection after answering
        # a request whose body it did not read (the oversized upload), and a reused one can then
        # fail with "closed without response" depending on timing.
        headers["Connection"] = "close"
        resp = requests.request(r["method"], url + path, **kw)
        ct = resp.headers.get("Content-Type", "")
        if ct.split(";")[0].strip() == "application/json":
            body: Any = resp.json()
        else:
            body = resp.text
        got = {"status": resp.status_code, "content_type": ct, "body": body}
        diffs += differences(ex["label"], ex["answer"], got)
        if "save" in r and resp.status_code == 201:
            saved[r["save"]] = resp.json()["box_id"]
    return diffs, list(saved.values())


def test_shape_compares_keys_and_kinds_not_values():
    a = {"box_id": "x", "pid": None, "cpus": 1, "labels": {}, "boxes": [{"a": 1}, {"a": 2}]}
    assert shape(a) == shape({"box_id": "y", "pid": None, "cpus": 2.5, "labels": {}, "boxes": [{"a": 3}]})
    assert shape(a) != shape(dict(a, pid=7))
    assert shape(a) != shape(dict(a, extra=1))
    assert shape({"l": [{"a": 1}]}) != shape({"l": [{"a": 1}, {"b": 1}]})
    err = {"status": 404, "content_type": "application/json",
           "body": {"error": {"message": "m", "type": "NotFoundError", "code": "not_found"}}}
    assert differences("x", err, err) == []
    assert differences("x", err, dict(err, body={"error": {"message": "m", "type": "T", "code": "internal"}}))
    assert differences("x", err, dict(err, status=400))
    plain = {"status": 422, "content_type": "text/plain; charset=utf-8", "body": "Failed to parse: a"}
    assert differences("x", plain, dict(plain, body="Failed to parse: b")) == []
    assert differences("x", plain, dict(plain, body="Something else: a"))
    boxes = {"status": 200, "content_type": "application/json", "body": {"boxes": [{"name": "cmp-a", "pid": None}]}}
    other = {"boxes": [{"name": "cmp-a", "pid": None}, {"name": "someone-else", "pid": 42}]}
    assert differences("x", boxes, dict(boxes, body=other)) == []
    assert differences("x", boxes, dict(boxes, body={"boxes": [{"name": "cmp-a", "pid": 42}]}))


def test_the_fixture_holds_24_recorded_answers_with_replayable_requests():
    with open(FIXTURE, encoding="utf-8") as f:
        doc = json.load(f)
    ex = doc["exchanges"]
    assert len(ex) == 24
    assert all({"method", "path"} <= set(e["request"]) and "status" in e["answer"] for e in ex)
    assert [e["request"]["save"] for e in ex if "save" in e["request"]] == ["a", "b", "c"]


def test_the_test_server_answers_every_recorded_request_like_the_real_serve():
    srv = ServerProc("--dialect", "current", "--auth", "token", "--token", TOKEN)
    try:
        diffs, _ = replay(srv.url, TOKEN)
    finally:
        assert srv.stop() == 0
    assert diffs == [], f"{len(diffs)} differences from boxlite serve 0.11.0:\n" + "\n".join(diffs)


@pytest.mark.skipif(not os.environ.get("BOXLITE_REAL_CURRENT_URL"),
                    reason="no real boxlite serve (set BOXLITE_REAL_CURRENT_URL and BOXLITE_REAL_CURRENT_API_KEY)")
def test_a_real_serve_still_answers_as_recorded():
    url = os.environ["BOXLITE_REAL_CURRENT_URL"].rstrip("/")
    key = os.environ.get("BOXLITE_REAL_CURRENT_API_KEY")
    diffs, created = replay(url, key)
    for box_id in created:  # `a` is removed by the replay itself; the others stay otherwise
        requests.delete(f"{url}/v1/boxes/{box_id}?force=true", timeout=30,
                        headers={"Authorization": f"Bearer {key}"} if key else {})
    assert diffs == [], "the real server no longer answers as recorded:\n" + "\n".join(diffs)

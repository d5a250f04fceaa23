"""Fault injection rules and the request log.

A fault rule is a JSON object:

``kind``
    ``latency`` (sleep ``delay_ms`` before handling), ``error`` (answer
    ``status``, default 503, with the dialect's error body, or ``body`` if
    given), ``drop`` (close the connection: before any response, or for
    streaming routes after ``after_events`` events/frames), ``truncate``
    (announce the full Content-Length, send only ``after_bytes`` bytes —
    default half — then close), ``malformed_json`` (JSON body replaced by a
    cut-off, unparsable body with a correct Content-Length),
    ``expire_token`` (the bearer of the matching request is treated as
    expired: 401 as the dialect answers it), ``stall`` (streaming routes:
    after ``after_events`` events/frames — default 0, right after the
    headers — send nothing more, not even keep-alives, while the client stays
    connected; what a buffering proxy or a stuck server looks like).
``method``
    HTTP method to match (default any).
``path``
    regular expression searched in the request path (default any).
``nth``
    fire on the n-th matching call (1-based, default 1); counting starts
    when the rule is installed.
``times``
    how many consecutive matching calls fire from the n-th on (default 1;
    0 = every call from the n-th on). ``latency`` defaults to 0 (always).
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional

KINDS = ("latency", "error", "drop", "truncate", "malformed_json", "expire_token", "stall")


class FaultRule:
    def __init__(self, spec: dict[str, Any]):
        if not isinstance(spec, dict):
            raise ValueError("a fault rule must be a JSON object")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.spec = dict(spec)
        self.kind = kind
        self.method = (spec.get("method") or "").upper() or None
        self.path_re = re.compile(spec.get("path") or "")
        self.nth = int(spec.get("nth", 1))
        if self.nth < 1:
            raise ValueError("nth must be >= 1")
        default_times = 0 if kind == "latency" else 1
        self.times = int(spec.get("times", default_times))
        self.status = int(spec.get("status", 503))
        self.delay_ms = float(spec.get("delay_ms", 0))
        self.after_events = spec.get("after_events")
        self.after_bytes = spec.get("after_bytes")
        self.body = spec.get("body")
        self.seen = 0
        self.fired = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method.upper():
            return False
        return bool(self.path_re.search(path))

    def hit(self) -> bool:
        """Count one matching call; True if the rule fires for it."""
        self.seen += 1
        if self.seen < self.nth:
            return False
        if self.times and self.fired >= self.times:
            return False
        self.fired += 1
        return True

    def to_json(self) -> dict[str, Any]:
        d = dict(self.spec)
        d["seen"] = self.seen
        d["fired"] = self.fired
        return d


class FaultSet:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, specs: Any) -> list[FaultRule]:
        if isinstance(specs, dict) and "faults" in specs:
            specs = specs["faults"]
        if isinstance(specs, dict):
            specs = [specs]
        if not isinstance(specs, list):
            raise ValueError("expected a fault object or a list of them")
        rules = [FaultRule(s) for s in specs]  # validate all first
        self.rules.extend(rules)
        return rules

    def clear(self) -> None:
        self.rules.clear()

    def select(self, method: str, path: str) -> list[FaultRule]:
        """Rules firing for this request (each matching rule counts the call)."""
        fired = []
        for r in self.rules:
            if r.matches(method, path) and r.hit():
                fired.append(r)
        return fired

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.rules]


def parse_faults_arg(arg: Optional[str]) -> list[dict[str, Any]]:
    """``--faults`` value: JSON (object or list), or ``@file`` holding JSON."""
    import json

    if not arg:
        return []
    text = arg
    if arg.startswith("@"):
        with open(arg[1:], encoding="utf-8") as f:
            text = f.read()
    data = json.loads(text)
    if isinstance(data, dict) and "faults" in data:
        data = data["faults"]
    if isinstance(data, dict):
        data = [data]
    for d in data:
        FaultRule(d)  # validate
    return data


class RequestLog:
    def __init__(self, limit: int = 10000):
        self.entries: list[dict[str, Any]] = []
        self.limit = limit
        self.counter = 0

    def record(self, request: Any) -> dict[str, Any]:
        self.counter += 1
        auth = request.headers.get("Authorization")
        scheme = token = None
        if auth is not None:
            parts = auth.split(None, 1)
            scheme = parts[0] if parts else ""
            token = parts[1] if len(parts) > 1 else ""
        headers = {}
        for k, v in request.headers.items():
            if k.lower() in ("authorization", "cookie", "proxy-authorization"):
                v = "<redacted>"
            headers[k] = v
        entry = {
            "seq": self.counter,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": request.query_string,
            "headers": headers,
            "authorization": {"present": auth is not None, "scheme": scheme, "token": token},
            "content_type": request.headers.get("Content-Type"),
            "content_length": request.content_length,
            "websocket": request.headers.get("Upgrade", "").lower() == "websocket",
            "status": None,
            "faults": [],
        }
        self.entries.append(entry)
        if len(self.entries) > self.limit:
            del self.entries[: len(self.entries) - self.limit]
        return entry

    def clear(self) -> None:
        self.entries.clear()

"""aiohttp application: routing, request log, faults, control endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from .config import Config
from .core import Backend
from .faults import FaultSet, RequestLog

log = logging.getLogger("boxlite_testbed.server")

CONTROL_PREFIX = "/__testbed"

Handler = Callable[..., Awaitable[web.StreamResponse]]


class Route:
    def __init__(self, method: str, pattern: str, handler: Handler, name: str,
                 auth: bool = True):
        self.method = method
        self.pattern = pattern
        rx = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        rx = re.sub(r"\{(\w+):rest\}", r"(?P<\1>.+)", rx)
        self.regex = re.compile("^" + rx + "$")
        self.handler = handler
        self.name = name
        self.auth = auth


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, name: Optional[str] = None,
            auth: bool = True) -> None:
        self.routes.append(Route(method, pattern, handler, name or handler.__name__, auth))

    def match(self, method: str, path: str):
        """(route, params) | ("405", None) | (None, None)."""
        path_matched = False
        for r in self.routes:
            m = r.regex.match(path)
            if not m:
                continue
            if r.method == method:
                return r, m.groupdict()
            path_matched = True
        return ("405", None) if path_matched else (None, None)


class Dialect:
    """Base class of the three dialects."""

    name = "?"

    def __init__(self, cfg: Config, backend: Backend, state: "ServerState"):
        self.cfg = cfg
        self.backend = backend
        self.state = state
        self.router = Router()
        self.setup_routes()

    def setup_routes(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def strip_prefix(self, path: str) -> Optional[str]:
        """Map the request path onto the route table's namespace."""
        return path

    async def authenticate(self, request: web.Request, route: Route) -> Optional[web.StreamResponse]:
        return None

    def not_found(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    def method_not_allowed(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=405)

    def injected_error(self, status: int) -> web.StreamResponse:
        return web.json_response({"error": {"message": "testbed injected fault", "code": status}},
                                 status=status)

    def decorate(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Hook for headers every response carries (e.g. X-Request-Id)."""

    def ready_info(self) -> dict[str, Any]:
        return {}


class ServerState:
    def __init__(self, cfg: Config, backend: Backend):
        self.cfg = cfg
        self.backend = backend
        self.faults = FaultSet()
        self.log = RequestLog(cfg.log_limit)
        self.token_epoch = 0  # bumped by expire_token faults / control calls
        self.dialect: Dialect = None  # type: ignore[assignment]
        if cfg.faults:
            self.faults.add(cfg.faults)


def json_dumps_compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _fault_names(rules) -> list[str]:
    return [r.kind for r in rules]


def build_app(cfg: Config, backend: Backend) -> web.Application:
    from .dialect_boxrun import BoxRunDialect
    from .dialect_current import CurrentDialect
    from .dialect_sse import SseDialect

    state = ServerState(cfg, backend)
    cls = {"sse": SseDialect, "current": CurrentDialect, "boxrun": BoxRunDialect}[cfg.dialect]
    dialect = cls(cfg, backend, state)
    state.dialect = dialect

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return await control(request, state)
        entry = state.log.record(request)
        request["log_entry"] = entry
        rules = state.faults.select(request.method, path)
        entry["faults"] = _fault_names(rules)
        request["faults"] = rules
        try:
            resp = await _handle(request, dialect, rules)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        if entry["status"] is None:
            entry["status"] = getattr(resp, "status", None)
        return resp

    app = web.Application(client_max_size=1024 ** 3)
    app["state"] = state
    app["dialect"] = dialect
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def _handle(request: web.Request, dialect: Dialect, rules) -> web.StreamResponse:
    for r in rules:
        if r.kind == "latency" and r.delay_ms > 0:
            await asyncio.sleep(r.delay_ms / 1000.0)
    for r in rules:
        if r.kind == "error":
            if r.body is not None:
                body = r.body if isinstance(r.body, str) else json.dumps(r.body)
                resp = web.Response(status=r.status, text=body,
                                    content_type="application/json" if not isinstance(r.body, str) else "text/plain")
            else:
                resp = dialect.injected_error(r.status)
            dialect.decorate(request, resp)
            return resp
        if r.kind == "expire_token":
            request["token_expired"] = True
    drop = next((r for r in rules if r.kind == "drop"), None)
    is_stream = _is_streaming_request(request)
    if drop is not None and not (is_stream and drop.after_events is not None):
        # Drop before any response byte.
        if request.transport is not None:
            request.transport.close()
        request["log_entry"]["status"] = "dropped"
        return _Dropped()
    if drop is not None:
        request["drop_after_events"] = int(drop.after_events)
    stall = next((r for r in rules if r.kind == "stall"), None)
    if stall is not None:
        request["stall_after_events"] = int(stall.after_events or 0)

    raw = request.rel_url.raw_path
    bp = dialect.cfg.base_path
    if bp:
        raw = raw[len(bp):] if raw.startswith(bp + "/") else "/\x00unmatched"
    request["raw_v1"] = raw
    sub = dialect.strip_prefix(raw)
    if sub is None:
        resp = dialect.not_found(request)
        dialect.decorate(request, resp)
        return resp
    route, params = dialect.router.match(request.method, sub)
    if route == "405":
        resp = dialect.method_not_allowed(request)
        dialect.decorate(request, resp)
        return resp
    if route is None:
        resp = dialect.not_found(request)
        dialect.decorate(request, resp)
        return resp
    request["route_name"] = route.name
    if route.auth:
        denied = await dialect.authenticate(request, route)
        if denied is not None:
            dialect.decorate(request, denied)
            return denied
    resp = await route.handler(request, **params)
    if isinstance(resp, web.Response) and not resp.prepared:
        dialect.decorate(request, resp)
        mangle = next((r for r in rules if r.kind in ("truncate", "malformed_json")), None)
        if mangle is not None and resp.body is not None:
            return await _mangle(request, resp, mangle)
    return resp


class _Dropped(web.Response):
    """Placeholder returned after the connection was closed on purpose."""

    def __init__(self) -> None:
        super().__init__(status=599)


def _is_streaming_request(request: web.Request) -> bool:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return True
    p = request.path
    return p.endswith("/output") or p.endswith("/events") or p.endswith("/attach")


async def _mangle(request: web.Request, resp: web.Response, rule) -> web.StreamResponse:
    body = resp.body
    if not isinstance(body, (bytes, bytearray)):
        body = bytes(body._value) if hasattr(body, "_value") else b""  # Payload
    body = bytes(body)
    if rule.kind == "malformed_json":
        cut = body[: max(1, len(body) // 2)] if body else b"{"
        new_body = cut + b"\x00<<testbed malformed json>>"
        out = web.Response(status=resp.status, body=new_body, headers=resp.headers)
        out.content_type = "application/json"
        return out
    # truncate: promise the full length, deliver a part, then close.
    n = rule.after_bytes if rule.after_bytes is not None else len(body) // 2
    n = max(0, min(int(n), max(0, len(body) - 1)))
    sr = web.StreamResponse(status=resp.status, headers=resp.headers)
    sr.content_length = len(body)
    await sr.prepare(request)
    if n:
        await sr.write(body[:n])
    await asyncio.sleep(0.01)
    if request.transport is not None:
        request.transport.close()
    return sr


async def control(request: web.Request, state: ServerState) -> web.StreamResponse:
    """Test-only control endpoints under /__testbed (never authenticated, logged or faulted)."""
    sub = request.path[len(CONTROL_PREFIX):] or "/"
    m = request.method
    try:
        if sub in ("/faults", "/faults/"):
            if m == "GET":
                return web.json_response({"faults": state.faults.to_json()})
            if m in ("POST", "PUT"):
                data = await request.json()
                if m == "PUT" or (isinstance(data, dict) and data.get("replace")):
                    state.faults.clear()
                added = state.faults.add(data)
                return web.json_response({"added": len(added), "faults": state.faults.to_json()})
            if m == "DELETE":
                state.faults.clear()
                return web.json_response({"faults": []})
        elif sub in ("/requests", "/requests/"):
            if m == "GET":
                entries = state.log.entries
                since = request.query.get("since")
                if since:
                    entries = [e for e in entries if e["seq"] > int(since)]
                return web.json_response({"requests": entries})
            if m == "DELETE":
                state.log.clear()
                return web.json_response({"requests": []})
        elif sub == "/reset" and m == "POST":
            state.faults.clear()
            state.log.clear()
            state.token_epoch = 0
            removed = 0
            if request.query.get("boxes") in ("1", "true", "yes"):
                removed = await state.dialect.reset_boxes() if hasattr(state.dialect, "reset_boxes") else 0
            return web.json_response({"ok": True, "boxes_removed": removed})
        elif sub == "/expire-tokens" and m == "POST":
            state.token_epoch += 1
            return web.json_response({"ok": True, "token_epoch": state.token_epoch})
        elif sub in ("/info", "/info/", "/") and m == "GET":
            info = {"dialect": state.cfg.dialect, "auth": state.cfg.auth,
                    "prefix": state.cfg.prefix, "home": state.backend.home,
                    "routes": [{"method": r.method, "path": r.pattern, "name": r.name}
                               for r in state.dialect.router.routes]}
            info.update(state.dialect.ready_info())
            return web.json_response(info)
        else:
            return web.json_response({"error": f"unknown control endpoint {m} {request.path}"}, status=404)
    except (ValueError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"error": f"method {m} not allowed on {request.path}"}, status=405)

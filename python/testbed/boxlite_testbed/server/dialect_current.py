"""The `current` dialect: the current BoxLite REST API as served by `boxlite serve` 0.11.x
(docs/dialects.md, current; contract box.openapi.17f08657.yaml).

Routing, auth, errors, shapes and the current-only handlers; the attach WebSocket and the tunnel
listener are ``dialect_current_streams.py``'s."""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from typing import Any, Optional
from urllib.parse import unquote

from aiohttp import web

from .core import ExecSession, log, sdk_error_code
from .dialect_current_streams import SIGNAL_WHITELIST, CurrentAttachRoutes, TunnelListener
from .dialect_rest import RestDialect
from .rest_checks import TYPE_BY_CODE, ApiError, PlainError, Validation, check_fields

STATUS_BY_CODE = {
    "invalid_argument": 400,
    "unsupported": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "session_reaped": 410,
    "already_exists": 409,
    "invalid_state": 409,
    "stopped": 409,
    "image_pull_failed": 422,
    "execution_failed": 422,
    "resource_exhausted": 429,
    "network_unavailable": 502,
    "upstream_unavailable": 503,
    "engine_unavailable": 503,
    "storage_error": 500,
    "database_error": 500,
    "metadata_error": 500,
    "config_error": 500,
    "internal": 500,
    "timeout": 504,
}

# serve 0.11.0's CreateBoxRequest, in the order its "unknown field" rejection lists them.
CREATE_SPEC = {
    "name": "str", "image": "str", "rootfs_path": "str", "cpus": "int", "memory_mib": "int",
    "disk_size_gb": "int", "working_dir": "str", "env": "dict", "entrypoint": "list", "cmd": "list",
    "user": "str", "tty": "bool", "advanced": "dict", "network": "dict", "auto_stop": "int",
    "auto_delete": "int", "auto_resume": "bool", "detach": "bool", "secrets": "list", "volumes": "list",
}


def network_json(net: Any) -> dict[str, Any]:
    """A box's network as serve 0.11 shows it: one {mode, allow_net} per direction."""
    out = {}
    for side, mode in (("outbound", "enabled"), ("inbound", "disabled")):
        d = getattr(net, side, None)
        out[side] = {"mode": getattr(d, "mode", mode), "allow_net": list(getattr(d, "allow_net", None) or [])}
    return out


def _is_json_ct(ct: str) -> bool:
    ct = ct.split(";", 1)[0].strip().lower()
    return ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))


class CurrentDialect(CurrentAttachRoutes, RestDialect):
    name = "current"
    nested_network = True

    def setup_routes(self) -> None:
        r = self.router.add
        r("GET", "/config", self.h_config, "getConfig", auth=False)
        r("GET", "/me", self.h_me, "getCurrentPrincipal")
        self.common_routes()
        r("DELETE", "/boxes/{box_id}/executions/{exec_id}", self.h_kill_execution, "killExecution")
        r("GET", "/boxes/{box_id}/executions/{exec_id}/attach", self.h_attach, "attachExecution")
        r("POST", "/boxes/{box_id}/network/tunnel", self.h_tunnel, "prepareTunnel")

    def dialect_is_b(self) -> bool:
        return True

    def __init__(self, *a, **kw):
        self.tunnels: dict[tuple[str, int], "TunnelListener"] = {}
        super().__init__(*a, **kw)

    # ---------------------------------------------------------------- routing
    def strip_prefix(self, raw: str) -> Optional[str]:
        if raw in ("/v1/config", "/v1/me"):
            return raw[3:]
        if self.cfg.prefix:
            pre = "/v1/" + self.cfg.prefix
            if not raw.startswith(pre + "/"):
                return None
            rest = raw[len(pre):]
        else:
            if not raw.startswith("/v1/"):
                return None
            rest = raw[3:]
        if rest in ("/config", "/me"):
            return None
        return rest

    def box_url(self, request: web.Request, box_id: str) -> str:
        base = "/v1/" + self.cfg.prefix if self.cfg.prefix else "/v1"
        return f"{self.cfg.base_path}{base}/boxes/{box_id}"

    def ready_info(self) -> dict[str, Any]:
        base = "/v1/" + self.cfg.prefix if self.cfg.prefix else "/v1"
        return {"box_base": base + "/boxes"}

    # ---------------------------------------------------------------- auth
    async def authenticate(self, request: web.Request, route) -> Optional[web.StreamResponse]:
        if self.cfg.auth == "none":
            return None
        h = request.headers.get("Authorization")
        tok = None
        if h is not None:
            for p in ("Bearer ", "bearer "):
                if h.startswith(p):
                    tok = h[len(p):]
        if tok is None or not hmac.compare_digest(tok.encode(), self.cfg.token.encode()):
            return self.error(401, "unauthenticated", "invalid or missing API key")
        if request.get("token_expired"):
            return self.error(401, "unauthenticated", "token expired")
        return None

    # ---------------------------------------------------------------- errors
    def decorate(self, request: web.Request, resp: web.StreamResponse) -> None:
        rid = request.headers.get("X-Request-Id") or request.get("request_id")
        if not rid:
            rid = str(uuid.uuid4())
            request["request_id"] = rid
        if not resp.prepared:
            resp.headers["X-Request-Id"] = rid

    def error(self, status: int, code: str, message: str, *, wrapped: bool = False) -> web.Response:
        # serve 0.11.0 sends no request_id in the body (only the X-Request-Id header).
        body = {"error": {"message": message, "type": TYPE_BY_CODE.get(code, "InternalError"),
                          "code": code}}
        return self.json(body, status=status)

    def injected_error(self, status: int) -> web.Response:
        code = {400: "invalid_argument", 404: "not_found", 409: "invalid_state", 429: "resource_exhausted",
                502: "upstream_unavailable", 503: "upstream_unavailable", 504: "timeout"}.get(status, "internal")
        return self.error(status, code, f"testbed injected fault ({status})")

    def sdk_error(self, exc: BaseException) -> web.Response:
        code = sdk_error_code(exc) or "internal"
        return self.error(STATUS_BY_CODE.get(code, 500), code, str(exc))

    def internal_exception(self, exc: BaseException) -> web.Response:
        return self.error(500, "internal", f"internal error: {exc}")

    def validation_error(self, v: Validation) -> web.Response:
        return self.plain(422, v.text)

    def missing_query(self, name: str) -> Exception:
        return PlainError(400, f"Failed to deserialize query string: missing field `{name}`")

    def box_not_found(self, box_id: str) -> ApiError:
        return ApiError(404, "not_found", f"box not found: {box_id}")

    def exec_not_found(self, exec_id: str) -> ApiError:
        return ApiError(404, "not_found", f"execution not found: {exec_id}")

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))

    def json(self, obj: Any, status: int = 200) -> web.Response:
        # axum's Json: `application/json` without a charset parameter.
        return web.Response(status=status, body=self.dumps(obj).encode(), content_type="application/json")

    async def json_body(self, request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()
        if optional and not raw:
            return None
        if not _is_json_ct(request.headers.get("Content-Type", "")):
            raise PlainError(415, "Expected request with `Content-Type: application/json`")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise PlainError(400, f"Failed to parse the request body as JSON: {exc}")

    # ---------------------------------------------------------------- shapes
    def create_spec(self) -> dict[str, str]:
        return CREATE_SPEC

    def extra_create_options(self, body: dict, kw: dict) -> None:
        for k in ("auto_stop", "auto_delete"):
            v = body.get(k)
            if v is not None and v < 0:
                raise ApiError(400, "invalid_argument", f"invalid argument: {k} must be >= 0")
        kw["auto_delete"] = int(body.get("auto_delete") or 0)

    def remember_create(self, box_id: str, body: dict) -> None:
        # Recorded and echoed, not enforced: the test server never stops an idle box.
        ap = body.get("auto_stop")
        self.backend.box_extra.setdefault(box_id, {})["auto_stop"] = 0 if ap is None else int(ap)

    def box_json(self, info: Any) -> dict[str, Any]:
        d = super().box_json(info)
        extra = self.backend.box_extra.get(info.id, {})
        d["auto_stop"] = extra.get("auto_stop", 0)
        d["auto_delete"] = int(getattr(info, "auto_delete", 0) or 0)
        ar = getattr(info, "auto_resume", True)
        d["auto_resume"] = True if ar is None else bool(ar)
        d["network"] = network_json(getattr(info, "network", None))
        ec = getattr(info.state, "exit_code", None)
        if ec is not None:
            d["exit_code"] = ec
        return d

    def list_json(self, request, infos) -> dict:
        # serve ignores status/pageSize/pageToken and sends no next_page_token.
        return {"boxes": [self.box_json(i) for i in infos]}

    def snapshot_json(self, s: Any) -> dict[str, Any]:
        d = super().snapshot_json(s)
        d.pop("guest_disk_bytes", None)  # serve's Snapshot has no guest_disk_bytes
        return d

    async def require_stopped(self, box_id: str, what: str) -> None:
        info = await self.backend.get_info(box_id)
        if info is not None and info.state.status in ("running", "stopping", "paused"):
            raise ApiError(409, "invalid_state", f"invalid state: box {box_id} must be stopped for {what}")

    def exec_kwargs(self, body: dict) -> dict:
        kw = {}
        if body.get("timeout_seconds") is not None:
            kw["timeout_secs"] = float(body["timeout_seconds"])
        if body.get("working_dir"):
            kw["cwd"] = body["working_dir"]
        if body.get("user"):
            kw["user"] = body["user"]  # /v1/config: exec_user_enabled
        return kw

    exec_spec = dict(RestDialect.exec_spec, stdin="str", user="str")

    def execution_json(self, s: ExecSession) -> dict:
        d: dict[str, Any] = {"execution_id": s.id, "status": "completed" if s.done else "running"}
        if s.done:
            d["exit_code"] = s.exit_code if s.exit_code is not None else -1
        return d

    async def session_for(self, box_id: str, exec_id: str) -> ExecSession:
        s = self.backend.find_exec(exec_id)
        if s is None:
            raise self.exec_not_found(exec_id)
        if box_id != s.box_id:
            info = await self.backend.get_info(box_id)
            if info is None or info.id != s.box_id:
                raise self.exec_not_found(exec_id)
        return s

    async def _get_execution(self, box_id, exec_id):
        s = await self.session_for(box_id, exec_id)
        return self.json(self.execution_json(s))

    async def config_json(self) -> dict:
        return {"capabilities": {"linux_capabilities_enabled": True, "snapshots_enabled": True,
                                 "clone_enabled": True, "export_enabled": True, "import_enabled": True,
                                 "exec_user_enabled": True}}

    # ---------------------------------------------------------------- handlers
    async def h_config(self, request):
        return self.json(await self.config_json())

    async def h_me(self, request):
        d: dict[str, Any] = {"sub": "local-anonymous", "principal_type": "service_account",
                             "email": "local@boxlite.local", "display_name": "boxlite testbed"}
        key = self.cfg.me_prefix_key
        if key in ("prefix", "both"):
            d["prefix"] = self.cfg.prefix
        if key in ("path_prefix", "both"):
            d["path_prefix"] = self.cfg.prefix
        d["scopes"] = ["box:read", "box:write", "box:exec", "box:delete", "image:read", "image:write",
                       "snapshot:read", "snapshot:write", "snapshot:delete", "me:read"]
        d["expires_at"] = None
        return self.json(d)

    async def h_signal(self, request, box_id, exec_id):
        return await self.run(request, self._signal(request, unquote(box_id), unquote(exec_id)))

    async def _signal(self, request, box_id, exec_id):
        body = await self.json_body(request)
        check_fields(body, {"signal": "int"}, forbid_extra=False, required=("signal",))
        s = await self.session_for(box_id, exec_id)
        sig = body["signal"]
        if sig not in SIGNAL_WHITELIST:
            raise ApiError(400, "invalid_argument",
                           f"invalid argument: signal {sig} is not allowed (allowed: HUP INT QUIT ABRT USR1 USR2 TERM WINCH)")
        if s.done:
            raise ApiError(409, "invalid_state", f"invalid state: execution {exec_id} is not running")
        try:
            await asyncio.wait_for(s.signal(sig), 10)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", "signal delivery timed out")
        return web.Response(status=204)

    async def _resize(self, request, box_id, exec_id):
        await self.session_for(box_id, exec_id)
        return await super()._resize(request, box_id, exec_id)

    async def h_kill_execution(self, request, box_id, exec_id):
        return await self.run(request, self._kill_execution(unquote(box_id), unquote(exec_id)))

    async def _kill_execution(self, box_id, exec_id):
        s = await self.session_for(box_id, exec_id)
        if not s.done:
            try:
                await s.kill()
            except Exception as exc:
                if sdk_error_code(exc) is None:
                    log.debug("kill failed: %r", exc)
            if not await s.wait_done(10):
                raise ApiError(504, "timeout", "timed out killing the execution; the reaper will retry")
        s.evicted = True
        self.backend.execs.pop(s.id, None)
        return web.Response(status=204)

    async def h_tunnel(self, request, box_id):
        return await self.run(request, self._tunnel(request, unquote(box_id)))

    async def _tunnel(self, request, box_id):
        try:
            port = int(request.query["port"])
        except (KeyError, ValueError):
            raise PlainError(400, "Failed to deserialize query string: missing or invalid field `port`")
        if not 1 <= port <= 65535:
            raise ApiError(400, "invalid_argument", "invalid argument: port must be between 1 and 65535")
        box = await self.box_or_404(box_id)
        key = (box.id, port)
        fwd = self.tunnels.get(key)
        if fwd is None:
            # Probe once (auto-starts the box like the SDK does); a tunnel with a
            # public URI (remote runtimes) is passed through as is.
            tunnel = await box.network.tunnel(port)
            uri = tunnel.uri() if hasattr(tunnel, "uri") else None
            if uri:
                return self.json({"uri": uri})
            fwd = TunnelListener(self.backend, box.id, port)
            await fwd.start()
            self.tunnels[key] = fwd
        return self.json({"uri": fwd.uri})

    async def close_tunnels(self, box_id: Optional[str] = None) -> None:
        for key in list(self.tunnels):
            if box_id is None or key[0] == box_id:
                await self.tunnels.pop(key).close()

    async def reset_boxes(self) -> int:
        await self.close_tunnels()
        return await super().reset_boxes()

    async def before_delete(self, box_id: str) -> None:
        info = await self.backend.get_info(box_id)
        if info is not None:
            await self.close_tunnels(info.id)

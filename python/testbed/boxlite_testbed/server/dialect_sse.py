"""The SSE-era dialects, `sse-ref` and `sse-serve`: the BoxLite REST API of that era as
served by the Python reference server (docs/dialects.md; contract
rest-sandbox-open-api.aed55982.yaml).

``--sse-framing lf`` switches the stream framing, JSON spacing and keep-alive
comments to those of the SSE-era ``boxlite serve`` (axum)."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Optional
from urllib.parse import unquote

from aiohttp import web

from .core import ExecSession
from .dialect_rest import RestDialect
from .rest_checks import ApiError, Validation, check_fields

# Ref's exception mapper: message prefix -> (status, type)
REF_PREFIXES = [
    ("box not found:", 404, "NotFoundError"),
    ("already exists:", 409, "AlreadyExistsError"),
    ("invalid state:", 409, "InvalidStateError"),
    ("stopped:", 409, "StoppedError"),
    ("invalid argument:", 400, "InvalidArgumentError"),
    ("configuration error:", 400, "ConfigError"),
    ("unsupported", 400, "UnsupportedError"),
    ("images error:", 422, "ImageError"),
    ("Execution error:", 422, "ExecutionError"),
    ("portal error", 502, "PortalError"),
    ("network error:", 502, "NetworkError"),
    ("rpc transport error", 502, "RpcTransportError"),
    ("grpc transport error", 502, "RpcTransportError"),
    ("storage error:", 500, "StorageError"),
    ("internal error:", 500, "InternalError"),
    ("engine reported an error:", 500, "EngineError"),
    ("database error:", 500, "DatabaseError"),
    ("metadata error:", 500, "MetadataError"),
]

TYPE_BY_STATUS = {400: "InvalidArgumentError", 401: "UnauthorizedError", 404: "NotFoundError",
                  409: "InvalidStateError", 422: "ExecutionError", 500: "InternalError",
                  502: "NetworkError", 503: "EngineError"}

TYPE_BY_SNAKE = {"not_found": "NotFoundError", "invalid_state": "InvalidStateError",
                 "invalid_argument": "InvalidArgumentError", "unauthenticated": "UnauthorizedError",
                 "internal": "InternalError", "already_exists": "AlreadyExistsError",
                 "unsupported": "UnsupportedError", "stopped": "StoppedError"}

CREATE_SPEC = {
    "name": "str", "image": "str", "rootfs_path": "str", "cpus": "int", "memory_mib": "int",
    "disk_size_gb": "int", "working_dir": "str", "env": "dict", "entrypoint": "list", "cmd": "list",
    "user": "str", "volumes": "list", "ports": "list", "network": "dict", "secrets": "list",
    "auto_remove": "bool", "detach": "bool", "security": "str",
}

SANDBOX_CONFIG = {
    "defaults": {"cpus": 2, "memory_mib": 512, "disk_size_gb": 10, "security_preset": "standard",
                 "auto_remove": True},
    "overrides": {},
    "capabilities": {
        "max_cpus": 32, "max_memory_mib": 16384, "max_disk_size_gb": 100, "max_boxes_per_prefix": 50,
        "max_concurrent_executions": 10, "file_transfer_max_bytes": 1073741824,
        "exec_timeout_max_seconds": 3600, "tty_enabled": True, "streaming_enabled": True,
        "snapshots_enabled": True, "clone_enabled": True, "export_enabled": True, "import_enabled": True,
        "supported_security_presets": ["development", "standard", "maximum"],
        "idempotency_key_lifetime": "PT24H",
    },
}

SERVE_CONFIG = {"capabilities": {"snapshots_enabled": True, "clone_enabled": True, "export_enabled": True,
                                 "import_enabled": True}}


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _b64url_dec(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class SseDialect(RestDialect):
    name = "sse"

    def __init__(self, *a, **kw):
        self.jwt_secret = secrets.token_bytes(32)
        super().__init__(*a, **kw)

    @property
    def serve_style(self) -> bool:
        return self.cfg.sse_framing == "lf"

    def setup_routes(self) -> None:
        r = self.router.add
        r("GET", "/config", self.h_config, "getConfig", auth=False)
        r("POST", "/oauth/tokens", self.h_token, "getToken", auth=False)
        self.common_routes()
        r("GET", "/boxes/{box_id}/executions/{exec_id}/output", self.h_output, "streamExecutionOutput")
        r("POST", "/boxes/{box_id}/executions/{exec_id}/input", self.h_input, "sendExecutionInput")

    # ---------------------------------------------------------------- routing
    def strip_prefix(self, raw: str) -> Optional[str]:
        if raw in ("/v1/config", "/v1/oauth/tokens"):
            return raw[3:]
        if not raw.startswith("/v1/"):
            return None
        rest = raw[4:]
        seg, sep, tail = rest.partition("/")
        if not sep or not seg:
            return None
        if self.cfg.prefix is not None and unquote(seg) != self.cfg.prefix:
            return None
        sub = "/" + tail
        if sub in ("/config", "/oauth/tokens"):
            return None
        return sub

    def _prefix_of(self, request: web.Request) -> str:
        rest = request.get("raw_v1", request.rel_url.raw_path)[4:]
        return rest.partition("/")[0]

    def box_url(self, request: web.Request, box_id: str) -> str:
        return f"{self.cfg.base_path}/v1/{self._prefix_of(request)}/boxes/{box_id}"

    def ready_info(self) -> dict[str, Any]:
        p = self.cfg.prefix or "default"
        return {"box_base": f"/v1/{p}/boxes", "token_url": "/v1/oauth/tokens"}

    def not_found(self, request):
        if self.cfg.sse_flavor == "serve":
            return web.Response(status=404)  # axum: empty body
        return web.json_response({"detail": "Not Found"}, status=404)

    def method_not_allowed(self, request):
        if self.cfg.sse_flavor == "serve":
            return web.Response(status=405)
        return web.json_response({"detail": "Method Not Allowed"}, status=405)

    # ---------------------------------------------------------------- errors
    def _model(self, status: int, typ: str, message: str) -> dict:
        return {"message": message, "type": typ, "code": status}

    def error(self, status: int, code: str, message: str, *, wrapped: bool = True) -> web.Response:
        typ = TYPE_BY_SNAKE.get(code) or TYPE_BY_STATUS.get(status, "InternalError")
        model = self._model(status, typ, message)
        body = {"detail": {"error": model}} if wrapped else {"error": model}
        return web.Response(status=status, text=self.dumps(body), content_type="application/json")

    def injected_error(self, status: int) -> web.Response:
        return self.error(status, "", f"testbed injected fault ({status})", wrapped=False)

    def sdk_error(self, exc: BaseException) -> web.Response:
        msg = str(exc)
        status, typ = 500, "InternalError"
        for p, st, t in REF_PREFIXES:
            if msg.startswith(p):
                status, typ = st, t
                break
        body = {"error": self._model(status, typ, msg)}
        return web.Response(status=status, text=self.dumps(body), content_type="application/json")

    def validation_error(self, v: Validation) -> web.Response:
        return web.Response(status=422, text=self.dumps({"detail": v.items}), content_type="application/json")

    def missing_query(self, name: str) -> Exception:
        return Validation([{"type": "missing", "loc": ["query", name], "msg": "Field required", "input": None}],
                          f"missing query parameter {name}")

    def dumps(self, obj: Any) -> str:
        if self.serve_style:
            return json.dumps(obj, separators=(",", ":"))
        return json.dumps(obj)

    async def json_body(self, request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()
        if optional and not raw:
            return None
        if not raw:
            raise Validation([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}],
                             "missing body")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Validation([{"type": "json_invalid", "loc": ["body", getattr(exc, "pos", 0)],
                               "msg": "JSON decode error", "input": {}, "ctx": {"error": str(exc)}}],
                             str(exc))

    # ---------------------------------------------------------------- auth
    def _issue_jwt(self, sub: str, scope: str) -> str:
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {"sub": sub, "iat": now, "exp": now + int(self.cfg.token_lifetime), "scope": scope,
                   "epoch": self.state.token_epoch}
        signing = _b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
            _b64url(json.dumps(payload, separators=(",", ":")).encode())
        sig = hmac.new(self.jwt_secret, signing.encode(), hashlib.sha256).digest()
        return signing + "." + _b64url(sig)

    def _check_jwt(self, token: str) -> Optional[str]:
        """None if valid, else "invalid token" / "token expired"."""
        try:
            h, p, sig = token.split(".")
            want = hmac.new(self.jwt_secret, (h + "." + p).encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(want, _b64url_dec(sig)):
                return "invalid token"
            payload = json.loads(_b64url_dec(p))
        except Exception:
            return "invalid token"
        if int(payload.get("exp", 0)) <= time.time() or int(payload.get("epoch", 0)) < self.state.token_epoch:
            return "token expired"
        return None

    def unauthorized(self, message: str) -> web.Response:
        resp = self.error(401, "unauthenticated", message, wrapped=True)
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    async def authenticate(self, request: web.Request, route) -> Optional[web.StreamResponse]:
        if self.cfg.auth == "none":
            return None
        h = request.headers.get("Authorization")
        if not h:
            return self.unauthorized("missing bearer token")
        scheme, _, tok = h.partition(" ")
        if scheme.lower() != "bearer" or not tok:
            return self.unauthorized("invalid token")
        if self.cfg.auth == "token":
            if not hmac.compare_digest(tok.encode(), self.cfg.token.encode()):
                return self.unauthorized("invalid token")
            if request.get("token_expired") or self.state.token_epoch > 0:
                return self.unauthorized("token expired")
            return None
        problem = self._check_jwt(tok)
        if problem is None and request.get("token_expired"):
            problem = "token expired"
        if problem:
            return self.unauthorized(problem)
        return None

    async def h_token(self, request: web.Request) -> web.StreamResponse:
        ct = request.content_type
        if ct not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return self.error(400, "invalid_argument",
                              "invalid argument: token requests must be application/x-www-form-urlencoded")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return self.error(400, "invalid_argument",
                              f"invalid argument: unsupported grant_type {form.get('grant_type')!r}")
        scope = form.get("scope") or "boxes:read boxes:write boxes:exec"
        if self.cfg.auth == "client-credentials":
            cid, csec = form.get("client_id", ""), form.get("client_secret", "")
            if not (hmac.compare_digest(str(cid).encode(), self.cfg.client_id.encode())
                    and hmac.compare_digest(str(csec).encode(), self.cfg.client_secret.encode())):
                return self.unauthorized("invalid client credentials")
            tok = self._issue_jwt(str(cid), str(scope))
            return self.json({"access_token": tok, "token_type": "bearer",
                              "expires_in": int(self.cfg.token_lifetime), "scope": str(scope)})
        if self.cfg.auth == "token":
            return self.json({"access_token": self.cfg.token, "token_type": "bearer",
                              "expires_in": int(self.cfg.token_lifetime), "scope": str(scope)})
        # auth none: serve's stub
        return self.json({"access_token": "boxlite-local-token", "token_type": "bearer",
                          "expires_in": 86400, "scope": str(scope)})

    async def h_config(self, request):
        return self.json(SERVE_CONFIG if self.cfg.sse_flavor == "serve" else SANDBOX_CONFIG)

    # ---------------------------------------------------------------- shapes
    def create_spec(self) -> dict[str, str]:
        return CREATE_SPEC

    def extra_create_options(self, body: dict, kw: dict) -> None:
        ar = body.get("auto_remove")
        kw["auto_remove"] = True if ar is None else bool(ar)  # Ref's default: remove on stop

    def bad_options(self, exc: BaseException) -> None:
        return None  # Ref does not catch it: plain-text 500 "Internal Server Error"

    def list_json(self, request, infos) -> dict:
        status = request.query.get("status")
        boxes = [self.box_json(i) for i in infos]
        if status:
            boxes = [b for b in boxes if b["status"] == status]
        return {"boxes": boxes, "next_page_token": None}

    def exec_kwargs(self, body: dict) -> dict:
        return {}  # Ref forwards only command, args, env, tty

    def execution_json(self, s: ExecSession) -> dict:
        if self.cfg.sse_flavor == "serve":
            # SSE-era serve: always "running", never an exit code (the exit code
            # exists only as the SSE exit event)
            return {"execution_id": s.id, "status": "running"}
        if s.killed:
            status = "killed"
        elif s.done:
            status = "completed"
        else:
            status = "running"
        code = None if (s.killed or not s.done) else s.exit_code
        return {"execution_id": s.id, "status": status, "exit_code": code,
                "started_at": s.started_at.isoformat(), "duration_ms": s.duration_ms,
                "error_message": s.error_message}

    # ---------------------------------------------------------------- exec I/O
    async def h_signal(self, request, box_id, exec_id):
        return await self.run(request, self._signal(request, unquote(box_id), unquote(exec_id)))

    async def _signal(self, request, box_id, exec_id):
        body = await self.json_body(request)
        check_fields(body, {"signal": "int"}, forbid_extra=False, required=("signal",))
        s = self.session_or_404(box_id, exec_id)
        if s.done:
            raise ApiError(409, "invalid_state", f"invalid state: execution {exec_id} is not running")
        s.killed = True  # Ref marks the execution killed before wait() returns...
        await s.kill()  # ...and always sends SIGKILL, whatever the requested signal
        return web.Response(status=204)

    async def h_input(self, request, box_id, exec_id):
        return await self.run(request, self._input(request, unquote(box_id), unquote(exec_id)))

    async def _input(self, request, box_id, exec_id):
        s = self.session_or_404(box_id, exec_id)
        data = await request.read()
        close = (request.headers.get("X-Close-Stdin", "").strip().lower() == "true")
        if s.done or s.stdin is None or s.stdin_closed:
            raise ApiError(409, "invalid_state", f"invalid state: stdin is not available for execution {exec_id}")
        await s.send_stdin(data, close=close)
        return web.Response(status=204)

    def _frame(self, event: str, data: str) -> bytes:
        nl = "\n" if self.serve_style else "\r\n"
        return f"event: {event}{nl}data: {data}{nl}{nl}".encode("utf-8")

    def _keepalive(self) -> bytes:
        if self.serve_style:
            return b":\n\n"
        return f": ping - {_dt.datetime.now(_dt.timezone.utc).isoformat(sep=' ')}\r\n\r\n".encode()

    def _encode(self, s: ExecSession, ev) -> bytes:
        if ev.kind == "exit":
            code = None if s.killed else ev.data.get("exit_code")
            dur = s.duration_ms if s.duration_ms is not None else 0
            if self.serve_style:
                code = -1 if code is None else code
                d = json.dumps({"duration_ms": dur, "exit_code": code}, separators=(",", ":"))
            else:
                d = json.dumps({"exit_code": code, "duration_ms": dur})
            return self._frame("exit", d)
        b64 = base64.b64encode(ev.data.encode("utf-8")).decode("ascii")
        return self._frame(ev.kind, self.dumps({"data": b64}))

    async def h_output(self, request, box_id, exec_id):
        try:
            s = self.session_or_404(unquote(box_id), unquote(exec_id))
        except ApiError as e:
            return self.error(e.status, e.code, e.message, wrapped=True)
        if self.serve_style:
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        else:
            headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                       "Connection": "keep-alive", "X-Accel-Buffering": "no"}
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        if self.cfg.sse_flavor == "serve":
            # serve evicts the execution from its table when /output is opened
            s.evicted = True
        drop_after = request.get("drop_after_events")
        sent = 0
        try:
            while True:
                while s.take_pos < len(s.events):
                    ev = s.events[s.take_pos]
                    s.take_pos += 1
                    if drop_after is not None and sent >= drop_after:
                        if request.transport is not None:
                            request.transport.close()
                        return resp
                    await resp.write(self._encode(s, ev))
                    sent += 1
                    if ev.kind == "exit":
                        await resp.write_eof()
                        return resp
                if s.closed and s.take_pos >= len(s.events):
                    await resp.write_eof()  # another reader took the exit event
                    return resp
                got = await s.wait_for_events(s.take_pos, self.cfg.keepalive)
                if not got:
                    await resp.write(self._keepalive())
        except (ConnectionResetError, ConnectionError):
            return resp

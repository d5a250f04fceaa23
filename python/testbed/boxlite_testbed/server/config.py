"""Server configuration (filled from the command line or by tests)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

DIALECTS = ("sse", "current", "boxrun")
AUTH_MODES = ("token", "client-credentials", "none")


@dataclasses.dataclass
class Config:
    dialect: str = "current"
    auth: str = "none"
    # Static bearer token (auth=token). In the SSE-era dialects the token endpoint
    # hands this token out for any credentials.
    token: str = "testbed-token"
    # OAuth2 client credentials (SSE-era dialects, auth=client-credentials).
    client_id: str = "test-client"
    client_secret: str = "test-secret"
    token_lifetime: int = 3600
    # Tenant prefix. A: None = any prefix accepted (Ref); a value = only that
    # prefix (serve accepted only "default"). B: None = no segment
    # (boxlite serve); a value = `/v1/<prefix>/boxes/...` (may contain "/").
    prefix: Optional[str] = None
    # B: key used by GET /v1/me for the prefix: "prefix" (what real servers
    # send), "path_prefix" (the contract) or "both".
    me_prefix_key: str = "prefix"
    home: Optional[str] = None
    # Deployment base path before /v1 (the cloud uses "/api": /api/v1/...).
    base_path: str = ""
    faults: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # A: SSE framing. "crlf" = Ref (sse-starlette, CRLF, Python JSON spacing,
    # "ping - <ts>" comments); "lf" = serve (axum, LF, compact JSON, ":").
    sse_framing: str = "crlf"
    # A: which SSE-era program to imitate: "ref" (Python reference server) or
    # "serve" (the SSE-era boxlite serve: LF framing unless --sse-framing says
    # otherwise, four-flag /config, opening /output evicts the execution).
    sse_flavor: str = "ref"
    # Keep-alive interval (SSE comments in A and C, WebSocket pings in B).
    keepalive: float = 15.0
    # Delay added before the SDK start call in start routes and BoxRun create.
    boot_delay: float = 0.0
    # Upload placement: "ref" (contents of the archive placed at `path`) or
    # "serve" (archive unpacked into a temp dir "extracted" which is copied
    # with default docker-cp rules). Default: A -> ref, B -> serve.
    upload_style: Optional[str] = None
    # Request body cap for uploads (B: axum's 2 MiB default; C: 2 MiB).
    max_upload_bytes: Optional[int] = None
    # B: per-stream attach backlog cap (serve: 256 KiB).
    backlog_bytes: int = 256 * 1024
    # Reap orphaned executions (current); 0 disables.
    log_limit: int = 10000

    def effective_upload_style(self) -> str:
        if self.upload_style:
            return self.upload_style
        return "ref" if self.dialect == "sse" else "serve"

    def effective_max_upload(self) -> Optional[int]:
        if self.max_upload_bytes is not None:
            return self.max_upload_bytes if self.max_upload_bytes > 0 else None
        if self.dialect in ("current", "boxrun"):
            return 2 * 1024 * 1024
        return None

    def validate(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}")
        if self.auth not in AUTH_MODES:
            raise ValueError(f"unknown auth mode {self.auth!r}")
        if self.auth == "client-credentials" and self.dialect != "sse":
            raise ValueError("--auth client-credentials exists only in the SSE-era dialects (sse-ref, sse-serve)")
        if self.dialect == "boxrun" and self.prefix:
            raise ValueError("the boxrun dialect has no tenant prefix")
        if self.sse_flavor not in ("ref", "serve"):
            raise ValueError("--sse-flavor must be ref or serve")
        if self.sse_framing not in ("crlf", "lf"):
            raise ValueError("--sse-framing must be crlf or lf")
        if self.me_prefix_key not in ("prefix", "path_prefix", "both"):
            raise ValueError("--me-prefix-key must be prefix, path_prefix or both")
        bp = (self.base_path or "").strip()
        self.base_path = ("/" + bp.strip("/")) if bp.strip("/") else ""
        if self.prefix is not None:
            p = self.prefix.strip("/")
            if not p:
                self.prefix = None
            else:
                self.prefix = p

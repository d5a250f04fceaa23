"""``python -m boxlite_testbed.server``: run the test server in the foreground.

Prints one line ``BOXLITE_TESTBED_READY {json}`` on stdout once listening and
runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import sys

from .config import AUTH_MODES, DIALECTS, Config

# CLI dialect names: the code's (`sse-ref`, `sse-serve`, `current`, `boxrun`) plus the alias `sse`.
SSE_DIALECTS = {"sse-ref": "ref", "sse-serve": "serve"}
CLI_DIALECTS = ("sse-ref", "sse-serve", *DIALECTS)
from .faults import parse_faults_arg
from .main import run


def parse_args(argv=None) -> Config:
    ap = argparse.ArgumentParser(prog="python -m boxlite_testbed.server",
                                 description="Loopback BoxLite/BoxRun test server over the boxlite SDK API")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (non-loopback refused)")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free one)")
    ap.add_argument("--dialect", choices=CLI_DIALECTS, default="current",
                    help="sse-ref | sse-serve | current | boxrun, the names of docs/dialects.md "
                         "(sse = sse-ref, or sse-serve with --sse-flavor serve)")
    ap.add_argument("--auth", choices=AUTH_MODES, default=None,
                    help="token | client-credentials (sse only) | none; default: none "
                         "(client-credentials for sse)")
    ap.add_argument("--token", default="testbed-token", help="bearer token for --auth token")
    ap.add_argument("--client-id", default="test-client")
    ap.add_argument("--client-secret", default="test-secret")
    ap.add_argument("--token-lifetime", type=int, default=3600, help="seconds (sse token endpoint)")
    ap.add_argument("--prefix", default=None,
                    help="A: the only accepted tenant prefix (default: any); "
                         "B: path_prefix served by /v1/me and required in box URLs (default: none)")
    ap.add_argument("--me-prefix-key", choices=("prefix", "path_prefix", "both"), default="prefix",
                    help="B: key /v1/me uses for the prefix (real servers send 'prefix')")
    ap.add_argument("--base-path", default="",
                    help="deployment base path before /v1 (e.g. /api like the cloud); default none")
    ap.add_argument("--home", default=None, help="boxlite home directory (default: a temporary one)")
    ap.add_argument("--faults", default=None, help="fault rules as JSON (object or list) or @file")
    ap.add_argument("--sse-flavor", choices=("ref", "serve"), default=None,
                    help="with --dialect sse: imitate the reference server (ref, default) or the SSE-era "
                         "boxlite serve; --dialect sse-ref / sse-serve say the same")
    ap.add_argument("--sse-framing", choices=("crlf", "lf"), default=None,
                    help="A: SSE line ends (default: crlf for ref, lf for serve)")
    ap.add_argument("--keepalive", type=float, default=15.0,
                    help="seconds between SSE keep-alive comments / WebSocket pings")
    ap.add_argument("--boot-delay", type=float, default=0.0,
                    help="seconds to wait before starting a box (start routes, BoxRun create)")
    ap.add_argument("--upload-style", choices=("ref", "serve"), default=None,
                    help="tar upload placement (default: ref for sse, serve for current)")
    ap.add_argument("--max-upload-bytes", type=int, default=None,
                    help="upload body cap (default 2 MiB for current/boxrun, none for sse; 0 = none)")
    ap.add_argument("--log-level", default="WARNING")
    ns = ap.parse_args(argv)
    # The dialect names of the code and docs; `sse` plus `--sse-flavor` stays accepted.
    if ns.dialect in SSE_DIALECTS:
        flavor = SSE_DIALECTS[ns.dialect]
        if ns.sse_flavor not in (None, flavor):
            ap.error(f"--dialect {ns.dialect} contradicts --sse-flavor {ns.sse_flavor}")
        ns.dialect, ns.sse_flavor = "sse", flavor
    ns.sse_flavor = ns.sse_flavor or "ref"
    auth = ns.auth or ("client-credentials" if ns.dialect == "sse" else "none")
    framing = ns.sse_framing or ("lf" if ns.sse_flavor == "serve" else "crlf")
    cfg = Config(dialect=ns.dialect, auth=auth, token=ns.token, client_id=ns.client_id,
                 client_secret=ns.client_secret, token_lifetime=ns.token_lifetime, prefix=ns.prefix,
                 me_prefix_key=ns.me_prefix_key, home=ns.home, base_path=ns.base_path, faults=parse_faults_arg(ns.faults),
                 sse_framing=framing, sse_flavor=ns.sse_flavor, keepalive=ns.keepalive,
                 boot_delay=ns.boot_delay, upload_style=ns.upload_style,
                 max_upload_bytes=ns.max_upload_bytes)
    cfg.validate()
    cfg.host = ns.host  # type: ignore[attr-defined]
    cfg.port = ns.port  # type: ignore[attr-defined]
    cfg.log_level = ns.log_level  # type: ignore[attr-defined]
    return cfg


def main(argv=None) -> int:
    try:
        cfg = parse_args(argv)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(cfg, cfg.host, cfg.port, log_level=cfg.log_level)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())

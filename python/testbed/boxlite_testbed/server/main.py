"""Process entry: bind loopback, print the ready line, serve until a signal."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Optional

from aiohttp import web

from .app import build_app
from .config import Config
from .core import Backend

READY_MARK = "BOXLITE_TESTBED_READY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(cfg: Config, host: str, port: int, stop: Optional[asyncio.Event] = None,
                ready_cb=None) -> None:
    if not is_loopback(host):
        raise ValueError(f"refusing to bind non-loopback address {host!r}")
    tmp_home = None
    home = cfg.home
    if not home:
        tmp_home = tempfile.mkdtemp(prefix="boxlite-testbed-home-")
        home = tmp_home
    os.makedirs(home, exist_ok=True)
    backend = Backend(home)
    backend.open()
    app = build_app(cfg, backend)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{bound}"
    info = {
        "url": url,
        "host": host,
        "port": bound,
        "dialect": cfg.dialect,
        "auth": cfg.auth,
        "token": cfg.token if cfg.auth == "token" else None,
        "client_id": cfg.client_id if cfg.auth == "client-credentials" else None,
        "client_secret": cfg.client_secret if cfg.auth == "client-credentials" else None,
        "prefix": cfg.prefix,
        "home": home,
        "python": sys.executable,
        "pid": os.getpid(),
        "control": url + "/__testbed",
        "sdk": getattr(backend.boxlite, "__file__", None),
        "sdk_version": getattr(backend.boxlite, "__version__", None),
    }
    info["base_path"] = cfg.base_path
    info.update(app["dialect"].ready_info())
    if cfg.base_path:
        for k in ("box_base", "token_url"):
            if k in info:
                info[k] = cfg.base_path + info[k]
    stop = stop or asyncio.Event()
    try:
        if ready_cb is not None:
            ready_cb(info)
        await stop.wait()
    finally:
        await backend.kill_all()  # ends the streams, so open handlers finish promptly
        await runner.cleanup()
        await backend.close()
        if tmp_home:
            shutil.rmtree(tmp_home, ignore_errors=True)


def run(cfg: Config, host: str, port: int, log_level: str = "WARNING") -> int:
    logging.basicConfig(level=getattr(logging, str(log_level).upper(), logging.WARNING),
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import faulthandler
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # stack dump on demand
    except Exception:
        pass
    if not is_loopback(host):
        print(f"error: refusing to bind non-loopback address {host!r}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(info):
            sys.stdout.write(READY_MARK + " " + json.dumps(info) + "\n")
            sys.stdout.flush()

        await serve(cfg, host, port, stop, ready)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # e.g. port in use, home locked by another runtime
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0

"""The current dialect's streams: the attach WebSocket of an execution (``CurrentAttachRoutes``,
a base of ``dialect_current.CurrentDialect``) and the loopback listener that stands in for a
box's public tunnel; see docs/dialects.md (current).
"""

from __future__ import annotations

import asyncio
import json
from typing import Optional
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from .core import ExecSession, log
from .rest_checks import ApiError

SIGNAL_WHITELIST = {1, 2, 3, 6, 10, 12, 15, 28}


class CurrentAttachRoutes:
    """The attach route of ``CurrentDialect`` and its reader and writer halves."""

    # ---------------------------------------------------------------- attach
    async def h_attach(self, request, box_id, exec_id):
        box_id, exec_id = unquote(box_id), unquote(exec_id)
        try:
            s = await self.session_for(box_id, exec_id)
        except ApiError as e:
            return self.error(e.status, e.code, e.message)
        if s.attached:
            return self.error(409, "invalid_state",
                              f"invalid state: execution {exec_id} already has an attached client")
        ws = web.WebSocketResponse(autoping=True, heartbeat=self.cfg.keepalive, max_msg_size=64 * 1024 * 1024)
        if not ws.can_prepare(request).ok:
            return self.error(400, "invalid_argument", "invalid argument: WebSocket upgrade required")
        s.attached = True
        self.decorate(request, ws)  # X-Request-Id on the 101 as well
        try:
            await ws.prepare(request)
            await self._attach_session(request, ws, s)
        finally:
            s.attached = False
        return ws

    def _backlog_start(self, s: ExecSession) -> tuple[set[int], int]:
        """Seqs of retained backlog events (per-stream byte cap) and the live start."""
        n = len(s.events)
        keep: set[int] = set()
        for stream in ("stdout", "stderr"):
            total = 0
            for ev in reversed(s.events[:n]):
                if ev.kind != stream:
                    continue
                size = len(ev.data.encode("utf-8"))
                if total and total + size > self.cfg.backlog_bytes:
                    break
                keep.add(ev.seq)
                total += size
        return keep, n

    async def _attach_session(self, request, ws: web.WebSocketResponse, s: ExecSession) -> None:
        drop_after = request.get("drop_after_events")
        sent = 0

        async def send_event(ev) -> bool:
            nonlocal sent
            if drop_after is not None and sent >= drop_after:
                if request.transport is not None:
                    request.transport.close()
                return False
            if ev.kind == "exit":
                code = ev.data.get("exit_code")
                await ws.send_str(json.dumps({"type": "exit", "exit_code": -1 if code is None else int(code)},
                                             separators=(",", ":")))
            else:
                ch = b"\x01" if ev.kind == "stdout" or s.tty else b"\x02"
                await ws.send_bytes(ch + ev.data.encode("utf-8"))
            sent += 1
            return True

        reader = asyncio.ensure_future(self._attach_reader(ws, s))

        async def deliver(ev) -> bool:
            """Sends one event; False once the attach is over (the exit sent, or the send failed)."""
            if not await send_event(ev):
                return False
            if ev.kind == "exit":
                await self._stop_reader(reader)
                await self._close_without_code(request, ws)
                return False
            return True

        try:
            keep, pos = self._backlog_start(s)
            for ev in s.events[:pos]:
                if (ev.kind == "exit" or ev.seq in keep) and not await deliver(ev):
                    return
            while True:
                if reader.done():
                    return  # client went away; the execution keeps running
                await s.wait_for_events(pos, 0.5)
                while pos < len(s.events):
                    ev = s.events[pos]
                    pos += 1
                    if not await deliver(ev):
                        return
                if ws.closed:
                    return
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            await self._stop_reader(reader)

    async def _stop_reader(self, reader: asyncio.Future) -> None:
        if not reader.done():
            reader.cancel()
            try:
                await reader
            except BaseException:
                pass

    async def _close_without_code(self, request, ws: web.WebSocketResponse) -> None:
        """serve sends a close frame without a status code (clients see 1005)."""
        writer = getattr(ws, "_writer", None)
        try:
            if writer is not None:
                await writer.send_frame(b"", WSMsgType.CLOSE)
                # give the client a moment to answer, then close the socket
                try:
                    await asyncio.wait_for(ws.receive(), 2.0)
                except Exception:
                    pass
                tr = request.transport
                if tr is not None:
                    tr.close()
                ws._closed = True  # type: ignore[attr-defined]
            else:  # pragma: no cover
                await ws.close()
        except Exception:
            pass

    async def _attach_reader(self, ws: web.WebSocketResponse, s: ExecSession) -> None:
        async def err(msg: str) -> None:
            try:
                await ws.send_str(json.dumps({"type": "error", "message": msg}, separators=(",", ":")))
            except Exception:
                pass

        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                try:
                    await s.send_stdin(msg.data)
                except Exception as exc:
                    await err(f"stdin write failed: {exc}")
            elif msg.type == WSMsgType.TEXT:
                try:
                    ctl = json.loads(msg.data)
                    if not isinstance(ctl, dict):
                        raise ValueError("not an object")
                except ValueError:
                    await err("malformed control frame")
                    continue
                t = ctl.get("type")
                try:
                    if t == "resize":
                        cols, rows = ctl.get("cols"), ctl.get("rows")
                        if not (isinstance(cols, int) and isinstance(rows, int) and cols > 0 and rows > 0):
                            await err("resize requires positive integer cols and rows")
                        elif not s.tty:
                            await err("resize is only supported for tty executions")
                        else:
                            await s.resize(cols, rows)
                    elif t == "signal":
                        sig = ctl.get("sig")
                        if not isinstance(sig, int) or sig not in SIGNAL_WHITELIST:
                            await err(f"signal {sig} is not allowed")
                        else:
                            await s.signal(sig)
                    elif t == "stdin_eof":
                        if not s.stdin_closed:
                            await s.send_stdin(b"", close=True)
                    else:
                        await err(f"unknown control frame type: {t}")
                except Exception as exc:
                    await err(str(exc))
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return


class TunnelListener:
    """Loopback listener standing in for a public tunnel URI.

    Each accepted connection opens ``box.network.tunnel(port).connect()``. A
    client may speak HTTP to the URI directly, or send ``CONNECT host:port``
    first (answered ``200 Connection Established``) and then raw TCP, as the
    contract describes for ``POST …/network/tunnel``."""

    def __init__(self, backend, box_id: str, port: int):
        self.backend = backend
        self.box_id = box_id
        self.port = port
        self.server: Optional[asyncio.AbstractServer] = None
        self.uri = ""
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.uri = f"http://{host}:{port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.tasks):
            t.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        conn = None
        try:
            first = await reader.read(65536)
            if first.startswith(b"CONNECT "):
                while b"\r\n\r\n" not in first:
                    more = await reader.read(65536)
                    if not more:
                        return
                    first += more
                head, _, first = first.partition(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            box = await self.backend.get_box(self.box_id)
            if box is None:
                return
            tunnel = await box.network.tunnel(self.port)
            try:
                conn = await tunnel.connect()
            except Exception:
                return
            if first:
                await conn.write(first)

            async def up():
                while True:
                    data = await reader.read(65536)
                    if not data:
                        await conn.shutdown_write()
                        return
                    await conn.write(data)

            async def down():
                while True:
                    data = await conn.read(65536)
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(bytes(data))
                    await writer.drain()

            await asyncio.gather(up(), down())
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        except Exception as exc:  # pragma: no cover
            log.debug("tunnel connection failed: %r", exc)
        finally:
            if conn is not None:
                try:
                    await conn.close()
                except Exception:
                    pass
            writer.close()
            if task is not None:
                self.tasks.discard(task)

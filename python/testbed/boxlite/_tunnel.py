"""Box tunnels.  Boxes share the host network, so a tunnel to guest port P is
a TCP connection to ``127.0.0.1:P``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from . import errors
from ._engine import submit
from ._conv import conv_instance, conv_int
from ._types import SocketAddress

GUEST_HOST = "127.0.0.1"


def _no_ctor(name: str):
    def __init__(self, *a: Any, **k: Any) -> None:
        raise TypeError(f"cannot create 'builtins.{name}' instances")
    return __init__


class BoxConnection:
    __init__ = _no_ctor("BoxConnection")

    @classmethod
    def _new(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "BoxConnection":
        c = cls.__new__(cls)
        c._reader, c._writer = reader, writer
        return c

    def read(self, max_bytes):
        n = conv_int("max_bytes", max_bytes, 0, 2**63 - 1, optional=False)
        reader = self._reader

        async def run():
            if n == 0:
                raise errors.InvalidArgumentError.make("max_bytes must be non-zero")
            return await reader.read(n)
        return submit(run)

    def write(self, data):
        if isinstance(data, str):
            raise TypeError("argument 'data': Can't extract `str` to `Vec`")
        payload = bytes(data)
        writer = self._writer

        async def run():
            writer.write(payload)
            await writer.drain()
            return ()
        return submit(run)

    def shutdown_write(self):
        writer = self._writer

        async def run():
            if writer.can_write_eof():
                writer.write_eof()
            return ()
        return submit(run)

    def close(self):
        writer = self._writer

        async def run():
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return ()
        return submit(run)


class TunnelForwarder:
    __init__ = _no_ctor("TunnelForwarder")

    @classmethod
    def _new(cls, server: asyncio.AbstractServer, addr: str) -> "TunnelForwarder":
        f = cls.__new__(cls)
        f._server, f._addr = server, addr
        return f

    def local_addr(self) -> str:
        return self._addr

    def wait(self):
        server = self._server

        async def run():
            await server.wait_closed()
            return ()
        return submit(run)

    def close(self):
        server = self._server

        async def run():
            server.close()
            return ()
        return submit(run)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.CancelledError):
        writer.close()


async def relay_to_guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    """Relays one client connection to the guest's `port` (published ports and tunnels)."""
    try:
        gr, gw = await asyncio.open_connection(GUEST_HOST, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, gw), _pipe(gr, writer))
    writer.close()
    gw.close()


class BoxTunnel:
    __init__ = _no_ctor("BoxTunnel")

    @classmethod
    def _new(cls, port: int) -> "BoxTunnel":
        t = cls.__new__(cls)
        t._port, t._used = port, False
        return t

    def _consume(self) -> None:
        if self._used:
            raise errors.InvalidStateError.make("tunnel connection has already been consumed")
        self._used = True

    def uri(self):
        return None

    def connect(self):
        port = self._port

        async def run():
            self._consume()
            try:
                reader, writer = await asyncio.open_connection(GUEST_HOST, port)
            except OSError as e:
                raise errors.NetworkError.make(f"tunnel to guest port {port} failed: {e.strerror or e}") from None
            return BoxConnection._new(reader, writer)
        return submit(run)

    def forward(self, listen):
        addr = conv_instance("listen", listen, SocketAddress, optional=False)
        port = self._port

        async def run():
            self._consume()

            async def handle(r, w):
                await relay_to_guest(r, w, port)

            if addr.kind == "tcp":
                server = await asyncio.start_server(handle, addr.host, addr.port)
                h, p = server.sockets[0].getsockname()[:2]
                local = f"tcp://{h}:{p}"
            else:
                if not addr.path.startswith("/"):
                    raise errors.InvalidArgumentError.make("tunnel Unix socket path must be absolute")
                server = await asyncio.start_unix_server(handle, addr.path)
                local = f"unix:{addr.path}"
            return TunnelForwarder._new(server, local)
        return submit(run)

    def __repr__(self) -> str:
        return f"BoxTunnel(port={json.dumps(self._port)})"

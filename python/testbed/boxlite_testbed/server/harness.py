"""Test helpers for the server (used by tests/test_server_*.py): spawn it, talk to it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from typing import Any, Optional

import requests

TESTBED_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY = "BOXLITE_TESTBED_READY"


class ServerProc:
    """A `python -m boxlite_testbed.server` child process."""

    def __init__(self, *args: str, python: Optional[str] = None, timeout: float = 30.0,
                 env: Optional[dict] = None, command: Optional[list] = None,
                 cwd: Optional[str] = None):
        """``command`` replaces ``[python, "-m", "boxlite_testbed.server"]`` (e.g. the
        real-SDK launcher ``[py, "realpath/run_server.py"]``); then PYTHONPATH is
        left alone and ``cwd`` defaults to the current directory, so the
        simulator does not shadow a real SDK."""
        self.args = list(args)
        base = list(command) if command else [python or sys.executable, "-m", "boxlite_testbed.server"]
        cmd = [*base, "--host", "127.0.0.1", "--port", "0", *args]
        env = dict(os.environ, **(env or {}))
        if not command:
            env["PYTHONPATH"] = TESTBED_DIR + os.pathsep + env.get("PYTHONPATH", "")
            cwd = cwd or TESTBED_DIR
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd)
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.info = self._wait_ready(timeout)
        self.url: str = self.info["url"]
        self.s = requests.Session()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.time() + timeout
        result: dict[str, Any] = {}

        def reader():
            for line in self.proc.stdout:  # type: ignore[union-attr]
                if line.startswith(READY + " "):
                    result["info"] = json.loads(line[len(READY) + 1:])
                    result["line"] = line
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout=max(0.1, deadline - time.time()))
        if "info" not in result:
            self.proc.kill()
            raise RuntimeError("server did not get ready: " + "".join(self.stderr_lines[-40:]))
        self.ready_line = result["line"]
        return result["info"]

    # ------------------------------------------------------------------ http
    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.s.request(method, self.url + path, **kw)

    def control(self, method: str, sub: str, **kw) -> requests.Response:
        return requests.request(method, self.url + "/__testbed" + sub, timeout=10, **kw)

    def reset(self) -> None:
        r = self.control("POST", "/reset?boxes=true")
        assert r.status_code == 200, r.text

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode


def make_tar(files: dict[str, bytes], *, gz: bool = False, dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def tar_members(data: bytes) -> dict[str, Optional[bytes]]:
    out: dict[str, Optional[bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else None
    return out


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """Parse an SSE byte stream (CRLF, LF or CR line ends) into events and comments."""
    text = raw.decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    events: list[dict[str, Any]] = []
    cur: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if cur:
                events.append(cur)
                cur = {}
            continue
        if line.startswith(":"):
            events.append({"comment": line[1:]})
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            cur["data"] = (cur["data"] + "\n" + value) if "data" in cur else value
        else:
            cur[name] = value
    if cur:
        events.append(cur)
    return events


def wait_until(fn, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


class RawWebSocket:
    """A minimal byte-level WebSocket client (to observe frames exactly)."""

    def __init__(self, url: str, path: str, headers: Optional[dict] = None, timeout: float = 20.0):
        import base64
        import socket
        from urllib.parse import urlparse

        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status_line = head.split(b"\r\n", 1)[0].decode()
        self.status = int(self.status_line.split()[1])

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (control frames included)."""
        import struct

        b0, b1 = self._recv_exact(2)
        opcode = b0 & 0x0F
        ln = b1 & 0x7F
        if ln == 126:
            ln = struct.unpack("!H", self._recv_exact(2))[0]
        elif ln == 127:
            ln = struct.unpack("!Q", self._recv_exact(8))[0]
        mask = self._recv_exact(4) if b1 & 0x80 else None
        data = self._recv_exact(ln)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return opcode, data

    def send_frame(self, opcode: int, payload: bytes) -> None:
        import struct

        mask = os.urandom(4)
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def frames_until_close(self, limit: int = 10000) -> list[tuple[int, bytes]]:
        out = []
        for _ in range(limit):
            op, data = self.recv_frame()
            if op == 0x9:  # ping -> pong
                self.send_frame(0xA, data)
                continue
            out.append((op, data))
            if op == 0x8:
                break
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

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

    def __init__(self, *args: str, python: Optional[str] = None, timeout: float = 30.0):
        self.args = list(args)
        cmd = [python or sys.executable, "-m", "boxlite_testbed.server", "--host", "127.0.0.1",
               "--port", "0", *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = TESTBED_DIR + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=TESTBED_DIR)
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

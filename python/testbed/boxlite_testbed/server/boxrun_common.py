"""What the `boxrun` dialect's modules share: its errors, the record of one execution, host
limits and the `stall` fault; docs/dialects.md, boxrun.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional
from urllib.parse import unquote


from .core import ExecSession, utc_now


NANOID = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"


class CErr(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class CPlain(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


def split_action(segment: str, expected: str) -> tuple[str, str]:
    """`id:action` from a path segment (percent-decoded), as BoxRun's `…/{id}:{action}` routes
    take it; a segment without an action is the server's 400 naming the `expected` ones."""
    raw = unquote(segment)
    if ":" not in raw:
        raise CErr(400, "VALIDATION_ERROR", f"Missing action (expected {expected})")
    key, action = raw.rsplit(":", 1)
    return key, action


def is_json_ct(ct: str) -> bool:
    ct = ct.split(";", 1)[0].strip().lower()
    return ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))


def deser_error(msg: str) -> CPlain:
    return CPlain(422, f"Failed to deserialize the JSON body into the target type: {msg}")


def host_limits() -> tuple[int, int]:
    cpu = os.environ.get("BOXRUN_MAX_CPU")
    mem = os.environ.get("BOXRUN_MAX_MEMORY_MB")
    max_cpu = int(cpu) if cpu else (os.cpu_count() or 2)
    if mem:
        max_mem = int(mem)
    else:
        max_mem = 4096
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        max_mem = int(line.split()[1]) // 1024
                        break
        except OSError:
            pass
    return max_cpu, max_mem


class CExec:
    """BoxRun's exec row (the session holds the process and its events)."""

    def __init__(self, session: ExecSession, box_id: str, cmd: list[str], env: Optional[dict],
                 workdir: str, timeout_ms: Optional[int]):
        self.session = session
        self.id = session.id
        self.box_id = box_id
        self.cmd = cmd
        self.env = env
        self.workdir = workdir
        self.timeout_ms = timeout_ms
        self.created_at = utc_now()
        self.canceled_at = None

    def status(self) -> str:
        s = self.session
        if s.canceled:
            return "canceled"
        if not s.done:
            return "running"
        if s.exit_code == 0 and not s.error_message:
            return "succeeded"
        return "failed"

    def to_json(self) -> dict[str, Any]:
        s = self.session
        fin = self.canceled_at or s.finished_at
        return {
            "id": self.id, "box_id": self.box_id, "status": self.status(), "cmd": self.cmd,
            "env": self.env, "workdir": self.workdir, "timeout_ms": self.timeout_ms,
            "exit_code": None if s.canceled else s.exit_code,
            "error_message": None if s.canceled else s.error_message,
            "created_at": self.created_at.isoformat(),
            "finished_at": fin.isoformat() if fin else None,
        }


async def stall_until_disconnect(request, limit_s: float = 600.0) -> None:
    """The `stall` fault: send nothing while the client stays connected (bounded)."""
    waited = 0.0
    while waited < limit_s:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.1)
        waited += 0.1

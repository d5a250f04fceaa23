"""``ExecResult``: the result record of the convenience wrappers (``SimpleBox.exec``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ExecResult:
    """Collected outcome of a command run through ``SimpleBox.exec``.

    ``exit_code`` is negative when the process was killed by a signal
    (−N for signal N) and −1 when the execution failed abnormally.
    """

    exit_code: int
    stdout: str
    stderr: str
    error_message: Optional[str] = None

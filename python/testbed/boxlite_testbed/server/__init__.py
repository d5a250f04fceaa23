"""Faithful loopback test server for the BoxLite REST (A: SSE era, B: current)
and BoxRun (C) HTTP dialects, running over the ``boxlite`` SDK API.

Run ``python -m boxlite_testbed.server --help``.
"""

from .config import Config
from .main import READY_MARK, serve

__all__ = ["Config", "READY_MARK", "serve"]

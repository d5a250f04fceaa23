"""Faithful loopback test server for the BoxLite REST (SSE era: ``sse-ref``,
``sse-serve``; ``current``) and BoxRun (``boxrun``) HTTP dialects, running over
the ``boxlite`` SDK API.

Run ``python -m boxlite_testbed.server --help``.
"""

from .config import Config
from .main import READY_MARK, serve

__all__ = ["Config", "READY_MARK", "serve"]

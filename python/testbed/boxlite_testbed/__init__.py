"""boxlite_testbed: a faithful loopback test server for the BoxLite/BoxRun HTTP dialects.

The server lives in :mod:`boxlite_testbed.server` and runs over the ``boxlite``
Python SDK API (the testbed simulator or the real SDK).
"""

__version__ = "0.1.0"

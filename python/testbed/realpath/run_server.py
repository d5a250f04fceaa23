"""Run the test server (``boxlite_testbed.server``) over the REAL boxlite SDK.

    <real-venv>/bin/python python/testbed/realpath/run_server.py [server args…]

Takes exactly the arguments of ``python -m boxlite_testbed.server`` and prints
the same ``BOXLITE_TESTBED_READY {json}`` line. The difference from running
the module directly: ``python/testbed`` also holds the *simulator* package
``boxlite``, so putting that directory on ``sys.path`` (``PYTHONPATH``, or the
working directory with ``-m``) would shadow the real SDK. This launcher removes
it, imports the real ``boxlite`` first (refusing the simulator), and only then
appends ``python/testbed`` so that ``boxlite_testbed`` becomes importable —
``boxlite`` is already in ``sys.modules`` and stays the real one.

Exit status 4 (with a message on stderr) when the real SDK is not importable.
"""
from __future__ import annotations

import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED = os.path.dirname(HERE)


def _same(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a or os.getcwd()) == os.path.realpath(b)
    except OSError:
        return False


def main() -> None:
    sys.path[:] = [p for p in sys.path if not _same(p, TESTBED)]
    try:
        import boxlite
    except Exception as exc:  # noqa: BLE001
        print(f"run_server: the real boxlite SDK is not importable in {sys.executable}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(4)
    if getattr(boxlite, "__testbed__", False):
        print(f"run_server: {sys.executable} imports the testbed simulator "
              f"({boxlite.__file__}), not the real SDK", file=sys.stderr)
        sys.exit(4)
    sys.path.append(TESTBED)
    os.environ["BOXLITE_TESTBED_REAL_SDK"] = getattr(boxlite, "__version__", "?")
    sys.argv = ["boxlite_testbed.server", *sys.argv[1:]]
    runpy.run_module("boxlite_testbed.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

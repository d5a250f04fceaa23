"""Which BoxLite the test suites run against: ``BOXLITE_TEST_TARGET``.

===========  ==============================================================
``sim``      (default) the SDK simulator ``python/testbed/boxlite`` and the
             test server over it. Interpreter: ``$BOXLITE_SIM_PYTHON`` or
             ``python/testbed/.venv/bin/python``. Never skipped.
``real-sdk`` the real ``boxlite`` SDK in ``$BOXLITE_TEST_PYTHON`` (default
             ``python/testbed/.venv-real/bin/python``) and the same test server
             started over it (``realpath/run_server.py``). Runs only if
             ``scripts/probe-vm.sh --cached`` says "yes"; otherwise every suite
             skips with the probe's one-line reason (or fails, with
             ``BOXLITE_TEST_REQUIRE_VM=1``).
``remote``   an existing real server at ``$BOXLITE_API_URL`` with
             ``BOXLITE_API_TOKEN`` / ``BOXLITE_CLIENT_ID`` /
             ``BOXLITE_CLIENT_SECRET`` / ``BOXLITE_PREFIX`` and
             ``BOXLITE_API_DIALECT`` (``auto``, ``sse``, ``current``,
             ``boxrun``), and ``BOXLITE_TEST_SERVER`` naming which server
             that is when a suite must know (``boxlite-serve-0.11.0``).
             Skips when ``BOXLITE_API_URL`` is unset.
===========  ==============================================================

Shared variables: ``BOXLITE_TEST_ROOTFS`` (a local OCI layout — from
``scripts/build-oci-rootfs.sh`` — used to boot boxes without a registry and
passed to the probe), ``BOXLITE_TEST_IMAGE`` (image the suites create boxes
from; default: the rootfs path when set), ``BOXLITE_PROBE_TIMEOUT`` (seconds
for the probe's boot, default 60), ``BOXLITE_PROBE_SCRIPT`` (another probe
with the same contract, default ``scripts/probe-vm.sh``).

An unknown ``BOXLITE_TEST_TARGET`` (or dialect) is an error, never a silent
fallback to ``sim``.

The Node twin is ``__test__/helpers/target.mjs`` (``resolveTestTarget()``);
both return the same fields (camelCase there). ``python3 target.py --json``
prints the resolution for the current environment.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Callable, Mapping, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED_DIR = os.path.dirname(HERE)
REPO_ROOT = os.path.dirname(os.path.dirname(TESTBED_DIR))
PROBE_SCRIPT = os.path.join(REPO_ROOT, "scripts", "probe-vm.sh")
RUN_SERVER = os.path.join(HERE, "run_server.py")
SIM_VENV_PYTHON = os.path.join(TESTBED_DIR, ".venv", "bin", "python")
REAL_VENV_PYTHON = os.path.join(TESTBED_DIR, ".venv-real", "bin", "python")

TARGETS = ("sim", "real-sdk", "remote")
DEFAULT_TARGET = "sim"
DIALECTS = ("auto", "sse", "current", "boxrun")
TRUE_WORDS = ("1", "true", "yes", "on")


class TargetError(ValueError):
    """A malformed BOXLITE_TEST_* setting (an error, not a reason to skip)."""


@dataclasses.dataclass(frozen=True)
class RemoteApi:
    url: str
    token: Optional[str] = None
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    prefix: Optional[str] = None
    dialect: str = "auto"
    server: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    line: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.line.startswith("yes:")


@dataclasses.dataclass(frozen=True)
class TestTarget:
    __test__ = False  # not a pytest test class

    target: str
    skip: bool
    reason: str                       # one line; "" when nothing to say
    python: Optional[str] = None      # SDK-side interpreter (sim / real-sdk)
    rootfs: Optional[str] = None
    image: Optional[str] = None
    probe: Optional[ProbeResult] = None
    api: Optional[RemoteApi] = None
    require_vm: bool = False

    @property
    def is_real(self) -> bool:
        return self.target != "sim"

    def server_command(self, *server_args: str) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment to start the test server for this target.

        ``sim``: ``python -m boxlite_testbed.server`` with ``PYTHONPATH`` =
        ``python/testbed``. ``real-sdk``: ``realpath/run_server.py`` (keeps the
        simulator off ``sys.path``); run it with any working directory except
        ``python/testbed``. ``remote`` has no local server.
        """
        if self.target == "remote" or not self.python:
            raise TargetError(f"target {self.target!r} has no local test server")
        if self.target == "real-sdk":
            return [self.python, RUN_SERVER, *server_args], {}
        return [self.python, "-m", "boxlite_testbed.server", *server_args], {"PYTHONPATH": TESTBED_DIR}

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["probe"] = dataclasses.asdict(self.probe) if self.probe else None
        d["api"] = dataclasses.asdict(self.api) if self.api else None
        if d["api"] and d["api"].get("token"):
            d["api"]["token"] = "***"
        if d["api"] and d["api"].get("client_secret"):
            d["api"]["client_secret"] = "***"
        return d


def _get(env: Mapping[str, str], name: str) -> Optional[str]:
    v = env.get(name)
    if v is None:
        return None
    v = v.strip()
    return v or None


def parse_target(value: Optional[str]) -> str:
    """Normalise a BOXLITE_TEST_TARGET value; unset/empty → ``sim``."""
    if value is None or not value.strip():
        return DEFAULT_TARGET
    v = value.strip().lower().replace("_", "-")
    if v in TARGETS:
        return v
    raise TargetError(f"BOXLITE_TEST_TARGET={value!r} is not one of {', '.join(TARGETS)}")


def parse_dialect(value: Optional[str]) -> str:
    if value is None or not value.strip():
        return "auto"
    v = value.strip().lower()
    aliases = {"a": "sse", "b": "current", "c": "boxrun", "rest": "current"}
    v = aliases.get(v, v)
    if v in DIALECTS:
        return v
    raise TargetError(f"BOXLITE_API_DIALECT={value!r} is not one of {', '.join(DIALECTS)}")


def run_probe(python: str, rootfs: Optional[str], env: Mapping[str, str]) -> ProbeResult:
    """``scripts/probe-vm.sh --cached --python PY [--rootfs DIR]`` → its line and exit status."""
    argv = [_get(env, "BOXLITE_PROBE_SCRIPT") or PROBE_SCRIPT, "--cached", "--python", python]
    if rootfs:
        argv += ["--rootfs", rootfs]
    timeout = _get(env, "BOXLITE_PROBE_TIMEOUT")
    if timeout:
        argv += ["--timeout", timeout]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, env=dict(env),
                           timeout=float(timeout or 60) + 180)
    except subprocess.TimeoutExpired:
        return ProbeResult("no: scripts/probe-vm.sh did not finish", 1)
    except OSError as exc:
        return ProbeResult(f"no: cannot run scripts/probe-vm.sh: {exc.strerror}", 1)
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    if not line.startswith(("yes:", "no:")):
        err = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
        line = "no: probe-vm.sh printed no verdict" + (f" ({err[-1]})" if err else "")
        return ProbeResult(line, r.returncode or 1)
    return ProbeResult(line, r.returncode)


def resolve_test_target(env: Optional[Mapping[str, str]] = None, *,
                        probe: Optional[Callable[[str, Optional[str], Mapping[str, str]], ProbeResult]] = None
                        ) -> TestTarget:
    """Resolve the target from ``env`` (default ``os.environ``).

    ``probe`` replaces :func:`run_probe` (tests). Raises :class:`TargetError`
    on malformed settings.
    """
    env = os.environ if env is None else env
    target = parse_target(env.get("BOXLITE_TEST_TARGET"))
    rootfs = _get(env, "BOXLITE_TEST_ROOTFS")
    if rootfs:
        rootfs = os.path.abspath(rootfs)
    image = _get(env, "BOXLITE_TEST_IMAGE") or rootfs
    require_vm = (_get(env, "BOXLITE_TEST_REQUIRE_VM") or "").lower() in TRUE_WORDS

    if target == "sim":
        python = _get(env, "BOXLITE_SIM_PYTHON") or (SIM_VENV_PYTHON if os.path.exists(SIM_VENV_PYTHON)
                                                     else sys.executable)
        return TestTarget("sim", False, "", python=python, rootfs=rootfs, image=image)

    if target == "real-sdk":
        python = _get(env, "BOXLITE_TEST_PYTHON") or REAL_VENV_PYTHON
        result = (probe or run_probe)(python, rootfs, env)
        skip = not result.ok
        if skip and require_vm:
            raise TargetError(f"BOXLITE_TEST_REQUIRE_VM is set but {result.line}")
        return TestTarget("real-sdk", skip, result.line, python=python, rootfs=rootfs, image=image,
                          probe=result, require_vm=require_vm)

    # remote
    dialect = parse_dialect(env.get("BOXLITE_API_DIALECT"))
    url = _get(env, "BOXLITE_API_URL")
    if not url:
        if require_vm:
            raise TargetError("BOXLITE_TEST_TARGET=remote needs BOXLITE_API_URL")
        return TestTarget("remote", True, "no: BOXLITE_TEST_TARGET=remote but BOXLITE_API_URL is not set",
                          rootfs=rootfs, image=image, require_vm=require_vm)
    if not url.startswith(("http://", "https://")):
        raise TargetError(f"BOXLITE_API_URL={url!r} is not an http(s) URL")
    api = RemoteApi(url=url.rstrip("/"), token=_get(env, "BOXLITE_API_TOKEN"),
                    client_id=_get(env, "BOXLITE_CLIENT_ID"), client_secret=_get(env, "BOXLITE_CLIENT_SECRET"),
                    prefix=_get(env, "BOXLITE_PREFIX"), dialect=dialect, server=_get(env, "BOXLITE_TEST_SERVER"))
    if bool(api.client_id) != bool(api.client_secret):
        raise TargetError("BOXLITE_CLIENT_ID and BOXLITE_CLIENT_SECRET must be set together")
    return TestTarget("remote", False, f"remote server at {api.url} (dialect {dialect})", rootfs=rootfs,
                      image=image, api=api, require_vm=require_vm)


def skip_unless_runnable(t: Optional[TestTarget] = None) -> TestTarget:
    """For pytest: ``pytest.skip(reason)`` when the resolved target says skip."""
    t = t or resolve_test_target()
    if t.skip:
        import pytest

        pytest.skip(t.reason, allow_module_level=True)
    return t


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Resolve BOXLITE_TEST_TARGET for the test suites")
    ap.add_argument("--json", action="store_true", help="print the whole resolution as JSON")
    args = ap.parse_args(argv)
    try:
        t = resolve_test_target()
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(t.as_dict(), sort_keys=True))
    else:
        print(f"{t.target}: {'skip — ' + t.reason if t.skip else (t.reason or 'run')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

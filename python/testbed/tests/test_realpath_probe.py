"""scripts/probe-vm.sh (python/testbed/realpath/probe.py): output format, exit codes, cache.

Boot outcomes are exercised with a *fake* real SDK (a tiny `boxlite` package
written to a temp dir and exposed through a fake interpreter), so these tests
need no VM. The one test that probes the machine for real uses the cache.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

TESTBED_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(TESTBED_DIR))
if TESTBED_DIR not in sys.path:
    sys.path.insert(0, TESTBED_DIR)

from realpath import probe as P  # noqa: E402

PROBE_SH = os.path.join(REPO_ROOT, "scripts", "probe-vm.sh")
HOST_PY = sys.executable
KVM_OK = P.check_kvm("/dev/kvm") is None
needs_kvm = pytest.mark.skipif(not KVM_OK, reason=f"/dev/kvm unusable here: {P.check_kvm('/dev/kvm')}")

FAKE_SDK = textwrap.dedent('''
    """Fake *real* boxlite SDK for probe tests (mode from FAKE_BOXLITE_MODE)."""
    import asyncio, os
    __version__ = "9.9.9-fake"
    MODE = os.environ.get("FAKE_BOXLITE_MODE", "fail")

    class EngineError(RuntimeError):
        code = "engine_unavailable"

    class StorageError(RuntimeError):
        code = "storage_error"

    for _c in (EngineError, StorageError):
        _c.__module__ = "boxlite.errors"

    def _fut(value=None, exc=None):
        f = asyncio.get_running_loop().create_future()
        f.set_exception(exc) if exc else f.set_result(value)
        return f

    class Options:
        def __init__(self, home_dir=None, image_registries=()):
            self.home_dir = home_dir

    class BoxOptions:
        def __init__(self, **kw):
            self.kw = kw

    class _Stream:
        def __init__(self, chunks):
            self.chunks = list(chunks)
        def __aiter__(self):
            return self
        async def __anext__(self):
            if not self.chunks:
                raise StopAsyncIteration
            return self.chunks.pop(0)

    class _Result:
        exit_code = 0
        error_message = None

    class _Exec:
        def stdout(self):
            return _Stream(["boxlite-probe-" + ("ok" if MODE == "ok" else "??") + "\\n"])
        def stderr(self):
            return _Stream([])
        def wait(self):
            return _fut(_Result())

    class Box:
        id = "fakebox00001"
        def __init__(self, home):
            self.home = home
        def start(self):
            if MODE == "fail":
                os.makedirs(os.path.join(self.home, "logs"), exist_ok=True)
                with open(os.path.join(self.home, "logs", "boxlite.log.fake"), "w") as fh:
                    fh.write("[krun_vmm::linux::vstate] Received KVM_EXIT_INTERNAL_ERROR signal\\n")
                os.mkfifo(os.path.join(self.home, "logs", "a-fifo.log"))  # must not block the scan
                return _fut(exc=EngineError("engine reported an error: The VM failed to start."))
            if MODE == "pull":
                return _fut(exc=StorageError("storage error: Failed to pull image 'alpine:latest'\\n"
                                             "  - docker.io/library/alpine:latest: no route"))
            if MODE == "hang":
                return asyncio.get_running_loop().create_future()
            return _fut(())
        def exec(self, cmd, args=None, **kw):
            return _fut(_Exec())
        def stop(self):
            return _fut(())

    class Boxlite:
        def __init__(self, options):
            self.home = options.home_dir
        def create(self, options, name=None):
            return _fut(Box(self.home))
        def remove(self, box_id, force=False):
            return _fut(())
''')


def _exe(path, body):
    with open(path, "w") as fh:
        fh.write(body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


@pytest.fixture
def fake_python(tmp_path):
    """fake_python(mode) → an interpreter whose `boxlite` is the fake real SDK in that mode."""
    sdk = tmp_path / "fake-sdk"
    (sdk / "boxlite").mkdir(parents=True)
    (sdk / "boxlite" / "__init__.py").write_text(FAKE_SDK)

    def make(mode: str) -> str:
        return _exe(tmp_path / f"python-{mode}",
                    f'#!/bin/sh\nPYTHONPATH="{sdk}" FAKE_BOXLITE_MODE={mode} exec "{HOST_PY}" -S "$@"\n')

    return make


@pytest.fixture
def rootfs(tmp_path):
    d = tmp_path / "oci"
    d.mkdir()
    (d / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return str(d)


def run_probe(*args, env_extra=None, tmp_path=None, timeout=240):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXLITE_")}
    if tmp_path is not None:
        env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.update(env_extra or {})
    r = subprocess.run([PROBE_SH, *args], capture_output=True, text=True, env=env, timeout=timeout)
    return r


def assert_one_line(r):
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout + r.stderr
    assert lines[0].startswith(("yes: ", "no: ")), lines[0]
    return lines[0]


# ------------------------------------------------------------ interpreter / SDK


@needs_kvm
def test_interpreter_without_boxlite(tmp_path):
    bare = _exe(tmp_path / "bare-python", f'#!/bin/sh\nexec "{HOST_PY}" -S -I "$@"\n')
    r = run_probe("--python", bare, tmp_path=tmp_path)
    line = assert_one_line(r)
    assert r.returncode == P.EXIT_NO_SDK
    assert line.startswith(f"no: boxlite SDK not installed in {bare}")
    assert "No module named 'boxlite'" in line


@needs_kvm
def test_missing_interpreter(tmp_path):
    r = run_probe("--python", str(tmp_path / "nope"), tmp_path=tmp_path)
    assert assert_one_line(r) == f"no: boxlite SDK not installed in {tmp_path / 'nope'} (no such interpreter)"
    assert r.returncode == P.EXIT_NO_SDK


@needs_kvm
def test_simulator_is_not_the_real_sdk(tmp_path):
    sim = _exe(tmp_path / "sim-python", f'#!/bin/sh\nPYTHONPATH="{TESTBED_DIR}" exec "{HOST_PY}" -S "$@"\n')
    r = run_probe("--python", sim, tmp_path=tmp_path)
    line = assert_one_line(r)
    assert r.returncode == P.EXIT_NO_SDK and "testbed simulator" in line


# ------------------------------------------------------------ KVM device


def test_missing_kvm_device(tmp_path):
    r = run_probe("--kvm-device", str(tmp_path / "kvm"), "--python", HOST_PY, tmp_path=tmp_path)
    assert assert_one_line(r) == (f"no: {tmp_path / 'kvm'} does not exist (no KVM: load kvm_intel/kvm_amd "
                                  f"or enable nested virtualisation)")
    assert r.returncode == P.EXIT_NO


def test_device_that_is_not_kvm(tmp_path):
    r = run_probe("--python", HOST_PY, tmp_path=tmp_path, env_extra={"BOXLITE_PROBE_KVM_DEVICE": "/dev/null"})
    line = assert_one_line(r)
    assert line.startswith("no: /dev/null is not a KVM device") and r.returncode == P.EXIT_NO


# ------------------------------------------------------------ boot outcomes (fake SDK)


@needs_kvm
def test_boot_ok(fake_python, rootfs, tmp_path):
    r = run_probe("--python", fake_python("ok"), "--rootfs", rootfs, tmp_path=tmp_path)
    line = assert_one_line(r)
    assert r.returncode == P.EXIT_YES, r.stderr
    assert line.startswith("yes: booted a boxlite VM in ") and f"(boxlite 9.9.9-fake, rootfs:{rootfs})" in line


@needs_kvm
def test_boot_fails_with_kvm_internal_error(fake_python, rootfs, tmp_path):
    r = run_probe("--python", fake_python("fail"), "--rootfs", rootfs, "--json", tmp_path=tmp_path)
    assert r.returncode == P.EXIT_NO
    rec = json.loads(r.stdout)
    assert rec["line"].startswith("no: /dev/kvm is ")
    assert "boxlite guests die with KVM_EXIT_INTERNAL_ERROR" in rec["line"]
    assert rec["line"].endswith("(boxlite 9.9.9-fake start() raised EngineError: engine reported an error: "
                                "The VM failed to start.)")
    assert rec["detail"]["error_code"] == "engine_unavailable"
    assert any("KVM_EXIT_INTERNAL_ERROR" in ln for ln in rec["detail"]["log_lines"])


@needs_kvm
def test_pull_failure_gets_a_rootfs_hint(fake_python, tmp_path):
    r = run_probe("--python", fake_python("pull"), tmp_path=tmp_path)
    line = assert_one_line(r)
    assert r.returncode == P.EXIT_NO
    assert line.startswith("no: boxlite 9.9.9-fake could not boot a VM from alpine:latest: start() raised "
                           "StorageError: storage error: Failed to pull image 'alpine:latest' | - docker.io")
    assert "scripts/build-oci-rootfs.sh" in line


@needs_kvm
def test_boot_timeout(fake_python, rootfs, tmp_path):
    r = run_probe("--python", fake_python("hang"), "--rootfs", rootfs, "--timeout", "1", tmp_path=tmp_path)
    line = assert_one_line(r)
    assert r.returncode == P.EXIT_NO
    assert line.startswith(f"no: boxlite 9.9.9-fake did not boot a VM from rootfs:{rootfs} within the timeout")


@needs_kvm
def test_rootfs_that_is_not_a_layout(fake_python, tmp_path):
    r = run_probe("--python", fake_python("ok"), "--rootfs", str(tmp_path), tmp_path=tmp_path)
    line = assert_one_line(r)
    assert r.returncode == P.EXIT_NO and "is not an OCI image layout" in line


# ------------------------------------------------------------ cache


@needs_kvm
def test_cached_result_is_reused(fake_python, rootfs, tmp_path):
    py = fake_python("ok")
    r1 = run_probe("--python", py, "--rootfs", rootfs, "--cached", "--json", tmp_path=tmp_path)
    rec1 = json.loads(r1.stdout)
    assert rec1["cached"] is False and r1.returncode == 0
    assert rec1["cache_file"].startswith(str(tmp_path / "cache" / "boxlite-testbed"))
    os.unlink(py)  # a second real run would now fail: only the cache can answer "yes"
    r2 = run_probe("--python", py, "--rootfs", rootfs, "--cached", "--json", tmp_path=tmp_path)
    rec2 = json.loads(r2.stdout)
    assert rec2["cached"] is True and rec2["line"] == rec1["line"] and r2.returncode == 0
    r3 = run_probe("--python", py, "--rootfs", rootfs, tmp_path=tmp_path)  # no --cached: re-probes
    assert "not installed" in assert_one_line(r3) and r3.returncode == P.EXIT_NO_SDK


@needs_kvm
def test_cached_not_installed_is_rechecked(fake_python, tmp_path):
    py = tmp_path / "later-python"
    r1 = run_probe("--python", str(py), "--cached", "--image", "x:1", tmp_path=tmp_path)
    assert "not installed" in assert_one_line(r1)
    os.symlink(fake_python("ok"), py)  # "installed" afterwards
    r2 = run_probe("--python", str(py), "--cached", "--image", "x:1", tmp_path=tmp_path)
    assert assert_one_line(r2).startswith("yes: ")


def test_cache_key_and_boot_id(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    facts = P.host_facts("/dev/kvm")
    a = P.cache_path(facts, "/py", "alpine:latest")
    assert a.startswith(str(tmp_path / "boxlite-testbed" / "probe-"))
    assert a != P.cache_path(facts, "/py", "rootfs:/r")
    assert a != P.cache_path(facts, "/py2", "alpine:latest")
    assert a != P.cache_path({**facts, "boot_id": "other"}, "/py", "alpine:latest")
    P.save_cache(a, {"probe_version": P.PROBE_VERSION, "facts": facts, "line": "no: x", "exit": 1})
    assert P.load_cache(a, facts)["line"] == "no: x"
    assert P.load_cache(a, {**facts, "boot_id": "rebooted"}) is None
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert P.cache_dir().endswith(f"boxlite-testbed-cache-{os.getuid()}")


# ------------------------------------------------------------ pure formatting


def test_one_line():
    assert P.one_line("a\n  b\n\nc ") == "a | b | c"
    assert len(P.one_line("x" * 1000, 50)) == 50


PVM = {"kvm_device": "/dev/kvm", "kvm_pvm": True, "nested_pvm_cmdline": True, "cpu_virt_flags": []}
VMX = {"kvm_device": "/dev/kvm", "kvm_pvm": False, "nested_pvm_cmdline": False, "cpu_virt_flags": ["vmx"]}


def test_nested_pvm_detection():
    assert P.nested_pvm(PVM)
    assert not P.nested_pvm(VMX)
    assert not P.nested_pvm({**PVM, "cpu_virt_flags": ["svm"]})


def test_boot_failure_lines():
    res = {"boxlite_version": "0.10.8", "error_class": "boxlite.errors.EngineError", "stage": "start",
           "message": "engine reported an error: The VM failed to start.",
           "log_lines": ["[x ERROR krun_vmm::linux::vstate] Received KVM_EXIT_INTERNAL_ERROR signal"]}
    assert P.boot_failure_line(res, PVM, "rootfs:/r") == (
        "no: /dev/kvm is a nested PVM hypervisor: boxlite guests die with KVM_EXIT_INTERNAL_ERROR "
        "(boxlite 0.10.8 start() raised EngineError: engine reported an error: The VM failed to start.)")
    assert "is unable to run boxlite guests" in P.boot_failure_line(res, VMX, "rootfs:/r")
    plain = {**res, "log_lines": []}
    assert P.boot_failure_line(plain, VMX, "rootfs:/r") == (
        "no: boxlite 0.10.8 could not boot a VM from rootfs:/r: start() raised EngineError: "
        "engine reported an error: The VM failed to start.")
    assert "a VM start failure" in P.boot_failure_line(plain, PVM, "rootfs:/r")


def test_usage_errors(tmp_path):
    r = run_probe("--timeout", "0", tmp_path=tmp_path)
    assert r.returncode == 2
    r = run_probe("--bogus", tmp_path=tmp_path)
    assert r.returncode == 2
    r = run_probe("--rootfs", "/x", "--image", "y", tmp_path=tmp_path)
    assert r.returncode == 2
    r = run_probe("--help", tmp_path=tmp_path)
    assert r.returncode == 0 and "--cached" in r.stdout


# ------------------------------------------------------------ this machine, for real


def test_this_machine(tmp_path):
    """The real probe of the real venv (cached): one well-formed line and a matching exit code."""
    real_py = os.environ.get("BOXLITE_TEST_PYTHON") or os.path.join(TESTBED_DIR, ".venv-real", "bin", "python")
    args = ["--cached", "--python", real_py, "--no-create-venv"]
    if os.environ.get("BOXLITE_TEST_ROOTFS"):
        args += ["--rootfs", os.environ["BOXLITE_TEST_ROOTFS"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXLITE_")}
    r = subprocess.run([PROBE_SH, *args], capture_output=True, text=True, env=env, timeout=400)
    line = assert_one_line(r)
    assert (r.returncode == 0) == line.startswith("yes: ")
    if not KVM_OK:
        assert r.returncode == P.EXIT_NO

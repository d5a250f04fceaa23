"""Can this machine boot real BoxLite micro-VMs?  One line, one exit status.

Usage (normally through ``scripts/probe-vm.sh``)::

    python3 probe.py [--python PATH] [--rootfs DIR | --image REF] [--timeout S]
                     [--cached | --refresh] [--json] [--verbose]

Prints exactly one line on stdout:

* ``yes: booted a boxlite VM in 2.1s (boxlite 0.10.8, rootfs:/…)``  → exit 0
* ``no: <why>``                                                     → exit 1
  (``/dev/kvm`` missing or unusable, the boot failed or timed out — the SDK's
  error text is included)
* ``no: boxlite SDK not installed in <python>: …``                 → exit 3
  (no interpreter, no ``boxlite``, or the testbed simulator instead of the
  real SDK; also: the default venv could not be created)
* usage errors                                                       → exit 2

Checks, in order: the KVM device exists, opens read-write and answers
``KVM_GET_API_VERSION``; the interpreter imports the *real* ``boxlite`` (not
the simulator in ``python/testbed/boxlite``); then a real boot of a 1-vCPU box
from ``--rootfs`` (a local OCI layout, works offline) or ``--image`` (needs a
registry), bounded by ``--timeout``, followed by ``echo`` inside the guest.

Default interpreter: ``python/testbed/.venv-real/bin/python``, created on
demand with ``pip install boxlite==0.10.8 aiohttp`` (aiohttp: the test server
runs in the same venv; disable creation with ``--no-create-venv``).

The result is cached (``$XDG_CACHE_HOME/boxlite-testbed/`` or
``/tmp/boxlite-testbed-cache-<uid>/``) keyed by boot id, kernel release,
interpreter, rootfs/image and KVM device. ``--cached`` reuses a cached result
(re-checking only a cached "not installed"); without it the probe always runs
and refreshes the cache.

Only the standard library is used; any Python ≥ 3.8 can run this file.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PROBE_VERSION = 1
SDK_PIN = "boxlite==0.10.8"
# The real-SDK venv also runs the test server (boxlite_testbed.server needs aiohttp).
REAL_VENV_REQUIREMENTS = [SDK_PIN, "aiohttp>=3.9"]
HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED = os.path.dirname(HERE)  # python/testbed
REPO = os.path.dirname(os.path.dirname(TESTBED))
DEFAULT_VENV = os.path.join(TESTBED, ".venv-real")
BOOT_ATTEMPT = os.path.join(HERE, "boot_attempt.py")
MARK = "BOXLITE_PROBE_RESULT "
KVM_GET_API_VERSION = 0xAE00

EXIT_YES, EXIT_NO, EXIT_USAGE, EXIT_NO_SDK = 0, 1, 2, 3


def one_line(text: str, limit: int = 400) -> str:
    """Collapse an SDK message (often multi-line) into a single bounded line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    s = " | ".join(parts)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def read_first(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Host facts


def host_facts(kvm_device: str) -> dict:
    cpuinfo = read_first("/proc/cpuinfo")
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    cmdline = read_first("/proc/cmdline")
    return {
        "boot_id": read_first("/proc/sys/kernel/random/boot_id") or "unknown",
        "kernel": platform.release(),
        "machine": platform.machine(),
        "kvm_device": kvm_device,
        "cpu_virt_flags": sorted(flags & {"vmx", "svm"}),
        "under_hypervisor": "hypervisor" in flags,
        "kvm_pvm": os.path.isdir("/sys/module/kvm_pvm"),
        "nested_pvm_cmdline": "nested_pvm=1" in cmdline.split(),
    }


def nested_pvm(facts: dict) -> bool:
    """KVM here is PVM (pagetable-based, for nested guests without VMX/SVM)."""
    return bool(facts["kvm_pvm"] or facts["nested_pvm_cmdline"]) and not facts["cpu_virt_flags"]


def check_kvm(dev: str) -> str | None:
    """None if the device is usable, else the reason (without the 'no: ')."""
    if not os.path.exists(dev):
        return f"{dev} does not exist (no KVM: load kvm_intel/kvm_amd or enable nested virtualisation)"
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"{dev} is not accessible to uid {os.getuid()} (add the user to the 'kvm' group)"
        return f"cannot open {dev}: {exc.strerror}"
    try:
        try:
            version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        except OSError as exc:
            return f"{dev} is not a KVM device (KVM_GET_API_VERSION: {exc.strerror})"
        if version != 12:
            return f"{dev} reports KVM API version {version}, expected 12"
    finally:
        os.close(fd)
    return None


# --------------------------------------------------------------------------
# Interpreter / SDK


def ensure_default_venv(venv: str, verbose: bool) -> tuple[str | None, str | None]:
    """Create the real-SDK venv if missing. Returns (python, error)."""
    py = os.path.join(venv, "bin", "python")
    if os.path.exists(py):
        return py, None
    base = shutil.which("python3.11") or sys.executable
    log = (lambda m: print(f"[probe] {m}", file=sys.stderr)) if verbose else (lambda m: None)
    log(f"creating {venv} with {base} and pip install {' '.join(REAL_VENV_REQUIREMENTS)}")
    try:
        r = subprocess.run([base, "-m", "venv", venv], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            return None, f"`{base} -m venv {venv}` failed: {one_line(r.stderr or r.stdout, 200)}"
        r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *REAL_VENV_REQUIREMENTS],
                           capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"creating {venv} timed out ({exc.cmd[0]})"
    if r.returncode != 0:
        tail = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()][-1:] or ["?"]
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"`pip install {SDK_PIN}` into {venv} failed: {one_line(tail[0], 200)}"
    return py, None


def run_attempt(python: str, argv: list[str], timeout: float) -> tuple[dict | None, int, str]:
    """Run boot_attempt.py under `python` in its own process group."""
    try:
        proc = subprocess.Popen([python, BOOT_ATTEMPT, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"})
    except OSError as exc:
        return None, -1, f"cannot run {python}: {exc.strerror}"
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the process we started
        except OSError:
            pass
        out, err = proc.communicate()
        return None, -9, f"timed out after {timeout:.0f}s"
    for line in out.splitlines():
        if line.startswith(MARK):
            try:
                return json.loads(line[len(MARK):]), proc.returncode, err
            except ValueError:
                break
    return None, proc.returncode, err


# --------------------------------------------------------------------------
# Cache


def cache_dir() -> str:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "boxlite-testbed")
    return os.path.join(tempfile.gettempdir(), f"boxlite-testbed-cache-{os.getuid()}")


def cache_path(facts: dict, python: str, source: str) -> str:
    # BOXLITE_RUNTIME_DIR is part of the key: with the fake VM's shim there the same host boots.
    key = json.dumps([PROBE_VERSION, facts["boot_id"], facts["kernel"], facts["kvm_device"],
                      os.path.abspath(python), source, os.environ.get("BOXLITE_RUNTIME_DIR", "")])
    return os.path.join(cache_dir(), "probe-" + hashlib.sha256(key.encode()).hexdigest()[:20] + ".json")


def load_cache(path: str, facts: dict) -> dict | None:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if rec.get("probe_version") != PROBE_VERSION or rec.get("facts", {}).get("boot_id") != facts["boot_id"]:
        return None
    if not isinstance(rec.get("line"), str) or not isinstance(rec.get("exit"), int):
        return None
    return rec


def save_cache(path: str, rec: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache is a convenience


# --------------------------------------------------------------------------
# The probe


def sdk_missing_line(python: str, res: dict | None, err: str) -> str:
    if res and res.get("simulator"):
        return f"no: boxlite SDK not installed in {python} (it imports the testbed simulator, not the real SDK)"
    if res and res.get("message"):
        return f"no: boxlite SDK not installed in {python}: {one_line(res.get('error_class', '').split('.')[-1] + ': ' + res['message'] if res.get('error_class') else res['message'], 200)}"
    return f"no: boxlite SDK not installed in {python}: {one_line(err, 200) or 'import failed'}"


def boot_failure_line(res: dict, facts: dict, source: str) -> str:
    version = res.get("boxlite_version") or "?"
    cls = (res.get("error_class") or "").split(".")[-1]
    msg = one_line(res.get("message") or "", 300)
    sdk = f"{cls}: {msg}" if cls else msg
    stage = res.get("stage") or "start"
    logs = " ".join(res.get("log_lines") or [])
    if "KVM_EXIT_INTERNAL_ERROR" in logs or (nested_pvm(facts) and "failed to start" in msg.lower()):
        seen = "KVM_EXIT_INTERNAL_ERROR" if "KVM_EXIT_INTERNAL_ERROR" in logs else "a VM start failure"
        where = "a nested PVM hypervisor" if nested_pvm(facts) else "unable to run boxlite guests"
        return (f"no: {facts['kvm_device']} is {where}: boxlite guests die with {seen} "
                f"(boxlite {version} {stage}() raised {sdk})")
    hint = ""
    low = msg.lower()
    if "pull" in low or "registry" in low:
        hint = " (no container registry reachable? build a local rootfs with scripts/build-oci-rootfs.sh and pass --rootfs)"
        if nested_pvm(facts):
            # The pull failed first, but the host itself is the deeper reason: say so.
            hint += (f"; besides, {facts['kvm_device']} is a nested PVM hypervisor, where boxlite guests die with "
                     "KVM_EXIT_INTERNAL_ERROR even from a local rootfs")
    if res.get("error_code") == "timeout":
        return f"no: boxlite {version} did not boot a VM from {source} within the timeout ({msg})"
    return f"no: boxlite {version} could not boot a VM from {source}: {stage}() raised {sdk}{hint}"


def fake_vm_runtime() -> bool:
    """BOXLITE_RUNTIME_DIR holds the fake VM's boxlite-shim (crates/fakevm)."""
    for d in os.environ.get("BOXLITE_RUNTIME_DIR", "").split(":"):
        try:
            with open(os.path.join(d, "boxlite-shim"), "rb") as fh:
                if b"sandbank fake VM" in fh.read(4096):
                    return True
        except OSError:
            pass
    return False


def probe(args: argparse.Namespace) -> dict:
    facts = host_facts(args.kvm_device)
    rec: dict = {"probe_version": PROBE_VERSION, "facts": facts, "time": time.time()}

    # 1. KVM
    why = check_kvm(args.kvm_device)
    if why:
        rec.update(line=f"no: {why}", exit=EXIT_NO, stage="kvm")
        return rec

    # 2. interpreter + SDK
    python = args.python
    if python is None:
        python, err = (ensure_default_venv(DEFAULT_VENV, args.verbose) if args.create_venv
                       else (os.path.join(DEFAULT_VENV, "bin", "python"), None))
        if err:
            rec.update(line=f"no: boxlite SDK not installed in {DEFAULT_VENV}: {err}", exit=EXIT_NO_SDK,
                       stage="venv", python=DEFAULT_VENV)
            return rec
    rec["python"] = python
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        rec.update(line=f"no: boxlite SDK not installed in {python} (no such interpreter)", exit=EXIT_NO_SDK,
                   stage="import")
        return rec
    res, code, err = run_attempt(python, ["--home", "/nonexistent", "--import-only"], 60)
    if not res or not res.get("ok"):
        rec.update(line=sdk_missing_line(python, res, err), exit=EXIT_NO_SDK, stage="import", detail=res)
        return rec
    rec["boxlite_version"] = res.get("boxlite_version")

    # 3. a real boot
    source = f"rootfs:{os.path.abspath(args.rootfs)}" if args.rootfs else args.image
    if args.rootfs and not os.path.isfile(os.path.join(args.rootfs, "index.json")):
        rec.update(line=f"no: --rootfs {args.rootfs} is not an OCI image layout (no index.json; "
                        f"build one with scripts/build-oci-rootfs.sh)", exit=EXIT_NO, stage="rootfs")
        return rec
    home = tempfile.mkdtemp(prefix="boxlite-probe-home-")
    argv = ["--home", home, "--timeout", str(args.timeout)]
    argv += ["--rootfs", os.path.abspath(args.rootfs)] if args.rootfs else ["--image", args.image]
    t0 = time.monotonic()
    try:
        res, code, err = run_attempt(python, argv, args.timeout + 90)
    finally:
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    rec["elapsed_seconds"] = round(time.monotonic() - t0, 2)
    rec["detail"] = res
    if res is None:
        tail = [ln for ln in err.splitlines() if ln.strip()][-1:] or [err or "no output"]
        rec.update(line=f"no: boot attempt with boxlite {rec['boxlite_version']} from {source} failed: "
                        f"{one_line(tail[0], 300)}", exit=EXIT_NO, stage="start")
        return rec
    if res.get("ok"):
        what = "a boxlite box on the fake VM (no VM isolation)" if fake_vm_runtime() else "a boxlite VM"
        rec.update(line=f"yes: booted {what} in {res.get('boot_seconds', 0):.1f}s "
                        f"(boxlite {res.get('boxlite_version')}, {source})", exit=EXIT_YES, stage="done")
        return rec
    rec.update(line=boot_failure_line(res, facts, source), exit=EXIT_NO, stage=res.get("stage", "start"))
    return rec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="probe-vm", description="Can this machine boot BoxLite micro-VMs?")
    ap.add_argument("--python", help="interpreter whose boxlite SDK is probed (default: the "
                                     "python/testbed/.venv-real venv, created on demand)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--rootfs", default=os.environ.get("BOXLITE_TEST_ROOTFS") or None,
                     help="local OCI layout directory to boot (default: $BOXLITE_TEST_ROOTFS)")
    src.add_argument("--image", default="alpine:latest", help="image reference (needs a registry)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for start() (default 60)")
    ap.add_argument("--kvm-device", default=os.environ.get("BOXLITE_PROBE_KVM_DEVICE", "/dev/kvm"))
    cache = ap.add_mutually_exclusive_group()
    cache.add_argument("--cached", action="store_true", help="reuse a cached result for this boot")
    cache.add_argument("--refresh", action="store_true", help="ignore the cache (the default; kept for clarity)")
    ap.add_argument("--no-create-venv", dest="create_venv", action="store_false",
                    help="do not create the default venv when it is missing")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary BOXLITE_HOME for inspection")
    ap.add_argument("--json", action="store_true", help="print the full JSON record instead of the line")
    ap.add_argument("--verbose", "-v", action="store_true", help="details on stderr")
    args = ap.parse_args(argv)
    if args.timeout <= 0:
        ap.error("--timeout must be positive")
    if args.rootfs and "--image" in (argv if argv is not None else sys.argv):
        ap.error("--rootfs and --image are mutually exclusive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    facts = host_facts(args.kvm_device)
    python_key = args.python or os.path.join(DEFAULT_VENV, "bin", "python")
    source = f"rootfs:{os.path.abspath(args.rootfs)}" if args.rootfs else args.image
    path = cache_path(facts, python_key, source)

    rec = load_cache(path, facts) if args.cached else None
    if rec is not None and rec.get("stage") in ("import", "venv"):
        # "not installed" may have been fixed since; re-check (cheap) before trusting it.
        py = python_key
        if os.path.isfile(py):
            res, _c, _e = run_attempt(py, ["--home", "/nonexistent", "--import-only"], 60)
            if res and res.get("ok"):
                rec = None
    if rec is None:
        rec = probe(args)
        rec["cache_file"] = path
        save_cache(path, rec)
        rec["cached"] = False
    else:
        rec["cached"] = True

    if args.verbose:
        print(json.dumps(rec, indent=1, sort_keys=True), file=sys.stderr)
    if args.json:
        print(json.dumps(rec, sort_keys=True))
    else:
        print(rec["line"])
    return int(rec["exit"])


if __name__ == "__main__":
    sys.exit(main())

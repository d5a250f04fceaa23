"""Starts the fake VM (crates/fakevm) for tests: its daemon plus a runtime directory whose
``boxlite-shim`` hands boxes to it. Export ``BOXLITE_RUNTIME_DIR`` from :meth:`FakeVm.env` and
the unmodified boxlite runtime (wheel, ``boxlite serve``) runs its boxes on it.

TEST ONLY: box commands run as host processes (own mount namespace, chroot into the box's
rootfs); there is NO VM isolation. Standard library only.

CLI (used by scripts/test.sh): ``python3 fakevm.py BINARY WORKDIR [RUNTIME_FILES_DIR]`` starts
the daemon, prints ``BOXLITE_RUNTIME_DIR=…`` and ``BOXLITE_FAKEVM_PID=…`` and leaves it running.
"""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def default_binary() -> Path | None:
    """The debug build of boxlite-fakevm in this checkout, if one exists."""
    for p in sorted(REPO.glob("target/*/debug/boxlite-fakevm")) + [REPO / "target/debug/boxlite-fakevm"]:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def unavailable_reason(binary: Path | None) -> str | None:
    """Why the fake VM cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "the fake VM needs root (each box command gets its own mount namespace and chroot)"
    if binary is None or not Path(binary).is_file():
        return "boxlite-fakevm is not built (cargo build -p boxlite-fakevm)"
    if not Path("/usr/bin/python3").exists():
        return "/usr/bin/python3 is missing (the fake boxlite-shim is a Python script)"
    return None


class FakeVm:
    def __init__(self, binary: Path, workdir: Path, runtime_files: Path | None = None):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.runtime_files = runtime_files
        self.socket = f"sandbank-fakevm-{os.getpid()}-{secrets.token_hex(4)}"
        self.runtime_dir = self.workdir / "runtime"
        self.log_path = self.workdir / "fakevm.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "FakeVm":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--socket", self.socket],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith(b"BOXLITE_FAKEVM_READY"):
            self.stop()
            raise RuntimeError(
                f"fake VM daemon did not start within {timeout}s: {self.log_path.read_text(errors='replace')[-2000:]}"
            )
        cmd = [str(self.binary), "install-runtime", "--socket", self.socket, "--dir", str(self.runtime_dir)]
        if self.runtime_files:
            cmd += ["--runtime-files", str(self.runtime_files)]
        subprocess.run(cmd, check=True, timeout=30)
        return self

    def env(self) -> dict[str, str]:
        return {"BOXLITE_RUNTIME_DIR": str(self.runtime_dir)}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> "FakeVm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    binary, workdir = Path(argv[0]), Path(argv[1])
    reason = unavailable_reason(binary)
    if reason:
        print(f"fake VM unavailable: {reason}", file=sys.stderr)
        return 3
    vm = FakeVm(binary, workdir, Path(argv[2]) if len(argv) == 3 else None).start()
    print(f"BOXLITE_RUNTIME_DIR={vm.runtime_dir}")
    print(f"BOXLITE_FAKEVM_PID={vm.proc.pid}")
    print(f"BOXLITE_FAKEVM_SOCKET={vm.socket}")
    # The daemon keeps running after this launcher exits; its stdout is no longer read.
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

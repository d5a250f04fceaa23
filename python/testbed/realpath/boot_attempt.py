"""Try to boot one tiny BoxLite box with the *real* SDK and report as JSON.

Run by ``probe.py`` inside the interpreter under test (the one whose
``boxlite`` is being probed), as a plain script::

    PYTHON boot_attempt.py --home DIR [--rootfs DIR | --image REF] --timeout S

Prints exactly one line on stdout starting with ``BOXLITE_PROBE_RESULT `` and
followed by a JSON object; everything else (SDK logging, tracebacks) goes to
stderr. Exit status 0 = booted and ran ``echo``, 1 = failed, 2 = boxlite is
not importable (or is the testbed simulator).

Only the standard library and ``boxlite`` are used: this file must run in a
bare venv holding nothing but ``pip install boxlite``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
import time
import traceback

MARK = "BOXLITE_PROBE_RESULT "
# Phrases in BoxLite's logs that tell why a guest died (searched after a failed boot).
LOG_PATTERNS = (
    "KVM_EXIT_INTERNAL_ERROR",
    "KVM_EXIT",
    "internal error",
    "failed to start",
    "Failed to",
    "error",
    "panic",
)


def emit(result: dict, code: int) -> None:
    sys.stdout.write(MARK + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def describe(exc: BaseException) -> dict:
    cls = type(exc)
    return {
        "error_class": f"{cls.__module__}.{cls.__name__}",
        "error_code": getattr(cls, "code", None),
        "message": str(exc) or repr(exc),
    }


def scan_logs(home: str, limit: int = 6) -> list[str]:
    """Lines from BoxLite's log files under the home that explain a failure."""
    hits: list[tuple[int, str]] = []
    walks = [os.walk(os.path.join(home, "logs")), os.walk(os.path.join(home, "boxes"))]
    for root, dirs, files in (entry for walk in walks for entry in walk):
        # never descend into guest filesystems, disks or binaries
        dirs[:] = [d for d in dirs if d not in ("rootfs", "images", "mounts", "disks", "bin", "layers")]
        for name in files:
            if not (name.endswith((".log", ".stderr")) or "log" in root.split(os.sep)[-1]
                    or name.startswith("console")):
                continue
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                # only regular files: the box directory holds FIFOs/sockets that block open()
                if not stat.S_ISREG(st.st_mode) or st.st_size > 8 * 1024 * 1024:
                    continue
                with open(path, "r", encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        low = line.lower()
                        for rank, pat in enumerate(LOG_PATTERNS):
                            if pat.lower() in low:
                                hits.append((rank, line.strip()[:300]))
                                break
            except OSError:
                continue
    hits.sort(key=lambda h: h[0])
    seen: list[str] = []
    for _rank, line in hits:
        if line not in seen:
            seen.append(line)
        if len(seen) >= limit:
            break
    return seen


async def attempt(args: argparse.Namespace) -> tuple[dict, int]:
    import boxlite  # noqa: F401  (import errors are handled by the caller)

    result: dict = {
        "boxlite_version": getattr(boxlite, "__version__", None),
        "boxlite_file": getattr(boxlite, "__file__", None),
        "source": f"rootfs:{args.rootfs}" if args.rootfs else args.image,
    }
    rt = boxlite.Boxlite(boxlite.Options(home_dir=args.home))
    box = None
    stage = "create"
    t0 = time.monotonic()
    try:
        kw = dict(cpus=1, memory_mib=args.memory, auto_remove=False)
        if args.rootfs:
            kw["rootfs_path"] = args.rootfs
        else:
            kw["image"] = args.image
        box = await rt.create(boxlite.BoxOptions(**kw), name=f"probe-{os.getpid()}")
        stage = "start"
        t0 = time.monotonic()
        await asyncio.wait_for(box.start(), timeout=args.timeout)
        boot_s = time.monotonic() - t0
        result["boot_seconds"] = round(boot_s, 2)
        stage = "exec"
        ex = await asyncio.wait_for(box.exec("echo", args=["boxlite-probe-ok"]), timeout=30)
        chunks: list[str] = []

        async def drain(stream):
            if stream is None:
                return
            async for chunk in stream:
                chunks.append(chunk.decode() if isinstance(chunk, bytes) else chunk)

        try:
            out = ex.stdout()
        except Exception:  # stream not available
            out = None
        try:
            err = ex.stderr()
        except Exception:
            err = None
        await asyncio.wait_for(asyncio.gather(drain(out), drain(err)), timeout=30)
        res = await asyncio.wait_for(ex.wait(), timeout=30)
        result["exit_code"] = getattr(res, "exit_code", None)
        result["stdout"] = "".join(chunks)[:200]
        if "boxlite-probe-ok" not in result["stdout"] or result["exit_code"] != 0:
            result.update(ok=False, stage=stage,
                          message=f"booted in {boot_s:.1f}s but `echo` gave exit {result['exit_code']} "
                                  f"and output {result['stdout']!r}")
            return result, 1
        result.update(ok=True, stage="done")
        return result, 0
    except asyncio.TimeoutError:
        result.update(ok=False, stage=stage, error_class="asyncio.TimeoutError", error_code="timeout",
                      message=f"{stage} did not finish within {args.timeout if stage == 'start' else 30}s")
        return result, 1
    except Exception as exc:  # the SDK's error is the valuable part
        result.update(ok=False, stage=stage, elapsed_seconds=round(time.monotonic() - t0, 2), **describe(exc))
        result["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
        return result, 1
    finally:
        if box is not None:
            try:
                await asyncio.wait_for(box.stop(), timeout=20)
            except BaseException:
                pass
            try:
                await asyncio.wait_for(rt.remove(box.id, force=True), timeout=20)
            except BaseException:
                pass
        result["log_lines"] = scan_logs(args.home)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--home", required=True)
    ap.add_argument("--rootfs")
    ap.add_argument("--image", default="alpine:latest")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--import-only", action="store_true",
                    help="only check that the real boxlite SDK is importable")
    args = ap.parse_args()

    try:
        import boxlite
    except Exception as exc:  # ImportError, or a broken native module
        emit({"ok": False, "stage": "import", **describe(exc)}, 2)
    info = {
        "boxlite_version": getattr(boxlite, "__version__", None),
        "boxlite_file": getattr(boxlite, "__file__", None),
        "python": sys.executable,
        "python_version": sys.version.split()[0],
    }
    # The testbed simulator is importable as `boxlite` too; it is not the real SDK.
    if getattr(boxlite, "__testbed__", False) or getattr(boxlite, "IS_SIMULATOR", False) or (
        info["boxlite_file"] and os.sep + "testbed" + os.sep + "boxlite" + os.sep in info["boxlite_file"]
    ):
        emit({"ok": False, "stage": "import", "simulator": True,
              "message": f"'boxlite' in {sys.executable} is the testbed simulator ({info['boxlite_file']})",
              **info}, 2)
    if not hasattr(boxlite, "Boxlite") or not hasattr(boxlite, "BoxOptions"):
        emit({"ok": False, "stage": "import",
              "message": f"'boxlite' at {info['boxlite_file']} lacks Boxlite/BoxOptions", **info}, 2)
    if args.import_only:
        emit({"ok": True, "stage": "import", **info}, 0)

    result, code = asyncio.run(attempt(args))
    result.update(info)
    emit(result, code)


if __name__ == "__main__":
    main()

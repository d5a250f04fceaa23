"""Starts the real BoxLite REST servers on loopback for the test command, over the fake VM
(docs/testing.md, "Real servers"). Standard library only.

* ``serve``: ``boxlite serve`` 0.11.0 (crate ``boxlite-cli``, built with ``BOXLITE_DEPS_STUB=1``
  so it carries no runtime of its own) with ``BOXLITE_RUNTIME_DIR`` = the fake VM's shim + the
  boxlite wheel's runtime files, and an API key.
* ``reference``: BoxLite's SSE-era FastAPI reference server, run from a directory outside this
  repository (``BOXLITE_REFERENCE_SERVER_DIR``) on the real wheel, with the two start-up edits it
  needs for SDK 0.10 applied to a temporary copy; OAuth client credentials, prefix ``default``.

CLI: ``python3 real_servers.py serve BINARY RUNTIME_DIR WORKDIR`` or ``python3 real_servers.py
reference SERVER_DIR PYTHON RUNTIME_DIR WORKDIR`` start the server, print ``KEY=value`` lines
(URL, credentials, PID) and leave it running; exit 3 with a one-line reason when it cannot run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wheel_runtime_files(version: str = "0.10.8") -> Path | None:
    """The runtime files the boxlite wheel extracted (its first runtime creates them)."""
    base = Path.home() / ".local/share/boxlite/runtimes"
    for d in sorted(base.glob(f"v{version}-*")):
        if (d / ".complete").exists() and (d / "boxlite-guest").exists():
            return d
    return None


def _request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(proc: subprocess.Popen, check, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-1500:]}")
        try:
            if check():
                return
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"server not ready within {START_TIMEOUT}s ({last}): {log.read_text(errors='replace')[-1500:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


def start_boxlite_serve(binary: Path, runtime_dir: Path, workdir: Path) -> tuple[subprocess.Popen, dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    port, key = free_port(), "blk_" + secrets.token_hex(16)
    home = workdir / "serve-home"
    log = workdir / "boxlite-serve.log"
    env = {**os.environ, "BOXLITE_RUNTIME_DIR": str(runtime_dir)}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--home", str(home),
                                 "--api-key", key], stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(proc, lambda: _request(url + "/v1/config", headers={"Authorization": f"Bearer {key}"})[0] == 200, log)
    return proc, {"BOXLITE_REAL_CURRENT_URL": url, "BOXLITE_REAL_CURRENT_API_KEY": key,
                  "BOXLITE_REAL_CURRENT_PID": str(proc.pid)}


class _InfoCalls(ast.NodeVisitor):
    """Finds `<name>.info()` calls and whether each sits in an `async def`."""

    def __init__(self):
        self.stack: list[bool] = []
        self.calls: list[tuple[int, bool]] = []

    def _fn(self, node, is_async):
        self.stack.append(is_async)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node):
        self._fn(node, False)

    def visit_AsyncFunctionDef(self, node):
        self._fn(node, True)

    def visit_Call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "info" and not node.args and isinstance(f.value, ast.Name) \
                and f.value.id in ("box_handle", "cloned", "imported"):
            self.calls.append((node.lineno, bool(self.stack and self.stack[-1])))
        self.generic_visit(node)


def patch_reference_server(source: str) -> str:
    """The start-up edits for SDK 0.10: no `image_registries=` (0.9/0.10 refuse it), `Box.info()`
    awaited when it is a coroutine (it became one in 0.10), and the upload's contents-only copy
    spelled the way 0.10.8 understands."""
    out, n = re.subn(r"\n\s*image_registries=runtime_config\.image_registries,", "", source, count=1)
    if n != 1:
        raise RuntimeError("reference server: the boxlite.Options(image_registries=...) argument was not found")
    finder = _InfoCalls()
    finder.visit(ast.parse(out))
    if not finder.calls or not all(is_async for _, is_async in finder.calls):
        raise RuntimeError(f"reference server: .info() calls outside async functions: {finder.calls}")
    out, n = re.subn(r"\b(box_handle|cloned|imported)\.info\(\)", r"(await _sandbank_info(\1))", out)
    if n != len(finder.calls):
        raise RuntimeError(f"reference server: patched {n} of {len(finder.calls)} .info() calls")
    # 3. `CopyOptions(include_parent=False)` (copy a directory's contents) is newer than 0.10.8,
    # whose CopyOptions refuses the argument; there the same copy is spelled `SRC/.`.
    out, n = re.subn(r"await box_handle\.copy_in\(\s*extract_dir, path,\s*"
                     r"boxlite\.CopyOptions\(overwrite=overwrite, include_parent=False\),\s*\)",
                     "await box_handle.copy_in(*_sandbank_contents_copy(extract_dir, path, overwrite))", out)
    if n != 1:
        raise RuntimeError("reference server: the upload's copy_in(..., include_parent=False) was not found")
    helper = ("\n\nasync def _sandbank_info(handle):  # added by the sandbank test command\n"
              "    import inspect\n    info = handle.info()\n"
              "    return await info if inspect.isawaitable(info) else info\n\n\n"
              "def _sandbank_contents_copy(src, dest, overwrite):  # added by the sandbank test command\n"
              "    import os, boxlite\n"
              "    try:\n"
              "        return src, dest, boxlite.CopyOptions(overwrite=overwrite, include_parent=False)\n"
              "    except TypeError:\n"
              "        return os.path.join(src, '.'), dest, boxlite.CopyOptions(overwrite=overwrite)\n")
    # After the module docstring and `from __future__` imports: before the first other statement.
    tree = ast.parse(out)
    first = next(node for node in tree.body
                 if not (isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant))
                 and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"))
    lines = out.splitlines(keepends=True)
    return "".join(lines[: first.lineno - 1]) + helper.lstrip("\n") + "\n" + "".join(lines[first.lineno - 1:])


def start_reference_server(src: Path, python: Path, runtime_dir: Path, workdir: Path) -> tuple[subprocess.Popen, dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "reference-server"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(src, copy)
    server = copy / "server.py"
    server.write_text(patch_reference_server(server.read_text()))
    port = free_port()
    client_id, client_secret = "sandbank-test", secrets.token_hex(16)
    log = workdir / "reference-server.log"
    env = {**os.environ, "BOXLITE_RUNTIME_DIR": str(runtime_dir),
           "BOXLITE_RUNTIME_HOME_DIR": str(workdir / "reference-home"),
           "BOXLITE_SERVER_JWT_SECRET": secrets.token_hex(32),
           "BOXLITE_SERVER_CLIENT_ID": client_id, "BOXLITE_SERVER_CLIENT_SECRET": client_secret}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(python), "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=copy,
                                stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": client_secret}).encode()

    def ready():
        if _request(url + "/v1/config")[0] != 200:
            return False
        status, body = _request(url + "/v1/oauth/tokens", data=form,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        return status == 200 and "access_token" in json.loads(body or b"{}")

    _wait_ready(proc, ready, log)
    return proc, {"BOXLITE_REAL_SSE_URL": url, "BOXLITE_REAL_SSE_CLIENT_ID": client_id,
                  "BOXLITE_REAL_SSE_CLIENT_SECRET": client_secret, "BOXLITE_REAL_SSE_PREFIX": "default",
                  "BOXLITE_REAL_SSE_PID": str(proc.pid)}


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["serve"] and len(argv) == 4:
            _, values = start_boxlite_serve(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        elif argv[:1] == ["reference"] and len(argv) == 5:
            if not (Path(argv[1]) / "server.py").is_file():
                print(f"no reference server at {argv[1]} (server.py missing)", file=sys.stderr)
                return 3
            _, values = start_reference_server(Path(argv[1]), Path(argv[2]), Path(argv[3]), Path(argv[4]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (RuntimeError, OSError) as e:
        print(f"real server did not start: {e}", file=sys.stderr)
        return 1
    for k, v in values.items():
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
# Creates the venvs of the *official* clients that judge the test server:
#   .venv-official      the real boxlite 0.10.8 SDK (its REST client speaks the current dialect)
#                       and boxrun-sdk from PyPI (BoxRun) — tests/test_official_clients.py;
#   .venv-official-sse  the boxlite 0.9.3 SDK, whose REST client speaks the SSE-era dialect —
#                       tests/test_official_sse_client.py (its own venv: one boxlite per venv).
# Each with pytest and requests. Idempotent. Prints the first venv's interpreter path on the
# last line (the second one's is beside it: .venv-official-sse/bin/python).
# The test server itself runs from python/testbed/.venv (the simulator venv).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${BOXLITE_TESTBED_BASE_PYTHON:-python3}"
COMMON=("pytest>=8" "pytest-asyncio>=0.23" "requests>=2.31" "aiohttp>=3.9")

make_venv() { # VENV PKG...
  local venv="$1"
  shift
  local stamp="$venv/.installed-pkgs"
  if [[ ! -x "$venv/bin/python" ]]; then
    "$PYTHON" -m venv "$venv"
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$*" ]]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    printf '%s' "$*" >"$stamp"
  fi
}

make_venv "$HERE/.venv-official-sse" "boxlite==0.9.3" "${COMMON[@]}"
make_venv "$HERE/.venv-official" "boxlite==0.10.8" "boxrun-sdk" "${COMMON[@]}"
echo "$HERE/.venv-official/bin/python"

#!/usr/bin/env bash
# Creates python/testbed/.venv-official with the *official* clients used by
# tests/test_official_clients.py: the real boxlite 0.10.8 SDK (its REST client
# targets dialect B) and boxrun-sdk from PyPI (dialect C), plus pytest and
# requests. Idempotent. Prints the venv's interpreter path on the last line.
# The test server itself runs from python/testbed/.venv (the simulator venv).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-official"
PYTHON="${BOXLITE_TESTBED_BASE_PYTHON:-python3}"
PKGS=("boxlite==0.10.8" "boxrun-sdk" "pytest>=8" "pytest-asyncio>=0.23" "requests>=2.31" "aiohttp>=3.9")
STAMP="$VENV/.installed-pkgs"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "${PKGS[*]}" ]]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PKGS[@]}"
  printf '%s' "${PKGS[*]}" > "$STAMP"
fi
echo "$VENV/bin/python"

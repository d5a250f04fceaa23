#!/usr/bin/env bash
# Creates python/testbed/.venv with the SDK simulator and the test server installed (editable),
# plus pytest; idempotent. Prints the venv's interpreter path on the last line.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PYTHON="${BOXLITE_TESTBED_BASE_PYTHON:-python3}"
STAMP="$VENV/.installed-from"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$HERE/pyproject.toml" -nt "$STAMP" ]]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$HERE[test]"
  cp "$HERE/pyproject.toml" "$STAMP"
fi
echo "$VENV/bin/python"

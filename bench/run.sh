#!/usr/bin/env bash
# Builds the release addons and runs the side-by-side benchmarks on the test bed (not part of CI):
#   bench/run.sh [--modes local,current,sse,boxrun] [--rounds N] [--quick] [--markdown]
# The official-client comparison needs python/testbed/.venv-official (setup-official.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --release
"$ROOT/python/testbed/setup-official.sh" >/dev/null
exec node "$ROOT/bench/run.mjs" "$@"

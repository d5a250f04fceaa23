#!/usr/bin/env bash
# Builds the release addons and runs the benchmarks against the test bed (not part of CI):
#   bench/run.sh [--modes local,sse,current,boxrun] [--rounds N] [--mb N] [--concurrency N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --release
exec node "$ROOT/bench/run.mjs" "$@"

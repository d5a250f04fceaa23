#!/usr/bin/env bash
# The embedded-Python tests of local mode (need the `local` feature, which links libpython into
# the test binaries; the addon itself never links it): engine, error cases, and the whole client
# against the SDK simulator in python/testbed/.venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYO3_PYTHON="${PYO3_PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}"
host="$(rustc -vV | sed -n 's/^host: //p')"
# The same target triple as `napi build`, so the compiled dependencies are shared.
exec cargo test -p boxlite-core --features local --target "$host" --lib --test local_engine --test local_errors --test local_client_boxes --test local_client_exec --test local_client_files

#!/usr/bin/env bash
# Large-file throughput against our test server and a real `boxlite serve` 0.11.0 over the fake
# VM (not part of CI): bench/transfer.sh [--mib 1024] [--rounds 2] [--markdown]
# Builds the release addon, starts the fake VM and the server the way the test command does
# (python/testbed/realpath/), then runs bench/transfer.mjs. The fake VM runs box commands on the
# host, with no VM isolation (docs/testing.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"

PROFILE_FLAG=--release
setup_node_packages
setup_python_testbed >/dev/null
build_addon
PYTHON="$("$ROOT/python/testbed/setup-official.sh" | tail -n 1)"
export BOXLITE_TEST_ROOTFS
BOXLITE_TEST_ROOTFS="$(setup_test_rootfs | tail -n 1)"
SERVE_BIN="$(setup_boxlite_serve | tail -n 1)"
FAKEVM_BIN="$(build_fakevm | tail -n 1)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sandbank-transfer.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
export_lines() { # exports the KEY=value lines of stdin; remembers *_PID values
  while IFS='=' read -r key value; do
    export "$key=$value"
    if [[ "$key" == *_PID ]]; then pids+=("$value"); fi
  done
}
export_lines < <("$PYTHON" "$ROOT/python/testbed/realpath/fakevm.py" "$FAKEVM_BIN" "$WORK")
WHEEL_RUNTIME="$(cd "$ROOT/python/testbed" && "$PYTHON" -c \
  'from realpath.real_servers import wheel_runtime_files as w; print(w() or "")')"
if [[ -z "$WHEEL_RUNTIME" ]]; then
  echo "the boxlite wheel's runtime files are missing: run the test command once (it extracts them)" >&2
  exit 1
fi
"$FAKEVM_BIN" install-runtime --socket "$BOXLITE_FAKEVM_SOCKET" --dir "$WORK/server-runtime" \
  --runtime-files "$WHEEL_RUNTIME"
export_lines < <("$PYTHON" "$ROOT/python/testbed/realpath/real_servers.py" serve "$SERVE_BIN" \
  "$WORK/server-runtime" "$WORK")
node "$ROOT/bench/transfer.mjs" "$@"

#!/usr/bin/env bash
# The README's test command: sets up everything (scripts/setup.sh) and runs every suite —
# cargo test, the test bed's pytest suites, vitest (unit, packaging, integration), the fast
# release checks. Runs all suites even when one fails, then exits non-zero if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"

set -e
setup_system_packages
setup_node_packages
TESTBED_PYTHON="$(setup_python_testbed | tail -n 1)"
build_addon
set +e

export BOXLITE_TESTBED_PYTHON="$TESTBED_PYTHON"
failed=()
# What failed, in a few lines per failed suite, repeated at the very end: a CI page often shows
# only the tail of this output.
failure_digest=()
SUITE_LOG="$(mktemp "${TMPDIR:-/tmp}/sandbank-suite.XXXXXX")"
suite() {
  local name="$1"
  shift
  log "$name: $*"
  local started=$SECONDS
  if "$@" 2>&1 | tee "$SUITE_LOG"; then
    echo "-- $name passed in $((SECONDS - started)) s"
  else
    echo "-- $name FAILED in $((SECONDS - started)) s"
    failed+=("$name")
    failure_digest+=("== $name" "$(sed 's/\x1b\[[0-9;]*m//g' "$SUITE_LOG" |
      grep -E -m 40 '(^| )(FAIL|FAILED|×|✗)( |$)|panicked at|^(Assertion|Type|Range)?Error|^E  |test result: FAILED' ||
      tail -n 20 "$SUITE_LOG")")
  fi
}

# The same target triple as `napi build`, so the suites reuse its compiled dependencies.
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
lint() {
  cargo fmt --all --check &&
    cargo clippy --workspace --all-targets --target "$HOST_TRIPLE" -- -D warnings &&
    PYO3_PYTHON="${PYO3_PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}" \
      cargo clippy -p boxlite-core --features local --all-targets --target "$HOST_TRIPLE" -- -D warnings
}
suite "lint (rustfmt, clippy)" lint
# The streamed-transfer test moves 1 GB each way (memory must stay flat).
suite "cargo test" env BOXLITE_TEST_TRANSFER_MB="${BOXLITE_TEST_TRANSFER_MB:-1000}" \
  cargo test --workspace --target "$HOST_TRIPLE"
if [[ -f "$ROOT/scripts/test-local-engine.sh" ]]; then
  suite "cargo test (embedded Python)" "$ROOT/scripts/test-local-engine.sh"
fi
# The official clients' venv holds the real boxlite 0.10.8 wheel: the simulator's parity tests
# compare against it (nothing there boots a VM).
OFFICIAL_PYTHON="$("$ROOT/python/testbed/setup-official.sh" | tail -n 1)"
suite "pytest (test bed)" env BOXLITE_TEST_PYTHON="${BOXLITE_TEST_PYTHON:-$OFFICIAL_PYTHON}" \
  "$ROOT/python/testbed/.venv/bin/python" -m pytest "$ROOT/python/testbed/tests" -q -p no:cacheprovider -rs
suite "pytest (official boxlite and boxrun-sdk clients vs the test server)" \
  "$OFFICIAL_PYTHON" -m pytest "$ROOT/python/testbed/tests/test_official_clients.py" -q -p no:cacheprovider -rs
suite "pytest (official SSE-era boxlite 0.9.3 client vs the test server)" \
  "$ROOT/python/testbed/.venv-official-sse/bin/python" -m pytest \
  "$ROOT/python/testbed/tests/test_official_sse_client.py" -q -p no:cacheprovider -rs
# The official Node SDK (@boxlite-ai/boxlite, cached outside the checkout) judges the test server
# in vitest's `official` project.
if BOXLITE_OFFICIAL_NODE_SDK="$("$ROOT/scripts/setup-official-node.sh" | tail -n 1)"; then
  export BOXLITE_OFFICIAL_NODE_SDK
else
  echo "-- installing the official Node SDK FAILED"
  failed+=("official Node SDK install")
fi
suite "vitest" npx vitest run
# Fast release checks (docs/release.md): what a loader sees in this build's addons, the release
# profile, the CI workflow lint. The cross builds and their checks: scripts/check-release.sh.
suite "release checks (this build's addons, release profile, workflow lint)" \
  "$ROOT/scripts/check-release.sh" --no-build static-dev profile workflow

# ---- The real boxlite runtime over the fake VM (crates/fakevm; docs/testing.md). The fake VM
# replaces only the micro-VM, which cannot boot here: box commands run as host processes, with
# NO VM isolation. Everything above it is the unmodified boxlite 0.10.8 wheel.
TEST_ROOTFS="$(setup_test_rootfs | tail -n 1)"
FAKEVM_BIN="$(build_fakevm | tail -n 1)"
FAKEVM_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sandbank-fakevm.XXXXXX")"
fakevm_env=""
fakevm_started=""
if fakevm_env="$("$OFFICIAL_PYTHON" "$ROOT/python/testbed/realpath/fakevm.py" "$FAKEVM_BIN" "$FAKEVM_DIR")"; then
  while IFS='=' read -r key value; do export "$key=$value"; done <<<"$fakevm_env"
  fakevm_started=1
  stop_fakevm() {
    kill "$BOXLITE_FAKEVM_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$BOXLITE_FAKEVM_PID" 2>/dev/null || break; sleep 0.2; done
    rm -rf "$FAKEVM_DIR"
  }
  trap stop_fakevm EXIT
fi
suite "pytest (fake VM under the real boxlite wheel)" env BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" \
  BOXLITE_FAKEVM_BIN="$FAKEVM_BIN" "$OFFICIAL_PYTHON" -m pytest \
  "$ROOT/python/testbed/tests/test_fakevm.py" -q -p no:cacheprovider -rs
# The official Node SDK in local mode (its own runtime, unmodified) on the same fake VM.
if [[ -n "${BOXLITE_RUNTIME_DIR:-}" ]]; then
  suite "vitest official (Node SDK local mode on the fake VM)" env BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" \
    npx vitest run --project official -t "local mode on the fake VM"
else
  echo "-- skipped: the official Node SDK in local mode (the fake VM could not start; see above)"
fi

# Local mode on the real wheel: the probe boots a box on the fake VM, so target real-sdk runs the
# integration suites (conformance, terminal, process).
if [[ -n "$fakevm_started" ]]; then
  suite "vitest integration, local mode on the real boxlite wheel (fake VM)" env \
    BOXLITE_TEST_TARGET=real-sdk BOXLITE_TEST_REQUIRE_VM=1 BOXLITE_TEST_MODES=local \
    BOXLITE_TEST_PYTHON="$OFFICIAL_PYTHON" BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" \
    npx vitest run --project integration
else
  echo "-- skipped: suites on the real boxlite runtime (the fake VM could not start; reason above)"
fi

# ---- The real BoxLite REST servers over the fake VM, on loopback (docs/testing.md, "Real
# servers"): the conformance and terminal suites in remote mode against each.
real_server_pids=()
real_remote_suites() { # NAME, then the target's environment
  local name="$1"
  shift
  suite "vitest conformance + terminal, remote: $name (fake VM)" env BOXLITE_TEST_TARGET=remote \
    BOXLITE_TEST_REQUIRE_VM=1 BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" "$@" npx vitest run --project integration \
    __test__/integration/conformance.spec.ts __test__/integration/terminal.spec.ts
}
start_real_server() { # KIND ARGS... -> exports its KEY=value lines
  local out
  out="$("$OFFICIAL_PYTHON" "$ROOT/python/testbed/realpath/real_servers.py" "$@")" || return 1
  while IFS='=' read -r key value; do
    export "$key=$value"
    [[ "$key" == *_PID ]] && real_server_pids+=("$value")
  done <<<"$out"
}
if [[ -n "$fakevm_started" ]]; then
  trap 'for p in "${real_server_pids[@]}"; do kill -- "-$p" 2>/dev/null; done; stop_fakevm' EXIT
  WHEEL_RUNTIME="$(cd "$ROOT/python/testbed" && "$OFFICIAL_PYTHON" -c \
    'from realpath.real_servers import wheel_runtime_files as w; print(w() or "")')"
  SERVER_RUNTIME="$FAKEVM_DIR/server-runtime"
  # The servers need the runtime's other files (guest binary, mke2fs, …): the wheel's, which it
  # extracted when the suites above first used it.
  if [[ -n "$WHEEL_RUNTIME" ]]; then
    "$FAKEVM_BIN" install-runtime --socket "$BOXLITE_FAKEVM_SOCKET" --dir "$SERVER_RUNTIME" \
      --runtime-files "$WHEEL_RUNTIME"
  else
    echo "-- the boxlite wheel's runtime files were not found (~/.local/share/boxlite/runtimes/v0.10.8-*)"
  fi

  # `boxlite serve` 0.11.0: built when not cached, within a bound (docs/testing.md).
  serve_rc=0
  SERVE_BIN="$(setup_boxlite_serve)" || serve_rc=$?
  if ((serve_rc == 3)); then
    echo "-- skipped: boxlite serve 0.11.0 (not cached, and its build exceeded BOXLITE_SERVE_BUILD_TIMEOUT; reason above)"
  elif ((serve_rc == 0)) && start_real_server serve "$SERVE_BIN" "$SERVER_RUNTIME" "$FAKEVM_DIR"; then
    real_remote_suites "boxlite serve 0.11.0" BOXLITE_API_URL="$BOXLITE_REAL_CURRENT_URL" \
      BOXLITE_API_TOKEN="$BOXLITE_REAL_CURRENT_API_KEY" BOXLITE_API_DIALECT=current \
      BOXLITE_TEST_SERVER=boxlite-serve-0.11.0
  else
    echo "-- boxlite serve 0.11.0 could not be built or started (see above)"
    failed+=("boxlite serve 0.11.0")
  fi

  # The SSE-era reference server is third-party code kept outside this repository: named by
  # BOXLITE_REFERENCE_SERVER_DIR, or found in the conventional place (docs/testing.md).
  if [[ -z "${BOXLITE_REFERENCE_SERVER_DIR:-}" ]]; then
    dir="$ROOT"
    while [[ "$dir" != / ]]; do
      dir="$(dirname "$dir")"
      if [[ -f "$dir/shared/reference/real-servers/boxlite-reference-server/server.py" ]]; then
        BOXLITE_REFERENCE_SERVER_DIR="$dir/shared/reference/real-servers/boxlite-reference-server"
        break
      fi
    done
  fi
  if [[ -z "${BOXLITE_REFERENCE_SERVER_DIR:-}" ]]; then
    echo "-- skipped: SSE-era reference server (no copy found: set BOXLITE_REFERENCE_SERVER_DIR; docs/testing.md)"
  elif REFERENCE_PYTHON="$(setup_reference_server_venv | tail -n 1)" &&
    start_real_server reference "$BOXLITE_REFERENCE_SERVER_DIR" "$REFERENCE_PYTHON" "$BOXLITE_RUNTIME_DIR" "$FAKEVM_DIR"; then
    real_remote_suites "SSE-era reference server" BOXLITE_API_URL="$BOXLITE_REAL_SSE_URL" \
      BOXLITE_CLIENT_ID="$BOXLITE_REAL_SSE_CLIENT_ID" BOXLITE_CLIENT_SECRET="$BOXLITE_REAL_SSE_CLIENT_SECRET" \
      BOXLITE_PREFIX=default BOXLITE_API_DIALECT=sse
  else
    echo "-- the SSE-era reference server could not be started (see above)"
    failed+=("SSE-era reference server")
  fi
else
  echo "-- skipped: the real BoxLite servers (the fake VM could not start; reason above)"
fi

# ---- Against the real servers started above (BOXLITE_REAL_CURRENT_URL/_API_KEY: boxlite serve
# 0.11.0; BOXLITE_REAL_SSE_URL/_CLIENT_ID/_CLIENT_SECRET: the SSE-era reference server). The
# transcript test re-checks there the recorded answers that the test server is compared with.
if [[ -n "${BOXLITE_REAL_CURRENT_URL:-}" ]]; then
  suite "pytest (transcript of boxlite serve 0.11.0 vs the real one)" \
    "$ROOT/python/testbed/.venv/bin/python" -m pytest "$ROOT/python/testbed/tests/test_server_transcript.py" \
    -q -p no:cacheprovider -rs -k still_answers_as_recorded
fi
# The official clients judge the real servers too (their cycles state where each server places
# copied-in files: docs/testing.md).
if [[ -n "${BOXLITE_REAL_CURRENT_URL:-}" ]]; then
  suite "pytest (official Python REST client vs the real boxlite serve)" env BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" \
    "$OFFICIAL_PYTHON" -m pytest "$ROOT/python/testbed/tests/test_official_clients.py" -q -p no:cacheprovider \
    -rs -k against_a_real_serve
  suite "vitest official (Node SDK REST vs the real boxlite serve)" env BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" \
    npx vitest run --project official -t "against a real boxlite serve"
else
  echo "-- skipped: official clients vs the real boxlite serve (not started; see above)"
fi
if [[ -n "${BOXLITE_REAL_SSE_URL:-}" ]]; then
  suite "pytest (official SSE-era client vs the real reference server)" env BOXLITE_TEST_ROOTFS="$TEST_ROOTFS" \
    "$ROOT/python/testbed/.venv-official-sse/bin/python" -m pytest \
    "$ROOT/python/testbed/tests/test_official_sse_client.py" -q -p no:cacheprovider -rs -k against_a_real_server
else
  echo "-- skipped: the official SSE-era client vs the real reference server (not started; see above)"
fi

rm -f "$SUITE_LOG"
if ((${#failed[@]})); then
  echo
  echo "What failed (details above):"
  printf '%s\n' "${failure_digest[@]}"
  echo
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
echo
echo "all suites passed"

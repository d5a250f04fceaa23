#!/usr/bin/env bash
# Sets up everything the demo and the test suites need, idempotently: Debian packages, npm
# packages, the test-bed Python venvs and a debug build of both addon flavours.
# Usage: scripts/setup.sh [--release]   (also sourced by scripts/test.sh and scripts/demo.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE_FLAG=""
[[ "${1:-}" == "--release" ]] && PROFILE_FLAG="--release"

log() { printf '\n== %s\n' "$*"; }

setup_system_packages() {
  local missing=()
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  command -v tar >/dev/null 2>&1 || missing+=(tar)
  # The fake VM (crates/fakevm): protoc builds the guest agent's gRPC API, debugfs unpacks box
  # disks; debootstrap and umoci build the local OCI rootfs the real-runtime suites boot.
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  command -v debugfs >/dev/null 2>&1 || [[ -x /usr/sbin/debugfs ]] || missing+=(e2fsprogs)
  command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
  command -v umoci >/dev/null 2>&1 || missing+=(umoci)
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
      echo "need root to install ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

setup_node_packages() {
  if [[ ! -x "$ROOT/node_modules/.bin/napi" || "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]]; then
    log "installing npm packages"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

setup_python_testbed() {
  "$ROOT/python/testbed/setup.sh"
}

# The local OCI layout (Debian minbase) that the suites on the real boxlite runtime create boxes
# from — no registry needed. Built once (about a minute) and cached outside the checkout.
# Prints its path on the last line.
setup_test_rootfs() {
  local dir="${BOXLITE_TEST_ROOTFS:-$HOME/.cache/sandbank-boxlite/debian-oci}"
  if ! "$ROOT/scripts/build-oci-rootfs.sh" --check "$dir" >/dev/null 2>&1; then
    log "building the test rootfs (Debian minbase OCI layout) in $dir"
    mkdir -p "$(dirname "$dir")"
    "$ROOT/scripts/build-oci-rootfs.sh" "$dir" >&2
  fi
  echo "$dir"
}

# The fake VM under the real boxlite runtime (test only: box commands run on the host, no VM
# isolation). Prints the binary's path on the last line.
build_fakevm() {
  local triple
  triple="$(rustc -vV | sed -n 's/^host: //p')"
  log "building the fake VM (crates/fakevm)"
  (cd "$ROOT" && cargo build -p boxlite-fakevm --target "$triple" >&2)
  echo "$ROOT/target/$triple/debug/boxlite-fakevm"
}

# The Python environment of BoxLite's SSE-era reference server (which is not part of this
# repository: BOXLITE_REFERENCE_SERVER_DIR names a copy of it, docs/testing.md): the pins of its
# uv.lock plus the real boxlite 0.10.8 wheel. Cached outside the checkout; prints its python.
REFERENCE_SERVER_PKGS=(fastapi==0.129.0 starlette==0.52.1 sse-starlette==3.2.0 uvicorn==0.40.0
  pydantic==2.12.5 pyjwt==2.11.0 python-multipart==0.0.22 python-dotenv boxlite==0.10.8)
setup_reference_server_venv() {
  local venv="$HOME/.cache/sandbank-boxlite/reference-server-venv"
  local stamp="$venv/.installed-pkgs"
  if [[ ! -x "$venv/bin/python" ]]; then
    "${BOXLITE_TESTBED_BASE_PYTHON:-python3}" -m venv "$venv" >&2
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "${REFERENCE_SERVER_PKGS[*]}" ]]; then
    log "installing the reference server's packages"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${REFERENCE_SERVER_PKGS[@]}" >&2
    printf '%s' "${REFERENCE_SERVER_PKGS[*]}" >"$stamp"
  fi
  echo "$venv/bin/python"
}

# `boxlite serve` 0.11.0 (crate boxlite-cli), built once without its own runtime
# (BOXLITE_DEPS_STUB=1: its build script would otherwise download one from a code forge) and
# cached outside the checkout; every later run reuses the binary. An uncached build costs about
# 25 min on an idle 2-core machine and up to ~2 h on a loaded one (docs/testing.md), so it is
# bounded by BOXLITE_SERVE_BUILD_TIMEOUT seconds (default 2700). Its target directory is kept,
# so a build cut off by the bound resumes on the next run. Prints the binary's path; returns 3
# (with the reason on stderr) when the bound cut the build off, 1 when the build failed.
BOXLITE_SERVE_ROOT="$HOME/.cache/sandbank-boxlite/boxlite-cli-0.11.0"
setup_boxlite_serve() {
  local bin="$BOXLITE_SERVE_ROOT/bin/boxlite" build="$HOME/.cache/sandbank-boxlite/boxlite-cli-0.11.0-build"
  local limit="${BOXLITE_SERVE_BUILD_TIMEOUT:-2700}" rc=0
  if [[ ! -x "$bin" ]]; then
    log "building boxlite serve 0.11.0 (uncached; at most ${limit}s) into $BOXLITE_SERVE_ROOT" >&2
    BOXLITE_DEPS_STUB=1 timeout --kill-after=30 "$limit" nice -n 10 cargo install --locked boxlite-cli \
      --version 0.11.0 --root "$BOXLITE_SERVE_ROOT" --target-dir "$build" >&2 || rc=$?
    if ((rc == 124 || rc == 137)); then
      echo "boxlite serve 0.11.0 is not cached and its build did not finish within ${limit}s (BOXLITE_SERVE_BUILD_TIMEOUT); the next run resumes it" >&2
      return 3
    elif ((rc != 0)); then
      echo "building boxlite serve 0.11.0 failed (cargo install exited $rc; see above)" >&2
      return 1
    fi
    rm -rf "$build"
  fi
  echo "$bin"
}

build_addon() {
  log "building the addon (main flavour${PROFILE_FLAG:+, release})"
  (cd "$ROOT" && npx napi build --platform $PROFILE_FLAG --js binding.cjs --dts binding.d.ts)
  if [[ -x "$ROOT/scripts/build-local-addon.sh" ]]; then
    log "building the addon (local flavour${PROFILE_FLAG:+, release})"
    "$ROOT/scripts/build-local-addon.sh" $PROFILE_FLAG
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  setup_system_packages
  setup_node_packages
  setup_python_testbed
  build_addon
fi

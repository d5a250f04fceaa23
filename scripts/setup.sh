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

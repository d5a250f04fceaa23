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

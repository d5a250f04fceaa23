#!/usr/bin/env bash
# Builds the local-mode flavour of the addon, boxlite-local.<platform>.node, at the repo root:
# the same binding crate with `--features local` (pyo3, stable ABI abi3-py39) and WITHOUT
# linking libpython (PYO3_BUILD_EXTENSION_MODULE=1), so one file works with any CPython >= 3.10
# that has a shared libpython. JS must preload that libpython globally before loading it
# (lib/python-preload.cjs). It shares target/<host triple>/ with `napi build` and the test
# scripts, so the dependency tree is compiled once for all of them.
#
#   scripts/build-local-addon.sh [--release]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=debug
cargo_flags=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  cargo_flags+=(--release)
elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [--release]" >&2
  exit 2
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64-gnu ;;
  Linux-aarch64) platform=linux-arm64-gnu ;;
  Darwin-x86_64) platform=darwin-x64 ;;
  Darwin-arm64) platform=darwin-arm64 ;;
  *) echo "unsupported platform $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

host="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${BOXLITE_LOCAL_TARGET_DIR:-$root/target}"
export PYO3_BUILD_EXTENSION_MODULE=1
# pyo3 only needs an interpreter to read its configuration; an abi3 build can do without.
if [[ -z "${PYO3_PYTHON:-}" ]]; then
  if command -v python3 >/dev/null 2>&1; then
    PYO3_PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
    export PYO3_PYTHON
  else
    export PYO3_NO_PYTHON=1
  fi
fi

cd "$root"
cargo build -p sandbank-boxlite --features local --target "$host" "${cargo_flags[@]}"

lib="$CARGO_TARGET_DIR/$host/$profile/libsandbank_boxlite.so"
[[ "$(uname -s)" == Darwin ]] && lib="$CARGO_TARGET_DIR/$host/$profile/libsandbank_boxlite.dylib"
out="$root/boxlite-local.$platform.node"
cp "$lib" "$out.tmp" && mv -f "$out.tmp" "$out"

if [[ "$(uname -s)" == Linux ]]; then
  if readelf -d "$out" | grep -q 'NEEDED.*libpython'; then
    echo "error: $out links libpython; it must not (PYO3_BUILD_EXTENSION_MODULE was ignored?)" >&2
    exit 1
  fi
  undefined=$(nm -D --undefined-only "$out" | grep -c ' _\?Py' || true)
  echo "built $out ($(du -h "$out" | cut -f1), no NEEDED libpython, $undefined Python symbols resolved at load time)"
else
  echo "built $out"
fi

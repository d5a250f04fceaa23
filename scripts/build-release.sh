#!/usr/bin/env bash
# Builds the released addons of every platform package on one Linux x86_64 machine, with
# cargo-zigbuild (zig as the cross linker and C compiler, pinned from PyPI) instead of the host's
# toolchain, so the glibc addons need only glibc 2.17 and the macOS ones load on macOS 10.15/11.
# Each addon lands in its platform package (npm/<platform>/boxlite[-local].<platform>.node).
# docs/release.md explains the targets, the tools and their pitfalls.
#
#   scripts/build-release.sh [PLATFORM...]   (default: every platform; see `targets` below)
#   BOXLITE_RELEASE_FLAVOURS=main scripts/build-release.sh ...   (only these flavours: main, local)
#
# Tools are cached in ~/.cache/sandbank-boxlite/ and installed there when missing; the Rust
# build has its own target directory (target/release-cross/) so it never invalidates the
# development builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${BOXLITE_CACHE_DIR:-$HOME/.cache/sandbank-boxlite}"
ZIG_VENV="$CACHE/zig-venv"
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

# platform tag | Rust target as cargo-zigbuild spells it (a .2.17 suffix pins the glibc) | flavours
targets=(
  "linux-x64-gnu|x86_64-unknown-linux-gnu.2.17|main local"
  "linux-arm64-gnu|aarch64-unknown-linux-gnu.2.17|main local"
  "linux-x64-musl|x86_64-unknown-linux-musl|main"
  "linux-arm64-musl|aarch64-unknown-linux-musl|main"
  "darwin-x64|x86_64-apple-darwin|main local"
  "darwin-arm64|aarch64-apple-darwin|main local"
)
# The oldest macOS each darwin addon supports (stamped by the linker as LC_BUILD_VERSION minos;
# rustls-platform-verifier needs 10.14+, Apple Silicon starts at 11.0).
macos_min() { [[ "$1" == darwin-x64 ]] && echo 10.15 || echo 11.0; }

log() { printf '\n== %s\n' "$*"; }

ensure_tools() {
  if [[ "$(uname -s)" == Darwin ]]; then
    : # macOS builds use the system toolchain (build_one)
  elif [[ ! -x "$ZIG_VENV/bin/cargo-zigbuild" ]] ||
    ! "$ZIG_VENV/bin/python" -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"; then
    log "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $ZIG_VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$ZIG_VENV"
    "$ZIG_VENV/bin/pip" install -q --disable-pip-version-check \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  fi
  export PATH="$ZIG_VENV/bin:$PATH"
  local installed wanted=()
  installed="$(rustup target list --installed)"
  for entry in "${selected[@]}"; do
    IFS='|' read -r _ zig_target _ <<<"$entry"
    local triple="${zig_target%.2.*}"
    grep -qx "$triple" <<<"$installed" || wanted+=("$triple")
  done
  if ((${#wanted[@]})); then
    log "adding Rust targets: ${wanted[*]}"
    rustup target add "${wanted[@]}"
  fi
}

# zig ships libSystem but no macOS frameworks: scripts/macos-framework-stubs.py writes text stubs
# of Security and CoreFoundation (which the TLS verifier links) from the locked binding crates,
# and the dynamic loader binds their symbols to the real frameworks on the Mac.
darwin_env() {
  export MACOSX_DEPLOYMENT_TARGET
  MACOSX_DEPLOYMENT_TARGET="$(macos_min "$1")"
  local stubs="$CARGO_TARGET_DIR/macos-framework-stubs"
  python3 "$ROOT/scripts/macos-framework-stubs.py" "$stubs"
  export RUSTFLAGS="-C link-arg=-F$stubs"
}

build_one() {
  local platform="$1" zig_target="$2" flavour="$3"
  local triple="${zig_target%.2.*}" features=() ext=so
  local out="$ROOT/npm/$platform/boxlite.$platform.node"
  log "building $platform ($flavour flavour, $zig_target)"
  (
    unset RUSTFLAGS MACOSX_DEPLOYMENT_TARGET PYO3_BUILD_EXTENSION_MODULE
    if [[ "$platform" == darwin-* ]]; then
      darwin_env "$platform"
      ext=dylib
    elif [[ "$platform" == *-musl ]]; then
      # musl targets link statically by default, which rules out a shared library: link musl's
      # libc.so dynamically, as Node itself does there.
      export RUSTFLAGS="-C target-feature=-crt-static"
    fi
    if [[ "$flavour" == local ]]; then
      features=(--features local)
      out="$ROOT/npm/$platform/boxlite-local.$platform.node"
      # The local flavour finds libpython at run time (see scripts/build-local-addon.sh); when
      # cross-compiling pyo3 needs no interpreter for its abi3 build.
      export PYO3_BUILD_EXTENSION_MODULE=1
      [[ "$triple" == "$HOST_TRIPLE" ]] || export PYO3_NO_PYTHON=1
    fi
    cd "$ROOT"
    local cargo_build=(cargo zigbuild)
    if [[ "$(uname -s)" == Darwin ]]; then
      # On a Mac (CI's macOS runners) the system toolchain and SDK are the real thing.
      cargo_build=(cargo build)
      zig_target="$triple"
      unset RUSTFLAGS
    fi
    nice -n "${BOXLITE_BUILD_NICE:-10}" "${cargo_build[@]}" --locked --release -p sandbank-boxlite \
      --target "$zig_target" "${features[@]}"
    cp "$CARGO_TARGET_DIR/$triple/release/libsandbank_boxlite.$ext" "$out.tmp"
    mv -f "$out.tmp" "$out"
    echo "built $out ($(du -h "$out" | cut -f1))"
  )
}

main() {
  local wanted=("$@") entry platform
  selected=()
  for entry in "${targets[@]}"; do
    platform="${entry%%|*}"
    if ((${#wanted[@]} == 0)) || [[ " ${wanted[*]} " == *" $platform "* ]]; then
      selected+=("$entry")
    fi
  done
  for platform in "${wanted[@]}"; do
    if ! printf '%s\n' "${targets[@]}" | grep -q "^$platform|"; then
      echo "unknown platform '$platform'; known: $(printf '%s\n' "${targets[@]}" | cut -d'|' -f1 | xargs)" >&2
      exit 2
    fi
  done
  ensure_tools
  HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
  export CARGO_TARGET_DIR="${BOXLITE_RELEASE_TARGET_DIR:-$ROOT/target/release-cross}"
  local started=$SECONDS
  for entry in "${selected[@]}"; do
    local zig_target flavours flavour
    IFS='|' read -r platform zig_target flavours <<<"$entry"
    for flavour in $flavours; do
      [[ " ${BOXLITE_RELEASE_FLAVOURS:-main local} " == *" $flavour "* ]] || continue
      build_one "$platform" "$zig_target" "$flavour"
    done
  done
  log "built ${#selected[@]} platform(s) in $((SECONDS - started)) s"
  ls -l "$ROOT"/npm/*/*.node
}

main "$@"

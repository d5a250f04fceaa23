#!/usr/bin/env bash
# build-oci-rootfs.sh — build a minimal Debian rootfs and pack it as an OCI
# image layout directory usable as BoxLite's `BoxOptions(rootfs_path=OUTDIR)`
# (or as the adapter's `image: '/abs/path'`). Works offline except for the
# Debian mirror that apt already uses on this machine.
#
#   scripts/build-oci-rootfs.sh [options] OUTDIR
#
# Steps: debootstrap --variant=minbase (bash, coreutils [base64, stty], tar,
# procps, …) into an umoci bundle, trim caches, `umoci repack`, set the image
# config (cmd /bin/bash, PATH, workdir /), `umoci gc`, then atomically rename
# the finished layout to OUTDIR. Idempotent: a complete OUTDIR is left alone.
#
# Needs root (debootstrap chroots, mknod), `debootstrap` and `umoci`
# (Debian packages of the same names), and the network path to the mirror.
# Measured on a 2-core VM against deb.debian.org: 37–85 s (depending on load),
# a 33 MB layout (one 33.9 MB gzip layer, 84 MB / ~4800 entries unpacked).
# A slow mirror makes it a few minutes. See python/testbed/REAL.md §4.
set -euo pipefail

PROG=${0##*/}
SUITE=bookworm
TAG=latest
MIRROR=""
VARIANT=minbase
ARCH=""
FORCE=0
DRY_RUN=0
CHECK_ONLY=0
KEEP_WORK=0
EXTRA_PKGS=""
# What the adapter needs in the guest: bash, tar, base64/stty (coreutils),
# ps/kill (procps). minbase already has bash, coreutils, tar, gzip, sed,
# grep, findutils; procps and ca-certificates are added explicitly.
BASE_PKGS="bash,coreutils,tar,procps,ca-certificates"

usage() {
  cat <<EOF
Usage: $PROG [options] OUTDIR

Build a minimal Debian ($SUITE, debootstrap --variant=$VARIANT) rootfs and
pack it as an OCI image layout in OUTDIR (oci-layout, index.json, blobs/).

Options:
  --suite NAME      Debian suite (default: $SUITE)
  --mirror URL      Debian mirror (default: the first non-security Debian
                    URI found in /etc/apt/sources.list{,.d/*})
  --arch ARCH       Debian architecture (default: dpkg --print-architecture)
  --tag TAG         OCI tag written to index.json (default: $TAG)
  --include PKGS    extra comma-separated packages to install
  --force           rebuild even if OUTDIR is already complete / remove an
                    incomplete OUTDIR
  --keep-work       keep the work directory (debootstrap logs) on failure
  --check           only check whether OUTDIR is a complete layout
                    (exit 0 = complete, 1 = not)
  --dry-run         print the resolved configuration and exit
  -h, --help        show this help

Exit codes: 0 ok (built or already complete), 1 check failed / build
failed, 2 usage error, 3 missing prerequisite (root, debootstrap, umoci).
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }
usage_err() { echo "$PROG: $*" >&2; echo "Try '$PROG --help'." >&2; exit 2; }
log() { echo "[$PROG $(date -u +%H:%M:%S)] $*" >&2; }

OUTDIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --suite) [ $# -ge 2 ] || usage_err "--suite needs a value"; SUITE=$2; shift 2 ;;
    --suite=*) SUITE=${1#*=}; shift ;;
    --mirror) [ $# -ge 2 ] || usage_err "--mirror needs a value"; MIRROR=$2; shift 2 ;;
    --mirror=*) MIRROR=${1#*=}; shift ;;
    --arch) [ $# -ge 2 ] || usage_err "--arch needs a value"; ARCH=$2; shift 2 ;;
    --arch=*) ARCH=${1#*=}; shift ;;
    --tag) [ $# -ge 2 ] || usage_err "--tag needs a value"; TAG=$2; shift 2 ;;
    --tag=*) TAG=${1#*=}; shift ;;
    --include) [ $# -ge 2 ] || usage_err "--include needs a value"; EXTRA_PKGS=$2; shift 2 ;;
    --include=*) EXTRA_PKGS=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    --keep-work) KEEP_WORK=1; shift ;;
    --check) CHECK_ONLY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    -*) usage_err "unknown option: $1" ;;
    *) [ -z "$OUTDIR" ] || usage_err "only one OUTDIR allowed (got '$OUTDIR' and '$1')"
       OUTDIR=$1; shift ;;
  esac
done
if [ $# -gt 0 ]; then
  if [ -n "$OUTDIR" ] || [ $# -ne 1 ]; then usage_err "only one OUTDIR allowed"; fi
  OUTDIR=$1
fi
[ -n "$OUTDIR" ] || usage_err "missing OUTDIR"
case "$TAG" in
  ""|*[!A-Za-z0-9._-]*) usage_err "invalid --tag '$TAG' (allowed: A-Z a-z 0-9 . _ -)" ;;
esac
case "$SUITE" in
  ""|*[!a-z0-9-]*) usage_err "invalid --suite '$SUITE'" ;;
esac

# Absolute OUTDIR (the directory itself need not exist yet).
case "$OUTDIR" in
  /*) ;;
  *) OUTDIR="$PWD/$OUTDIR" ;;
esac
OUTDIR=${OUTDIR%/}
[ -n "$OUTDIR" ] || usage_err "OUTDIR must not be /"

# ---------------------------------------------------------------------------
# Completeness check: oci-layout + index.json naming TAG + every blob the
# manifest references present (and `umoci stat` happy when umoci exists).
layout_complete() {
  local dir=$1
  [ -f "$dir/oci-layout" ] && [ -f "$dir/index.json" ] && [ -d "$dir/blobs/sha256" ] || return 1
  grep -q '"imageLayoutVersion"' "$dir/oci-layout" || return 1
  grep -q "\"org.opencontainers.image.ref.name\": *\"$TAG\"" "$dir/index.json" || return 1
  # Every blob referenced from index.json / the manifest must exist.
  local md m bd
  # shellcheck disable=SC2013  # digests contain no whitespace
  for md in $(grep -o 'sha256:[0-9a-f]\{64\}' "$dir/index.json"); do
    m="$dir/blobs/sha256/${md#sha256:}"
    [ -s "$m" ] || return 1
    # shellcheck disable=SC2013
    for bd in $(grep -o 'sha256:[0-9a-f]\{64\}' "$m"); do
      [ -s "$dir/blobs/sha256/${bd#sha256:}" ] || return 1
    done
  done
  # At least one layer (an empty image is not a rootfs): manifest + config + layer(s).
  [ "$(find "$dir/blobs/sha256" -type f | wc -l)" -ge 3 ] || return 1
  if command -v umoci >/dev/null 2>&1; then
    umoci stat --image "$dir:$TAG" >/dev/null 2>&1 || return 1
  fi
  return 0
}

# ---------------------------------------------------------------------------
# Mirror detection: the first Debian (non-security) URI apt uses here.
detect_mirror() {
  local f line uri=""
  # deb822 .sources files
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    while IFS= read -r line; do
      case "$line" in
        URIs:*|uris:*)
          for u in ${line#*:}; do
            case "$u" in *security*|*nodesource*|*google*) continue ;; esac
            case "$u" in *debian*) uri=$u; break ;; esac
          done ;;
      esac
      [ -n "$uri" ] && break
    done < "$f"
    [ -n "$uri" ] && break
  done
  # one-line format
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f" \
            | grep -v -e security -e nodesource -e google | grep debian | head -n1 || true)
      [ -n "$uri" ] && break
    done
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Proxy apt is configured with (debootstrap's wget honours http_proxy).
detect_proxy() {
  if command -v apt-config >/dev/null 2>&1; then
    apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1
  fi
}

[ -n "$MIRROR" ] || MIRROR=$(detect_mirror)
[ -n "$ARCH" ] || ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
case "$ARCH" in
  amd64) OCI_ARCH=amd64 ;; arm64) OCI_ARCH=arm64 ;; armhf) OCI_ARCH=arm ;;
  i386) OCI_ARCH=386 ;; ppc64el) OCI_ARCH=ppc64le ;; s390x) OCI_ARCH=s390x ;;
  riscv64) OCI_ARCH=riscv64 ;; *) OCI_ARCH=$ARCH ;;
esac
PROXY=${http_proxy:-$(detect_proxy)}
PKGS=$BASE_PKGS${EXTRA_PKGS:+,$EXTRA_PKGS}

if [ "$DRY_RUN" = 1 ]; then
  echo "outdir=$OUTDIR"
  echo "suite=$SUITE"
  echo "variant=$VARIANT"
  echo "arch=$ARCH"
  echo "oci_arch=$OCI_ARCH"
  echo "mirror=$MIRROR"
  echo "proxy=${PROXY:-}"
  echo "tag=$TAG"
  echo "include=$PKGS"
  if layout_complete "$OUTDIR"; then echo "complete=yes"; else echo "complete=no"; fi
  exit 0
fi

if [ "$CHECK_ONLY" = 1 ]; then
  if layout_complete "$OUTDIR"; then echo "complete: $OUTDIR"; exit 0; fi
  echo "incomplete: $OUTDIR"; exit 1
fi

if [ "$FORCE" = 0 ] && layout_complete "$OUTDIR"; then
  echo "ok: $OUTDIR is already a complete OCI layout (tag $TAG); use --force to rebuild"
  exit 0
fi
if [ -e "$OUTDIR" ] && [ "$FORCE" = 0 ]; then
  if [ -d "$OUTDIR" ] && [ -z "$(ls -A "$OUTDIR")" ]; then
    rmdir "$OUTDIR"
  else
    die "$OUTDIR exists but is not a complete OCI layout; remove it or pass --force"
  fi
fi

# Prerequisites.
if [ "$(id -u)" != 0 ]; then echo "$PROG: must run as root (debootstrap)" >&2; exit 3; fi
for tool in debootstrap umoci; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$PROG: '$tool' not found (apt-get install -y debootstrap umoci)" >&2; exit 3; }
done

PARENT=$(dirname "$OUTDIR")
mkdir -p "$PARENT"
WORK=$(mktemp -d "$PARENT/.$(basename "$OUTDIR").build.XXXXXX")
cleanup() {
  local rc=$?
  # never leave bind mounts behind (debootstrap mounts /proc, /sys in the target)
  if [ -d "$WORK/bundle/rootfs" ]; then
    for m in proc sys dev/pts dev; do
      if mountpoint -q "$WORK/bundle/rootfs/$m" 2>/dev/null; then umount -l "$WORK/bundle/rootfs/$m" || true; fi
    done
  fi
  if [ $rc -ne 0 ] && [ "$KEEP_WORK" = 1 ]; then
    log "build failed; work directory kept at $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
LAYOUT="$WORK/layout"
BUNDLE="$WORK/bundle"

log "mirror=$MIRROR suite=$SUITE arch=$ARCH include=$PKGS${PROXY:+ proxy=$PROXY}"
log "umoci: init layout + empty image"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$TAG"
umoci unpack --image "$LAYOUT:$TAG" "$BUNDLE" >/dev/null

log "debootstrap --variant=$VARIANT (this is the slow part)"
if ! env ${PROXY:+http_proxy=$PROXY} debootstrap --variant="$VARIANT" --arch="$ARCH" \
      --include="$PKGS" --components=main \
      "$SUITE" "$BUNDLE/rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1; then
  tail -n 20 "$WORK/debootstrap.log" >&2
  [ -f "$BUNDLE/rootfs/debootstrap/debootstrap.log" ] && tail -n 20 "$BUNDLE/rootfs/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (mirror $MIRROR)"
fi

R="$BUNDLE/rootfs"
for tool in bash tar base64 stty ps; do
  chroot "$R" /bin/sh -c "command -v $tool" >/dev/null 2>&1 || die "rootfs lacks '$tool'"
done

log "trimming caches, docs and host-specific files"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin \
       "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/var/log/apt/* \
       "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/locale/* \
       "$R"/debootstrap "$R"/tmp/* "$R"/var/tmp/* 2>/dev/null || true
find "$R"/usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$R"/usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
# debootstrap copies the build host's resolver/hostname; BoxLite provides its own.
rm -f "$R"/etc/resolv.conf "$R"/etc/machine-id "$R"/var/lib/dbus/machine-id
: > "$R"/etc/machine-id
echo boxlite > "$R"/etc/hostname
# Point apt at the mirror the image was built from (only used if someone runs apt inside).
echo "deb $MIRROR $SUITE main" > "$R"/etc/apt/sources.list

log "umoci repack"
umoci repack --image "$LAYOUT:$TAG" \
  --history.comment "debootstrap --variant=$VARIANT $SUITE ($PKGS)" \
  --history.created_by "$PROG" "$BUNDLE" >/dev/null
umoci config --image "$LAYOUT:$TAG" \
  --os linux --architecture "$OCI_ARCH" \
  --config.cmd /bin/bash \
  --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env "LANG=C.UTF-8" \
  --config.workingdir / \
  --author "$PROG" \
  --config.label "org.opencontainers.image.title=boxlite-test-rootfs" \
  --config.label "org.opencontainers.image.description=debian $SUITE $VARIANT + $PKGS" \
  >/dev/null
umoci gc --layout "$LAYOUT"

chmod -R a+rX "$LAYOUT"  # umoci writes blobs 0600; let non-root BoxLite users read them
layout_complete "$LAYOUT" || die "built layout failed the completeness check"

if [ -e "$OUTDIR" ]; then
  # --force: replace atomically-ish (rename old away first).
  mv "$OUTDIR" "$WORK/old"
fi
mv "$LAYOUT" "$OUTDIR"
END=$(date +%s)
SIZE=$(du -sh "$OUTDIR" | cut -f1)
echo "built: $OUTDIR (tag $TAG, $SIZE, $((END - START))s)"

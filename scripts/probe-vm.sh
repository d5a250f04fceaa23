#!/usr/bin/env sh
# probe-vm.sh — can this machine boot real BoxLite micro-VMs?
# Prints ONE line ("yes: …" / "no: …"); exit 0 = VMs boot, 1 = they don't,
# 3 = the real boxlite SDK is not installed in the interpreter, 2 = usage.
# All logic lives in python/testbed/realpath/probe.py (stdlib only); see
# `scripts/probe-vm.sh --help` and python/testbed/REAL.md.
set -eu
here=$(CDPATH="" cd -- "$(dirname -- "$0")" && pwd)
probe="$here/../python/testbed/realpath/probe.py"
for py in "${BOXLITE_PROBE_HOST_PYTHON:-}" python3 python; do
  [ -n "$py" ] || continue
  if command -v "$py" >/dev/null 2>&1; then exec "$py" "$probe" "$@"; fi
done
echo "no: no python3 on PATH to run $probe"
exit 3

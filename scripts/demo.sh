#!/usr/bin/env bash
# The README's demo command: sets up everything, then runs examples/demo.mjs in local mode —
# against the real boxlite SDK where this machine can boot VMs, otherwise (saying why, in one
# line) against the test bed's SDK simulator, clearly labelled as such.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
setup_system_packages
setup_node_packages
TESTBED_PYTHON="$(setup_python_testbed | tail -n 1)"
build_addon

# A local OCI layout (scripts/build-oci-rootfs.sh DIR) avoids a registry pull: BOXLITE_TEST_ROOTFS=DIR.
probe_args=(--cached)
image_args=()
if [[ -n "${BOXLITE_TEST_ROOTFS:-}" ]]; then
  probe_args+=(--rootfs "$BOXLITE_TEST_ROOTFS")
  image_args=(--image "$(cd "$BOXLITE_TEST_ROOTFS" && pwd)")
fi
if verdict="$("$ROOT/scripts/probe-vm.sh" "${probe_args[@]}" 2>/dev/null)"; then
  echo "real VMs boot here ($verdict): running the demo on the real boxlite SDK"
  exec node "$ROOT/examples/demo.mjs" --python "${BOXLITE_TEST_PYTHON:-$ROOT/python/testbed/.venv-real/bin/python}" "${image_args[@]}"
else
  echo "real VMs cannot boot here (${verdict:-probe failed}): running the demo on the SDK SIMULATOR (a test double, no VM isolation)"
  exec node "$ROOT/examples/demo.mjs" --python "$TESTBED_PYTHON" --simulator
fi

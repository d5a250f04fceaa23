#!/usr/bin/env bash
# Installs the official Node SDK `@boxlite-ai/boxlite` (a judge in __test__/official/: its REST
# client against our test server) into a cache outside the checkout, once per pinned version.
# Prints the install directory on the last line (give it to the tests as BOXLITE_OFFICIAL_NODE_SDK).
set -euo pipefail
SPEC="@boxlite-ai/boxlite@0.10.0"
CACHE="${BOXLITE_CACHE_DIR:-$HOME/.cache/sandbank-boxlite}"
DIR="$CACHE/official-node-sdk-$(printf '%s' "$SPEC" | sha256sum | cut -c1-12)"
if [[ ! -f "$DIR/.installed" ]]; then
  echo "installing $SPEC into $DIR" >&2
  rm -rf "$DIR.partial"
  mkdir -p "$DIR.partial"
  printf '{"private": true}\n' >"$DIR.partial/package.json"
  (cd "$DIR.partial" && npm install --no-audit --no-fund --loglevel=error "$SPEC" >&2)
  rm -rf "$DIR"
  mv "$DIR.partial" "$DIR"
  printf '%s\n' "$SPEC" >"$DIR/.installed"
fi
echo "$DIR"

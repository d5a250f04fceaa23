#!/usr/bin/env bash
# The release check: builds every platform's addons (scripts/build-release.sh) and proves on this
# Linux x86_64 machine that each would load where it is meant to (docs/release.md, "Checks").
#
#   scripts/check-release.sh [--no-build] [STEP...]
#
# Steps (default: all, in this order): profile, static, sizes, old-glibc, arm64, musl, musl-arm64,
# consumer-x64, consumer-arm64, workflow; static-dev (not in the default list) checks the
# development build at the repo root instead (scripts/test.sh runs it). BOXLITE_CHECK_PLATFORMS
# limits `static` to some platforms. Every step runs even when one fails; the script ends with a
# table and exits non-zero if any failed. Foreign runtimes (qemu, an arm64 Node and sysroot, a
# musl Node, an old glibc) come from package registries into ~/.cache/sandbank-boxlite/
# (scripts/release-runtimes.sh).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
# shellcheck source=scripts/release-runtimes.sh
source "$ROOT/scripts/release-runtimes.sh"
set +e

ALL_STEPS=(profile static sizes old-glibc arm64 musl musl-arm64 consumer-x64 consumer-arm64 workflow)
# Not in the default list: static-dev (the test command runs it on the development build).
OTHER_STEPS=(static-dev)
WORK="$ROOT/build/release-check"
PACKAGES="$WORK/packages"
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TOKEN="release-check-token"

# platform | addon-check target options (the oldest system each platform package supports)
platform_targets=(
  "linux-x64-gnu|--arch x86_64 --glibc 2.17"
  "linux-arm64-gnu|--arch aarch64 --glibc 2.17"
  "linux-x64-musl|--arch x86_64 --musl"
  "linux-arm64-musl|--arch aarch64 --musl"
  "darwin-x64|--arch x86_64 --macos 10.15"
  "darwin-arm64|--arch aarch64 --macos 11.0"
)

log() { printf '\n== %s\n' "$*"; }

build=1
steps=()
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,13p' "$0"
      exit 0
      ;;
    *)
      if [[ " ${ALL_STEPS[*]} ${OTHER_STEPS[*]} " != *" $arg "* ]]; then
        echo "unknown step '$arg'; steps: ${ALL_STEPS[*]}" >&2
        exit 2
      fi
      steps+=("$arg")
      ;;
  esac
done
((${#steps[@]})) || steps=("${ALL_STEPS[@]}")

results=()
failed=0
record() { # record STEP STATUS DETAIL
  results+=("$(printf '%-15s %-4s %s' "$1" "$2" "$3")")
  [[ "$2" == FAIL ]] && failed=1
}

# ---------------------------------------------------------------- profile
# The release profile that every addon is built with: what it must say, and why (docs/release.md).
step_profile() {
  local profile problems=()
  profile="$(sed -n '/^\[profile.release\]/,/^\[/p' Cargo.toml)"
  grep -qE '^lto = (true|"fat")' <<<"$profile" || problems+=("lto is not fat")
  grep -qE '^codegen-units = 1' <<<"$profile" || problems+=("codegen-units is not 1")
  grep -qE '^strip = "symbols"' <<<"$profile" || problems+=("strip is not \"symbols\"")
  # Rust panics must unwind into napi's catch (a JS exception), never abort the user's Node.
  grep -qE '^panic = "abort"' <<<"$profile" && problems+=("panic = \"abort\" would kill the Node process")
  grep -qE '^opt-level' <<<"$profile" && problems+=("opt-level overridden (the streamed transfers want 3)")
  if ((${#problems[@]})); then
    record profile FAIL "${problems[*]}"
  else
    record profile ok "lto fat, codegen-units 1, strip symbols, panic unwind, opt-level 3"
  fi
}

# ---------------------------------------------------------------- static
addon_check() {
  local bin="$ROOT/target/$HOST_TRIPLE/debug/addon-check"
  cargo build -q -p addon-check --target "$HOST_TRIPLE" >&2 || return 1
  "$bin" "$@"
}

# The development build of this machine (scripts/setup.sh, at the repo root): the same rules,
# against this machine's own glibc (that build uses the host toolchain; see docs/release.md).
step_static_dev() {
  local platform arch glibc flavour file bad=0 count=0
  platform="$(node -p 'require("./lib/native.cjs").platformTag()')"
  arch="$(uname -m)"
  [[ "$arch" == arm64 ]] && arch=aarch64
  local target=(--arch "$arch")
  case "$platform" in
    linux-*-gnu)
      glibc="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
      target+=(--glibc "$glibc")
      ;;
    linux-*-musl) target+=(--musl) ;;
    darwin-*) target+=(--macos "$(sw_vers -productVersion)") ;;
  esac
  for flavour in main local; do
    file="boxlite.$platform.node"
    [[ "$flavour" == local ]] && file="boxlite-local.$platform.node"
    [[ -f "$file" ]] || continue
    addon_check "$file" "${target[@]}" --flavour "$flavour" || bad=1
    count=$((count + 1))
  done
  ((count)) || bad=1
  if ((bad)); then record static-dev FAIL "see the FAIL lines above"; else record static-dev ok "$count addons ($platform${glibc:+, glibc $glibc})"; fi
}

step_static() {
  local entry platform opts flavour file bad=0 count=0
  for entry in "${platform_targets[@]}"; do
    IFS='|' read -r platform opts <<<"$entry"
    # CI checks one platform per runner: BOXLITE_CHECK_PLATFORMS="linux-arm64-gnu ...".
    [[ -z "${BOXLITE_CHECK_PLATFORMS:-}" || " $BOXLITE_CHECK_PLATFORMS " == *" $platform "* ]] || continue
    for flavour in main local; do
      file="npm/$platform/boxlite.$platform.node"
      [[ "$flavour" == local ]] && file="npm/$platform/boxlite-local.$platform.node"
      if [[ ! -f "$file" ]]; then
        # The musl packages have no local flavour (docs/release.md).
        [[ "$flavour" == local && "$platform" == *-musl ]] && continue
        echo "  FAIL missing $file (run scripts/build-release.sh)" >&2
        bad=1
        continue
      fi
      # shellcheck disable=SC2086 # opts is a list of options
      addon_check "$file" $opts --flavour "$flavour" || bad=1
      count=$((count + 1))
    done
  done
  if ((bad)); then record static FAIL "see the FAIL lines above"; else record static ok "$count addons"; fi
}

# ---------------------------------------------------------------- sizes
stage_main_package() {
  local stage="$WORK/stage-main"
  rm -rf "$stage"
  mkdir -p "$stage"
  node - "$ROOT" "$stage" <<'EOF'
// What `napi prepublish` does to the main package: every platform package becomes an optional
// dependency of the same version.
const fs = require('node:fs')
const path = require('node:path')
const [root, stage] = process.argv.slice(2)
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
for (const entry of manifest.files) fs.cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true })
manifest.optionalDependencies = {}
for (const dir of fs.readdirSync(path.join(root, 'npm')).sort()) {
  const { name } = JSON.parse(fs.readFileSync(path.join(root, 'npm', dir, 'package.json'), 'utf8'))
  manifest.optionalDependencies[name] = manifest.version
}
delete manifest.devDependencies
delete manifest.scripts
fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2))
EOF
  echo "$stage"
}

# pack DIR NAME: npm pack into $PACKAGES/NAME.tgz; prints "packed unpacked" sizes in bytes.
pack() {
  local json
  json="$(npm pack --json --pack-destination "$PACKAGES" "$1" 2>/dev/null)" || return 1
  node -e '
    const [info] = JSON.parse(process.argv[1])
    require("fs").renameSync(require("path").join(process.argv[2], info.filename), require("path").join(process.argv[2], process.argv[3] + ".tgz"))
    console.log(info.size, info.unpackedSize)' "$json" "$PACKAGES" "$2"
}

step_sizes() {
  rm -rf "$PACKAGES"
  mkdir -p "$PACKAGES"
  local dir platform sizes bad=0 file
  printf '  %-44s %10s\n' "addon" "bytes"
  for file in npm/*/*.node; do
    printf '  %-44s %10s\n' "$(basename "$file")" "$(stat -c %s "$file")"
  done
  printf '  %-44s %10s %10s\n' "package" "packed" "unpacked"
  for dir in npm/*/; do
    platform="$(basename "$dir")"
    # A platform package without its addons would install and then fail to load (packed all the
    # same, so that the other steps can run on a partial build).
    # shellcheck disable=SC2016 # JavaScript template literal
    if ! node -e 'const d = process.argv[1]; const m = require(require("path").resolve(d, "package.json"))
      const missing = m.files.filter((f) => !require("fs").existsSync(require("path").join(d, f)))
      if (missing.length) { console.error(`  FAIL ${d} lacks ${missing.join(", ")}`); process.exit(1) }' "$dir"; then
      bad=1
    fi
    sizes="$(pack "$dir" "$platform")" || {
      echo "  FAIL npm pack $dir" >&2
      bad=1
      continue
    }
    # shellcheck disable=SC2086 # two numbers
    printf '  %-44s %10s %10s\n' "@sandbank.dev/boxlite-$platform" $sizes
  done
  sizes="$(pack "$(stage_main_package)" main)" || bad=1
  # shellcheck disable=SC2086
  printf '  %-44s %10s %10s\n' "@sandbank.dev/boxlite" $sizes
  sizes="$(pack "$ROOT/__test__/core-standin" core)" || bad=1
  if ((bad)); then record sizes FAIL "a platform package lacks its addons, or npm pack failed"; else record sizes ok "packages in ${PACKAGES#"$ROOT"/}"; fi
}

# ---------------------------------------------------------------- test server
SERVER_PID=""
SERVER_URL=""
start_server() {
  [[ -n "$SERVER_URL" ]] && return 0
  local python log="$WORK/testbed-server.$$.log"
  python="$("$ROOT/python/testbed/setup.sh" | tail -n 1)" || return 1
  (cd "$ROOT/python/testbed" && exec "$python" -m boxlite_testbed.server --host 127.0.0.1 --port 0 \
    --dialect current --auth token --token "$TOKEN") >"$log" 2>&1 &
  SERVER_PID=$!
  local waited=0
  while ((waited < 60)); do
    SERVER_URL="$(sed -n 's/^BOXLITE_TESTBED_READY //p' "$log" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{if(s.trim())console.log(JSON.parse(s).url)})')"
    [[ -n "$SERVER_URL" ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 1
    waited=$((waited + 1))
  done
  echo "the test server did not start within 60 s: $(tail -5 "$log")" >&2
  return 1
}
# shellcheck disable=SC2317 # called by the EXIT trap
stop_server() {
  local pid
  for pid in "$SERVER_PID" "${REGISTRY_PID:-}"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  return 0
}
trap stop_server EXIT

# ---------------------------------------------------------------- arm64 (qemu-user)
# vitest runs on rolldown, whose native binding is per-architecture: add the arm64 one beside
# the x64 one that npm installed (same version; node_modules only).
ensure_arm64_rolldown() {
  local version dest="$ROOT/node_modules/@rolldown/binding-linux-arm64-gnu"
  version="$(node -p 'require("./node_modules/@rolldown/binding-linux-x64-gnu/package.json").version')"
  [[ -f "$dest/package.json" ]] && grep -q "\"version\": \"$version\"" "$dest/package.json" && return 0
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "@rolldown/binding-linux-arm64-gnu@$version" >/dev/null) || return 1
  rm -rf "$dest"
  mkdir -p "$dest"
  tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1
  rm -rf "$tmp"
}

step_arm64() {
  local addon="$ROOT/npm/linux-arm64-gnu/boxlite.linux-arm64-gnu.node" out="$WORK/arm64-conformance.log"
  [[ -f "$addon" ]] || {
    record arm64 FAIL "no $addon"
    return
  }
  ensure_arm64_rolldown || {
    record arm64 FAIL "could not fetch the arm64 rolldown binding"
    return
  }
  # The package finds the addon as a user's install does: in its platform package. (Not with
  # NAPI_RS_NATIVE_LIBRARY_PATH, which every napi-rs loader obeys, rolldown's inside vitest too.)
  local link="$ROOT/node_modules/@sandbank.dev/boxlite-linux-arm64-gnu" loaded
  rm -rf "$link"
  ln -s "$ROOT/npm/linux-arm64-gnu" "$link"
  loaded="$(run_arm64_node -e 'require("./binding.cjs")
    console.log(Object.keys(require.cache).filter((p) => p.endsWith(".node")).join(" "))' 2>&1)"
  if [[ "$loaded" != "$addon" ]]; then
    rm -f "$link"
    record arm64 FAIL "the arm64 Node did not load $addon: $loaded"
    return
  fi
  local python
  python="$("$ROOT/python/testbed/setup.sh" | tail -n 1)"
  log "remote-mode conformance suite under qemu-aarch64 with $(run_arm64_node --version) (arm64), addon $loaded"
  # The remote dialects only: local mode would need an arm64 CPython with the SDK. Worker threads,
  # not forked workers: without a binfmt registration the kernel cannot execute an arm64 Node.
  local started=$SECONDS
  BOXLITE_TESTBED_PYTHON="$python" BOXLITE_TEST_MODES="${BOXLITE_ARM64_MODES:-sse,current,boxrun}" \
    run_arm64_node "$ROOT/node_modules/vitest/vitest.mjs" run --pool threads --project integration \
    __test__/integration/conformance.spec.ts 2>&1 | tee "$out"
  local status=${PIPESTATUS[0]} summary
  rm -f "$link"
  summary="$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -E '^ +Tests +' | tr -s ' ' | head -1)"
  if ((status == 0)) && grep -q 'passed' <<<"$summary"; then
    record arm64 ok "node $(run_arm64_node -p 'process.arch + " " + process.version'):$summary in $((SECONDS - started)) s"
  else
    record arm64 FAIL "exit $status:$summary"
  fi
}

# ---------------------------------------------------------------- musl
# step_musl x64|arm64: a musl Node of that CPU (arm64: under qemu-user) loads the musl addon.
step_musl() {
  local arch="$1" node_arch=x86_64 name=musl
  [[ "$arch" == arm64 ]] && node_arch=aarch64 && name=musl-arm64
  local platform="linux-$arch-musl"
  local addon="$ROOT/npm/$platform/boxlite.$platform.node"
  [[ -f "$addon" ]] || {
    record "$name" FAIL "no $addon"
    return
  }
  start_server || {
    record "$name" FAIL "test server did not start"
    return
  }
  local version
  version="$(run_musl_node "$node_arch" -p 'process.arch + " " + process.version')"
  log "musl Node $version loads $addon"
  local out
  out="$(NAPI_RS_NATIVE_LIBRARY_PATH="$addon" run_musl_node "$node_arch" "$ROOT/scripts/release-smoke.mjs" \
    "$SERVER_URL" "$TOKEN" 2>&1)"
  local status=$?
  echo "$out"
  if ((status == 0)) && grep -q "\"platform\":\"$platform\"" <<<"$out" &&
    grep -q "local mode is not available on $platform" <<<"$out"; then
    record "$name" ok "musl Node $version: remote sandbox created, exec ok; local mode refused with its reason"
  else
    record "$name" FAIL "exit $status (see above)"
  fi
}

# ---------------------------------------------------------------- old glibc
# The released linux-x64-gnu addon on glibc 2.31 (Debian 11, Ubuntu 20.04): loads and runs a
# sandbox. The development build of this machine needs a newer glibc and must fail there, which
# shows the check can fail.
step_old_glibc() {
  local addon="$ROOT/npm/linux-x64-gnu/boxlite.linux-x64-gnu.node" out status dev
  [[ -f "$addon" ]] || {
    record old-glibc FAIL "no $addon"
    return
  }
  start_server || {
    record old-glibc FAIL "test server did not start"
    return
  }
  log "Node $(node --version) on glibc $(run_old_glibc_node -p 'process.report.getReport().header.glibcVersionRuntime') loads $addon"
  out="$(NAPI_RS_NATIVE_LIBRARY_PATH="$addon" run_old_glibc_node "$ROOT/scripts/release-smoke.mjs" "$SERVER_URL" "$TOKEN" 2>&1)"
  status=$?
  echo "$out" | grep '"step":"remote"'
  dev="not built"
  if [[ -f "$ROOT/boxlite.linux-x64-gnu.node" ]]; then
    dev="$(run_old_glibc_node -e "require('$ROOT/boxlite.linux-x64-gnu.node')" 2>&1 | grep -o "version \`GLIBC_[0-9.]*' not found" | head -1)"
    echo "the development build on the same glibc: ${dev:-loaded}"
  fi
  if grep -q '"step":"remote".*"glibc":"2.31".*"stdout":"smoke-ok\\n"' <<<"$out"; then
    record old-glibc ok "released addon runs a sandbox on glibc 2.31 (development build: ${dev:-loads too})"
  else
    echo "$out" | tail -5
    record old-glibc FAIL "exit $status (see above)"
  fi
}

# ---------------------------------------------------------------- consumer projects
# consumer ARCH: a fresh TypeScript project installs the packed main package with pnpm from a
# local registry of the packed packages (scripts/release-registry.mjs; pnpm then picks the platform
# package by os/cpu/libc as from npm), type-checks a file that uses the package as documented,
# compiles it and runs it against the test server.
REGISTRY_PID=""
REGISTRY_URL=""
start_registry() {
  [[ -n "$REGISTRY_URL" ]] && return 0
  local log="$WORK/registry.$$.log" waited=0
  node "$ROOT/scripts/release-registry.mjs" "$PACKAGES" >"$log" 2>&1 &
  REGISTRY_PID=$!
  while ((waited < 20)); do
    REGISTRY_URL="$(sed -n 's/^BOXLITE_REGISTRY_READY //p' "$log")"
    [[ -n "$REGISTRY_URL" ]] && return 0
    sleep 1
    waited=$((waited + 1))
  done
  echo "the local registry did not start: $(cat "$log")" >&2
  return 1
}

consumer() {
  local arch="$1"
  local dir="$WORK/consumer-$arch" runner=() local_mode=()
  [[ "$arch" == arm64 ]] && runner=(run_arm64_node)
  # On x64 the program also runs local mode with the test bed's interpreter (its SDK simulator):
  # the released local flavour, glibc 2.17 build, finding this CPython at run time. (Under qemu
  # that would need an arm64 CPython with the SDK.)
  [[ "$arch" == x64 ]] && runner=(node) &&
    local_mode=("$("$ROOT/python/testbed/setup.sh" | tail -n 1)" "$dir/boxlite-home")
  [[ -f "$PACKAGES/main.tgz" ]] || step_sizes >/dev/null
  start_server || return 1
  start_registry || return 1
  rm -rf "$dir"
  mkdir -p "$dir/src"
  printf '@sandbank.dev:registry=%s\n' "$REGISTRY_URL" >"$dir/.npmrc"
  node - "$dir" "$PACKAGES" "$ROOT" <<'EOF'
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const [dir, packages, root] = process.argv.slice(2)
const packed = (file) =>
  JSON.parse(execFileSync('tar', ['-xzOf', path.join(packages, file), 'package/package.json'], { encoding: 'utf8' })).version
const version = (name) => require(path.join(root, 'node_modules', name, 'package.json')).version
fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
  name: 'boxlite-consumer', private: true, type: 'module',
  dependencies: { '@sandbank.dev/boxlite': packed('main.tgz'), '@sandbank.dev/core': packed('core.tgz') },
  devDependencies: { typescript: version('typescript'), '@types/node': version('@types/node') },
}, null, 2))
fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
    outDir: 'dist', rootDir: 'src', types: ['node'] },
  include: ['src'],
}, null, 2))
EOF
  cat >"$dir/src/index.ts" <<'EOF'
import { createProvider } from '@sandbank.dev/core'
import { BoxLiteAdapter, type BoxLiteAdapterConfig } from '@sandbank.dev/boxlite'

const [apiUrl, apiToken, pythonPath, boxliteHome] = process.argv.slice(2)
const cfg: BoxLiteAdapterConfig = { apiUrl, apiToken, dialect: 'current' }
const provider = createProvider(new BoxLiteAdapter(cfg))
const sandbox = await provider.create({ image: 'ubuntu:24.04' })
const result = await sandbox.exec('echo consumer-ok')
await provider.destroy(sandbox.id)
// Local mode (the platform package's local flavour), when an interpreter with the SDK is given.
let local: unknown = null
if (pythonPath) {
  const localCfg: BoxLiteAdapterConfig = { mode: 'local', pythonPath, boxliteHome }
  const localProvider = createProvider(new BoxLiteAdapter(localCfg))
  const box = await localProvider.create({ image: 'ubuntu:24.04' })
  local = await box.exec('echo consumer-local-ok')
  await localProvider.destroy(box.id)
}
console.log(JSON.stringify({ platform: `${process.platform}-${process.arch}`, provider: provider.name, result, local }))
EOF
  local pnpm="$ROOT/node_modules/pnpm/bin/pnpm.cjs" tsc="node_modules/typescript/bin/tsc"
  (
    cd "$dir" &&
      "${runner[@]}" "$pnpm" install --reporter=append-only --config.confirmModulesPurge=false &&
      echo "installed platform packages: $(find node_modules/.pnpm -maxdepth 1 -name '@sandbank.dev+boxlite-*' -printf '%f\n' | grep -o '^@sandbank.dev+boxlite-[a-z0-9-]*' | sort -u | xargs)" &&
      "${runner[@]}" "$tsc" --noEmit && echo "tsc --noEmit: ok" &&
      "${runner[@]}" "$tsc" &&
      "${runner[@]}" dist/index.js "$SERVER_URL" "$TOKEN" "${local_mode[@]}"
  )
}

step_consumer() {
  local arch="$1" out status
  log "consumer project ($arch): pnpm add, tsc --noEmit, createProvider(new BoxLiteAdapter(cfg))"
  out="$(consumer "$arch" 2>&1)"
  status=$?
  echo "$out" | tail -20
  local expected="linux-$arch-gnu" installed
  installed="$(sed -n 's/^installed platform packages: //p' <<<"$out")"
  local local_ok=1 what="remote exec ok"
  if [[ "$arch" == x64 ]]; then
    grep -q '"local":{[^}]*"stdout":"consumer-local-ok\\n"' <<<"$out" || local_ok=0
    what="remote and local (released local flavour) exec ok"
  fi
  if ((status == 0 && local_ok)) && [[ "$installed" == "@sandbank.dev+boxlite-$expected" ]] &&
    grep -q '"stdout":"consumer-ok\\n"' <<<"$out"; then
    record "consumer-$arch" ok "pnpm installed only boxlite-$expected; tsc --noEmit ok; $what"
  else
    record "consumer-$arch" FAIL "exit $status; installed: ${installed:-none}"
  fi
}

# ---------------------------------------------------------------- workflow
step_workflow() {
  local actionlint
  actionlint="$(ensure_actionlint)" || {
    record workflow FAIL "actionlint unavailable"
    return
  }
  log "actionlint $("$actionlint" -version | head -1 | cut -d" " -f2) on .github/workflows/"
  if "$actionlint" -no-color .github/workflows/*.yml; then
    record workflow ok "actionlint $("$actionlint" -version | head -1 | cut -d" " -f2): $(cd .github/workflows && echo *.yml)"
  else
    record workflow FAIL "actionlint found problems (above)"
  fi
}

mkdir -p "$WORK"
if ((build)); then
  log "building every platform (scripts/build-release.sh)"
  "$ROOT/scripts/build-release.sh" || {
    echo "the release build failed" >&2
    exit 1
  }
fi
for step in "${steps[@]}"; do
  started=$SECONDS
  case "$step" in
    profile) step_profile ;;
    static) step_static ;;
    static-dev) step_static_dev ;;
    sizes) step_sizes ;;
    arm64) step_arm64 ;;
    old-glibc) step_old_glibc ;;
    musl) step_musl x64 ;;
    musl-arm64) step_musl arm64 ;;
    consumer-x64) step_consumer x64 ;;
    consumer-arm64) step_consumer arm64 ;;
    workflow) step_workflow ;;
  esac
  echo "-- $step: $((SECONDS - started)) s"
done

printf '\n== release check\n'
printf '%s\n' "${results[@]}"
exit "$failed"

// Which BoxLite the Node suites run against — BOXLITE_TEST_TARGET.
//
// Twin of python/testbed/realpath/target.py (same variables, same decisions;
// fields are camelCase here). See python/testbed/REAL.md.
//
//   sim       (default) SDK simulator python/testbed/boxlite + the test server
//             over it. python: $BOXLITE_SIM_PYTHON or python/testbed/.venv.
//   real-sdk  the real boxlite SDK in $BOXLITE_TEST_PYTHON (default
//             python/testbed/.venv-real/bin/python) + the test server started
//             over it (python/testbed/realpath/run_server.py). Runs only if
//             `scripts/probe-vm.sh --cached` says "yes"; otherwise skip=true
//             and reason = the probe's one line (BOXLITE_TEST_REQUIRE_VM=1
//             turns that into a thrown error).
//   remote    an existing server: BOXLITE_API_URL, BOXLITE_API_TOKEN,
//             BOXLITE_CLIENT_ID, BOXLITE_CLIENT_SECRET, BOXLITE_PREFIX,
//             BOXLITE_API_DIALECT (auto|sse|current|boxrun), and
//             BOXLITE_TEST_SERVER naming which server that is when a suite
//             must know (boxlite-serve-0.11.0). Skips without BOXLITE_API_URL.
//
// Shared: BOXLITE_TEST_ROOTFS (local OCI layout from scripts/build-oci-rootfs.sh,
// also given to the probe), BOXLITE_TEST_IMAGE (default: the rootfs path),
// BOXLITE_PROBE_TIMEOUT (seconds, default 60), BOXLITE_PROBE_SCRIPT.
//
// Usage in a vitest suite:
//
//   import { resolveTestTarget } from '../helpers/target.mjs'
//   const target = await resolveTestTarget()          // top-level await is fine in vitest
//   describe('real boxes', () => {
//     beforeEach((ctx) => ctx.skip(target.skip, target.reason))  // skipped, with the probe's line as note
//     it('…', async () => { … })
//   })
//   // or simply: describe.skipIf(target.skip)(…) — loses the reason in the report.
//
// An unknown BOXLITE_TEST_TARGET / BOXLITE_API_DIALECT throws (a typo must
// never silently run the simulator instead).
//
// `node __test__/helpers/target.mjs [--json]` prints the resolution.

import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
export const REPO_ROOT = path.resolve(HERE, '..', '..')
export const TESTBED_DIR = path.join(REPO_ROOT, 'python', 'testbed')
export const PROBE_SCRIPT = path.join(REPO_ROOT, 'scripts', 'probe-vm.sh')
export const RUN_SERVER = path.join(TESTBED_DIR, 'realpath', 'run_server.py')
export const SIM_VENV_PYTHON = path.join(TESTBED_DIR, '.venv', 'bin', 'python')
export const REAL_VENV_PYTHON = path.join(TESTBED_DIR, '.venv-real', 'bin', 'python')

export const TARGETS = ['sim', 'real-sdk', 'remote']
export const DIALECTS = ['auto', 'sse', 'current', 'boxrun']
const TRUE_WORDS = ['1', 'true', 'yes', 'on']

export class TargetError extends Error {
  constructor(message) {
    super(message)
    this.name = 'TargetError'
  }
}

function get(env, name) {
  const v = env[name]
  if (v === undefined || v === null) return null
  const s = String(v).trim()
  return s === '' ? null : s
}

export function parseTarget(value) {
  if (value === undefined || value === null || String(value).trim() === '') return 'sim'
  const v = String(value).trim().toLowerCase().replaceAll('_', '-')
  if (TARGETS.includes(v)) return v
  throw new TargetError(`BOXLITE_TEST_TARGET=${JSON.stringify(value)} is not one of ${TARGETS.join(', ')}`)
}

export function parseDialect(value) {
  if (value === undefined || value === null || String(value).trim() === '') return 'auto'
  let v = String(value).trim().toLowerCase()
  v = { a: 'sse', b: 'current', c: 'boxrun', rest: 'current' }[v] ?? v
  if (DIALECTS.includes(v)) return v
  throw new TargetError(`BOXLITE_API_DIALECT=${JSON.stringify(value)} is not one of ${DIALECTS.join(', ')}`)
}

/** Run `probe-vm.sh --cached` → { line, exitCode }. Never throws. */
export function runProbe(python, rootfs, env = process.env) {
  const script = get(env, 'BOXLITE_PROBE_SCRIPT') ?? PROBE_SCRIPT
  const args = ['--cached', '--python', python]
  if (rootfs) args.push('--rootfs', rootfs)
  const timeout = get(env, 'BOXLITE_PROBE_TIMEOUT')
  if (timeout) args.push('--timeout', timeout)
  const limitMs = (Number(timeout ?? 60) + 180) * 1000
  return new Promise((resolve) => {
    execFile(script, args, { env, timeout: limitMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const lines = String(stdout).split('\n').map((l) => l.trim()).filter(Boolean)
      const line = lines.at(-1) ?? ''
      let exitCode = 0
      if (err) exitCode = typeof err.code === 'number' ? err.code : 1
      if (err && err.killed) return resolve({ line: 'no: scripts/probe-vm.sh did not finish', exitCode: 1 })
      if (err && typeof err.code === 'string') {
        return resolve({ line: `no: cannot run scripts/probe-vm.sh: ${err.code}`, exitCode: 1 })
      }
      if (!line.startsWith('yes:') && !line.startsWith('no:')) {
        const errLines = String(stderr).split('\n').map((l) => l.trim()).filter(Boolean)
        const tail = errLines.length ? ` (${errLines.at(-1)})` : ''
        return resolve({ line: `no: probe-vm.sh printed no verdict${tail}`, exitCode: exitCode || 1 })
      }
      resolve({ line, exitCode })
    })
  })
}

/**
 * Resolve the test target from `env` (default process.env).
 * @param {Record<string,string|undefined>} [env]
 * @param {{ probe?: (python: string, rootfs: string|null, env: object) => Promise<{line: string, exitCode: number}> }} [opts]
 */
export async function resolveTestTarget(env = process.env, opts = {}) {
  const target = parseTarget(env.BOXLITE_TEST_TARGET)
  let rootfs = get(env, 'BOXLITE_TEST_ROOTFS')
  if (rootfs) rootfs = path.resolve(rootfs)
  const image = get(env, 'BOXLITE_TEST_IMAGE') ?? rootfs
  const requireVm = TRUE_WORDS.includes((get(env, 'BOXLITE_TEST_REQUIRE_VM') ?? '').toLowerCase())
  const base = { target, skip: false, reason: '', python: null, rootfs, image, probe: null, api: null, requireVm }

  if (target === 'sim') {
    const python = get(env, 'BOXLITE_SIM_PYTHON') ?? (existsSync(SIM_VENV_PYTHON) ? SIM_VENV_PYTHON : 'python3')
    return withHelpers({ ...base, python })
  }

  if (target === 'real-sdk') {
    const python = get(env, 'BOXLITE_TEST_PYTHON') ?? REAL_VENV_PYTHON
    const probe = await (opts.probe ?? runProbe)(python, rootfs, env)
    const skip = !(probe.exitCode === 0 && probe.line.startsWith('yes:'))
    if (skip && requireVm) throw new TargetError(`BOXLITE_TEST_REQUIRE_VM is set but ${probe.line}`)
    return withHelpers({ ...base, python, skip, reason: probe.line, probe })
  }

  // remote
  const dialect = parseDialect(env.BOXLITE_API_DIALECT)
  const url = get(env, 'BOXLITE_API_URL')
  if (!url) {
    if (requireVm) throw new TargetError('BOXLITE_TEST_TARGET=remote needs BOXLITE_API_URL')
    return withHelpers({
      ...base,
      skip: true,
      reason: 'no: BOXLITE_TEST_TARGET=remote but BOXLITE_API_URL is not set',
    })
  }
  if (!/^https?:\/\//.test(url)) throw new TargetError(`BOXLITE_API_URL=${JSON.stringify(url)} is not an http(s) URL`)
  const api = {
    url: url.replace(/\/+$/, ''),
    token: get(env, 'BOXLITE_API_TOKEN'),
    clientId: get(env, 'BOXLITE_CLIENT_ID'),
    clientSecret: get(env, 'BOXLITE_CLIENT_SECRET'),
    prefix: get(env, 'BOXLITE_PREFIX'),
    dialect,
    server: get(env, 'BOXLITE_TEST_SERVER'),
  }
  if (Boolean(api.clientId) !== Boolean(api.clientSecret)) {
    throw new TargetError('BOXLITE_CLIENT_ID and BOXLITE_CLIENT_SECRET must be set together')
  }
  return withHelpers({ ...base, api, reason: `remote server at ${api.url} (dialect ${dialect})` })
}

function withHelpers(t) {
  Object.defineProperty(t, 'isReal', { value: t.target !== 'sim', enumerable: false })
  /**
   * Command to start the test server for this target:
   * { command, args, env } — env holds only the variables to add.
   * sim: `python -m boxlite_testbed.server` with PYTHONPATH=python/testbed;
   * real-sdk: `python realpath/run_server.py` (keeps the simulator off
   * sys.path; do not use python/testbed as its cwd). remote: throws.
   */
  Object.defineProperty(t, 'serverCommand', {
    enumerable: false,
    value: (...serverArgs) => {
      if (t.target === 'remote' || !t.python) throw new TargetError(`target '${t.target}' has no local test server`)
      if (t.target === 'real-sdk') return { command: t.python, args: [RUN_SERVER, ...serverArgs], env: {} }
      return {
        command: t.python,
        args: ['-m', 'boxlite_testbed.server', ...serverArgs],
        env: { PYTHONPATH: TESTBED_DIR },
      }
    },
  })
  return t
}

// CLI: node __test__/helpers/target.mjs [--json]
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const t = await resolveTestTarget()
    if (process.argv.includes('--json')) {
      const out = { ...t }
      if (out.api) out.api = { ...out.api, token: out.api.token && '***', clientSecret: out.api.clientSecret && '***' }
      console.log(JSON.stringify(out))
    } else {
      console.log(`${t.target}: ${t.skip ? `skip — ${t.reason}` : t.reason || 'run'}`)
    }
  } catch (e) {
    console.error(`error: ${e.message}`)
    process.exit(2)
  }
}

/**
 * True when BOXLITE_RUNTIME_DIR holds the fake VM's boxlite-shim (crates/fakevm): the real
 * runtime's boxes then run as host processes, without the features docs/testing.md lists as
 * the fake VM's limits.
 */
export function fakeVmRuntime(env = process.env) {
  for (const dir of (get(env, 'BOXLITE_RUNTIME_DIR') ?? '').split(':').filter(Boolean)) {
    try {
      if (readFileSync(path.join(dir, 'boxlite-shim')).subarray(0, 4096).includes('sandbank fake VM')) return true
    } catch {
      // not this directory
    }
  }
  return false
}

// Benchmarks of @sandbank.dev/boxlite side by side with baselines, on the test bed (run on demand,
// never in CI):
//   node bench/run.mjs [--modes local,current,sse,boxrun] [--rounds 4] [--quick] [--markdown]
// Build the release addons first (bench/run.sh does). Every figure comes from one run, with the
// two sides measured in alternating rounds (A B A B …) so that load from other processes hits
// both alike; "noise" is the spread of the per-round medians ((max − min) / median).
//   local:  ours vs a minimal subprocess JSON-lines bridge over the same SDK (bench/bridge/), and
//           the SDK alone (bench/sdk_floor.py, the floor no caller can beat). The simulator runs
//           with BOXLITE_SIM_EXEC=noop: an exec spawns nothing, so only overhead is measured.
//   remote: ours vs the official boxlite Python REST client (bench/official_client.py, from
//           python/testbed/.venv-official) on the same test server, and a bare HTTP round trip.
// Both also show what diagnostics cost: getBox/exec medians with DEBUG=sandbank:boxlite on vs off,
// in child processes (bench/diagnostics.mjs).
import { execFile, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'

const { values } = parseArgs({
  options: {
    modes: { type: 'string', default: 'local,current' },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    markdown: { type: 'boolean', default: false },
  },
})
const quick = values.quick
const rounds = Number(values.rounds ?? (quick ? 2 : 4))
const EXECS = quick ? 60 : 200 // sequential execs per round and side
const CONCURRENCY = 50
const CONCURRENT_BATCHES = quick ? 3 : 6 // batches of CONCURRENCY per round and side
const CREATES = quick ? 2 : 4 // creates per round and side
const MIB = 10
const wanted = values.modes.split(',')

// The simulator reads this at exec time, in every process that runs the SDK (the embedded
// interpreter snapshots the environment when it starts, i.e. after this line).
process.env.BOXLITE_SIM_EXEC = 'noop'

const { BoxLiteAdapter } = await import('../index.js')
const { resolveTestTarget, TESTBED_DIR } = await import('../__test__/helpers/target.mjs')
const { adapterModes } = await import('../__test__/helpers/testbed.mjs')
const { Bridge } = await import('./bridge/client.mjs')

const target = await resolveTestTarget()
if (target.skip || target.target !== 'sim') {
  console.log(`skipped: the benchmarks run on the simulator test bed (target ${target.target}) ${target.reason ?? ''}`)
  process.exit(0)
}
const OFFICIAL_PYTHON = join(TESTBED_DIR, '.venv-official', 'bin', 'python')
const HERE = fileURLToPath(new URL('.', import.meta.url))

// ---------------------------------------------------------------------------------------------
// Measuring

const sorted = (xs) => [...xs].sort((a, b) => a - b)
const quantile = (xs, q) => {
  const s = sorted(xs)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}
const median = (xs) => quantile(xs, 0.5)

/** Samples of one side: every sample, and the median of each round (for the noise). */
class Side {
  samples = []
  perRound = []
  add(roundSamples) {
    this.samples.push(...roundSamples)
    this.perRound.push(median(roundSamples))
  }
  get median() {
    return median(this.samples)
  }
  get p90() {
    return quantile(this.samples, 0.9)
  }
  get noise() {
    if (this.perRound.length < 2) return 0
    return (Math.max(...this.perRound) - Math.min(...this.perRound)) / median(this.perRound)
  }
}

async function timeEach(n, fn) {
  const out = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await fn(i)
    out.push(performance.now() - started)
  }
  return out
}

async function ratesOf(batches, size, fn) {
  const out = []
  for (let b = 0; b < batches; b++) {
    const started = performance.now()
    await Promise.all(Array.from({ length: size }, (_, i) => fn(i)))
    out.push((size * 1000) / (performance.now() - started))
  }
  return out
}

/** Runs `a` and `b` (each `() => Promise<number[]>`) in alternating rounds. */
async function abab(a, b) {
  const sides = [new Side(), new Side()]
  for (let r = 0; r < rounds; r++) {
    sides[0].add(await a())
    sides[1].add(await b())
  }
  return sides
}

async function drainStream(stream) {
  let bytes = 0
  for await (const chunk of stream) bytes += chunk.byteLength
  return bytes
}

// ---------------------------------------------------------------------------------------------
// Reporting

const rows = []
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))
const pct = (x) => `±${(x * 50).toFixed(0)}%`
/** A row where lower is better (latencies); `goal` is the wanted ours/baseline ratio. */
function latencyRow(section, metric, baselineName, base, ours, goal, { p90 = false } = {}) {
  const show = (s) => (p90 ? `${fmt(s.median)} / ${fmt(s.p90)} ms` : `${fmt(s.median)} ms`)
  const ratio = ours.median / base.median
  rows.push({
    section,
    metric: p90 ? `${metric} (median / p90)` : metric,
    baseline: `${baselineName}: ${show(base)}`,
    ours: show(ours),
    ratio: `${ratio.toFixed(2)}×`,
    goal: goal === undefined ? '' : `≤ ${goal} ${ratio <= goal ? '✅' : '❌'}`,
    noise: `${pct(base.noise)} / ${pct(ours.noise)}`,
  })
}
/** A row where higher is better (rates); the ratio is ours/baseline, goal a minimum. */
function rateRow(section, metric, baselineName, base, ours, goal) {
  const ratio = ours.median / base.median
  rows.push({
    section,
    metric,
    baseline: `${baselineName}: ${fmt(base.median)} /s`,
    ours: `${fmt(ours.median)} /s`,
    ratio: `${ratio.toFixed(2)}×`,
    goal: goal === undefined ? '' : `≥ ${goal} ${ratio >= goal ? '✅' : '❌'}`,
    noise: `${pct(base.noise)} / ${pct(ours.noise)}`,
  })
}
function noteRow(section, metric, baseline, ours, ratio = '') {
  rows.push({ section, metric, baseline, ours, ratio, goal: '', noise: '' })
}

function printTable() {
  const columns = ['section', 'metric', 'baseline', 'ours', 'ratio', 'goal', 'noise']
  const header = {
    section: 'mode',
    metric: 'metric',
    baseline: 'baseline',
    ours: 'ours',
    ratio: 'ours / baseline',
    goal: 'goal',
    noise: 'noise (baseline / ours)',
  }
  const cpu = cpus()
  console.log(
    `\n${new Date().toISOString().slice(0, 16)}Z, ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ` +
      `load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, ${rounds} alternating rounds` +
      `${quick ? ' (--quick)' : ''}; noise = spread of per-round medians\n`,
  )
  if (values.markdown) {
    const line = (r) => `| ${columns.map((c) => String(r[c])).join(' | ')} |`
    console.log(line(header))
    console.log(`|${columns.map(() => '---').join('|')}|`)
    for (const r of rows) console.log(line(r))
    return
  }
  const width = (c) => Math.max(String(header[c]).length, ...rows.map((r) => String(r[c]).length))
  const line = (r) => columns.map((c) => String(r[c]).padEnd(width(c))).join('  ')
  console.log(line(header))
  for (const r of rows) console.log(line(r))
}

/** getBox and exec medians of a child process with diagnostics on or off (see diagnostics.mjs). */
async function childRun(config, debug) {
  const env = { ...process.env }
  delete env.DEBUG
  delete env.BOXLITE_LOG
  if (debug) env.DEBUG = 'sandbank:boxlite'
  // Local mode: a home of its own (one runtime per home and process).
  const home = config.mode === 'local' ? await mkdtemp(join(tmpdir(), 'boxlite-bench-home-')) : undefined
  try {
    const script = join(HERE, 'diagnostics.mjs')
    const args = [script, JSON.stringify(home ? { ...config, boxliteHome: home } : config), String(EXECS)]
    // The child's stderr (the diagnostics) goes to /dev/null.
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'ignore'] })
    let out = ''
    child.stdout.on('data', (chunk) => (out += chunk))
    const [code] = await once(child, 'exit')
    if (code !== 0) throw new Error(`bench/diagnostics.mjs exited with ${code}: ${out}`)
    return JSON.parse(out.trim().split('\n').pop())
  } finally {
    if (home) await rm(home, { recursive: true, force: true })
  }
}

/** Diagnostics off vs on (DEBUG=sandbank:boxlite): alternating children, best median of three each. */
async function diagnosticsRows(section, config) {
  const runs = []
  for (const debug of [false, true, false, true, false, true]) runs.push({ debug, ...(await childRun(config, debug)) })
  const best = (debug, key) => Math.min(...runs.filter((r) => r.debug === debug).map((r) => r[key]))
  for (const key of ['getBox', 'exec']) {
    noteRow(
      section,
      `${key}, diagnostics off → on (DEBUG=sandbank:boxlite)`,
      `off: ${fmt(best(false, key))} ms`,
      `on: ${fmt(best(true, key))} ms`,
      `on/off ${(best(true, key) / best(false, key)).toFixed(2)}×`,
    )
  }
}

// ---------------------------------------------------------------------------------------------
// Local mode: ours vs the bridge vs the SDK alone

async function tarOf(files) {
  const dir = await mkdtemp(join(tmpdir(), 'bench-tar-'))
  try {
    for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data)
    return execFileSync('tar', ['-cf', '-', '-C', dir, '.'], { maxBuffer: 1 << 30 })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function benchLocal() {
  const section = 'local'
  const homes = [await mkdtemp(join(tmpdir(), 'bench-ours-')), await mkdtemp(join(tmpdir(), 'bench-bridge-'))]
  const adapter = new BoxLiteAdapter({ mode: 'local', pythonPath: target.python, boxliteHome: homes[0] })
  const bridge = await Bridge.start(target.python, homes[1])
  try {
    const sandbox = await adapter.createSandbox({})
    const { id: boxId } = await bridge.call('create', {})
    for (let i = 0; i < 50; i++) {
      await sandbox.exec('true')
      await bridge.exec(boxId, 'true')
    }

    const [bExec, oExec] = await abab(
      () => timeEach(EXECS, () => bridge.exec(boxId, 'true')),
      () => timeEach(EXECS, () => sandbox.exec('true')),
    )
    const floor = JSON.parse(
      (
        await promisify(execFile)(
          target.python,
          [join(HERE, 'sdk_floor.py'), homes[1] + '-floor', '--execs', String(EXECS), '--concurrency', String(CONCURRENCY)],
          { env: process.env, timeout: 300_000 },
        )
      ).stdout,
    )
    latencyRow(section, "exec('true') overhead", 'bridge', bExec, oExec, 0.5, { p90: true })
    noteRow(
      section,
      "exec('true'): the SDK alone (floor)",
      `sdk_floor.py: ${fmt(median(floor.exec_ms))} / ${fmt(quantile(floor.exec_ms, 0.9))} ms`,
      `${fmt(oExec.median - median(floor.exec_ms))} ms above the floor`,
      `floor = ${((median(floor.exec_ms) / oExec.median) * 100).toFixed(0)}% of ours`,
    )

    // CPU time per exec (every thread of the process: Node, the loop, the SDK's engine) is what
    // bounds the rate here (the GIL; docs/local-engine.md), and other processes' load barely
    // moves it, unlike the rates.
    let oursCpuUs = 0
    const [bConc, oConc] = await abab(
      () => ratesOf(CONCURRENT_BATCHES, CONCURRENCY, () => bridge.exec(boxId, 'true')),
      async () => {
        const before = process.cpuUsage()
        const rates = await ratesOf(CONCURRENT_BATCHES, CONCURRENCY, () => sandbox.exec('true'))
        const used = process.cpuUsage(before)
        oursCpuUs += (used.user + used.system) / (CONCURRENT_BATCHES * CONCURRENCY * rounds)
        return rates
      },
    )
    rateRow(section, `${CONCURRENCY} concurrent exec('true')`, 'bridge', bConc, oConc, 4)
    noteRow(
      section,
      `${CONCURRENCY} concurrent: the SDK alone (ceiling)`,
      `sdk_floor.py: ${fmt(median(floor.concurrent_per_s))} /s`,
      `${fmt(oConc.median)} /s`,
      `ours = ${(oConc.median / median(floor.concurrent_per_s)).toFixed(2)} of the ceiling`,
    )
    noteRow(
      section,
      `${CONCURRENCY} concurrent: CPU time per exec, all threads`,
      `sdk_floor.py: ${fmt(floor.concurrent_cpu_us)} µs`,
      `${fmt(oursCpuUs)} µs`,
      `${(oursCpuUs / floor.concurrent_cpu_us).toFixed(2)}×`,
    )

    const [bCreate, oCreate] = await abab(
      async () => {
        const ids = []
        const t = await timeEach(CREATES, async () => ids.push((await bridge.call('create', {})).id))
        for (const id of ids) await bridge.call('destroy', { box_id: id })
        return t
      },
      async () => {
        const ids = []
        const t = await timeEach(CREATES, async () => ids.push((await adapter.createSandbox({})).id))
        for (const id of ids) await adapter.destroySandbox(id)
        return t
      },
    )
    latencyRow(section, 'createSandbox (until running)', 'bridge', bCreate, oCreate, 1.0)

    const tar = await tarOf({ 'data.bin': randomBytes(MIB << 20) })
    await sandbox.uploadArchive(tar, '/root/dl')
    await bridge.uploadArchive(boxId, tar, '/root/dl')
    const [bDown, oDown] = await abab(
      () =>
        timeEach(2, async () => {
          const gz = await bridge.downloadArchive(boxId, '/root/dl')
          if (gz.length < MIB << 20) throw new Error('bridge download too short')
        }),
      () =>
        timeEach(2, async () => {
          if ((await drainStream(await sandbox.downloadArchive('/root/dl'))) < MIB << 20) {
            throw new Error('download too short')
          }
        }),
    )
    latencyRow(section, `downloadArchive ${MIB} MiB (random bytes)`, 'bridge', bDown, oDown, 0.5)

    const [bUp, oUp] = await abab(
      () => timeEach(2, () => bridge.uploadArchive(boxId, tar, '/root/up')),
      () => timeEach(2, () => sandbox.uploadArchive(tar, '/root/up')),
    )
    latencyRow(section, `uploadArchive ${MIB} MiB (tar)`, 'bridge', bUp, oUp)
    await adapter.destroySandbox(sandbox.id)
    await diagnosticsRows(section, { mode: 'local', pythonPath: target.python })
  } finally {
    await adapter.dispose()
    await bridge.stop()
    for (const home of homes) await rm(home, { recursive: true, force: true })
    await rm(homes[1] + '-floor', { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// Remote modes: ours vs the official Python REST client vs a bare HTTP round trip

async function benchRemote(mode) {
  const section = mode.name
  const setup = await mode.setup()
  const adapter = new BoxLiteAdapter(setup.config)
  try {
    const client = adapter.getClient()
    const sandbox = await adapter.createSandbox({})
    await client.getBox(sandbox.id) // dialect detection, auth
    const rtt = `${setup.server.url}/__testbed/requests?limit=0`
    for (let i = 0; i < 20; i++) await sandbox.exec('true')

    const [bGet, oGet] = await abab(
      () => timeEach(EXECS, () => fetch(rtt).then((r) => r.arrayBuffer())),
      () => timeEach(EXECS, () => client.getBox(sandbox.id)),
    )
    latencyRow(section, 'getBox', 'bare HTTP round trip', bGet, oGet)

    const official = mode.dialect === 'current' && existsSync(OFFICIAL_PYTHON)
    const runOfficial = async () => {
      const args = [join(HERE, 'official_client.py'), setup.server.url, setup.config.apiToken]
      args.push('--execs', String(EXECS), '--creates', String(CREATES))
      try {
        return JSON.parse((await promisify(execFile)(OFFICIAL_PYTHON, args, { timeout: 300_000 })).stdout)
      } catch (err) {
        // The real SDK may abort while its runtime is torn down at exit, after the results.
        if (err.signal === 'SIGABRT' && err.stdout?.trim()) return JSON.parse(err.stdout)
        throw err
      }
    }
    let officialCreates = null
    const [bExec, oExec] = await abab(
      official
        ? async () => {
            const result = await runOfficial()
            officialCreates = officialCreates ?? []
            officialCreates.push(result.create_ms)
            return result.exec_ms
          }
        : () => timeEach(EXECS, () => fetch(rtt).then((r) => r.arrayBuffer())),
      () => timeEach(EXECS, () => sandbox.exec('true')),
    )
    latencyRow(
      section,
      "exec('true')",
      official ? 'official Python REST client' : 'bare HTTP round trip',
      bExec,
      oExec,
      official ? 1.0 : undefined,
      { p90: true },
    )

    const oCreate = new Side()
    for (let r = 0; r < rounds; r++) {
      const ids = []
      oCreate.add(await timeEach(CREATES, async () => ids.push((await adapter.createSandbox({})).id)))
      for (const id of ids) await adapter.destroySandbox(id)
    }
    if (officialCreates) {
      const bCreate = new Side()
      for (const samples of officialCreates) bCreate.add(samples)
      latencyRow(section, 'createSandbox (until running)', 'official client', bCreate, oCreate)
    } else {
      noteRow(section, 'createSandbox (until running)', '', `${fmt(oCreate.median)} ms`)
    }
    await adapter.destroySandbox(sandbox.id)
    await diagnosticsRows(section, setup.config)
  } finally {
    await adapter.dispose()
    await setup.teardown()
  }
}

if (wanted.includes('local')) await benchLocal()
for (const mode of adapterModes(target).filter((m) => m.dialect !== 'local' && wanted.includes(m.dialect))) {
  await benchRemote(mode)
}
if (wanted.includes('current') && !existsSync(OFFICIAL_PYTHON)) {
  console.log(`(no official client: run python/testbed/setup-official.sh to compare with it)`)
}
printTable()

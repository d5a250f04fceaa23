// Benchmarks of @sandbank.dev/boxlite against the test bed (run on demand, never in CI):
//   node bench/run.mjs [--modes local,sse,current,boxrun] [--rounds 200] [--mb 100]
// Build the release addons first (`scripts/setup.sh --release` or bench/run.sh). Prints one
// table per mode: medians and p95 of latencies, throughput, and ratios against a baseline
// (loopback HTTP round trip for remote modes, a no-op native call for local mode), and what
// diagnostics cost: getBox/exec medians with DEBUG=sandbank:boxlite on vs off (child processes).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { BoxLiteAdapter } from '../index.js'
import { resolveTestTarget } from '../__test__/helpers/target.mjs'
import { adapterModes } from '../__test__/helpers/testbed.mjs'

const { values } = parseArgs({
  options: {
    modes: { type: 'string', default: 'local,sse,current,boxrun' },
    rounds: { type: 'string', default: '200' },
    mb: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '100' },
  },
})
const rounds = Number(values.rounds)
const megabytes = Number(values.mb)
const concurrency = Number(values.concurrency)
const wanted = values.modes.split(',')

const target = await resolveTestTarget()
if (target.skip) {
  console.log(`skipped: ${target.reason}`)
  process.exit(0)
}

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  return { median: at(0.5), p95: at(0.95) }
}

async function time(n, fn) {
  const samples = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await fn(i)
    samples.push(performance.now() - started)
  }
  return stats(samples)
}

async function ttfb(sandbox) {
  const started = performance.now()
  const reader = (await sandbox.execStream('echo first; sleep 1; echo second')).getReader()
  await reader.read()
  const first = performance.now() - started
  while (!(await reader.read()).done) {
    // drain
  }
  return { first, total: performance.now() - started }
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
    const script = new URL('./diagnostics.mjs', import.meta.url).pathname
    const args = [script, JSON.stringify(home ? { ...config, boxliteHome: home } : config), String(rounds)]
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

const fmt = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2))
const rows = []
const row = (mode, metric, value, ratio = '') => rows.push({ mode, metric, value, ratio })

for (const mode of adapterModes(target).filter((m) => wanted.includes(m.dialect))) {
  const setup = await mode.setup()
  const adapter = new BoxLiteAdapter(setup.config)
  try {
    const client = adapter.getClient()
    const sandbox = await adapter.createSandbox({})
    const id = sandbox.id
    await client.getBox(id) // warm-up: interpreter start, dialect detection, auth

    let baseline
    if (setup.server) {
      const url = `${setup.server.url}/__testbed/requests?limit=0`
      baseline = await time(rounds, () => fetch(url).then((r) => r.arrayBuffer()))
      row(mode.name, 'loopback HTTP round trip (fetch, baseline)', `${fmt(baseline.median)} ms (p95 ${fmt(baseline.p95)})`)
    } else {
      baseline = await time(rounds, () => adapter.getSandbox(id).catch(() => {}).then(() => undefined).then(() => null))
    }
    const call = await time(rounds, () => client.getBox(id))
    row(
      mode.name,
      setup.server ? 'getBox (metadata call)' : 'getBox (JS → Python → JS, in-process)',
      `${fmt(call.median)} ms (p95 ${fmt(call.p95)})`,
      setup.server ? `${(call.median / baseline.median).toFixed(2)}× loopback RTT` : '',
    )
    const exec = await time(Math.min(rounds, 100), () => sandbox.exec('true'))
    row(mode.name, 'exec round trip (bash -c true)', `${fmt(exec.median)} ms (p95 ${fmt(exec.p95)})`)
    const stream = await ttfb(sandbox)
    row(mode.name, 'execStream first byte (command runs 1 s)', `${fmt(stream.first)} ms`, `total ${fmt(stream.total)} ms`)

    const data = Buffer.alloc(megabytes * 1024 * 1024, 7)
    let started = performance.now()
    await sandbox.writeFile('/root/bench.bin', data)
    const up = performance.now() - started
    started = performance.now()
    const back = await sandbox.readFile('/root/bench.bin')
    const down = performance.now() - started
    if (back.byteLength !== data.length) throw new Error('download size mismatch')
    row(mode.name, `upload ${megabytes} MB (writeFile)`, `${fmt(up)} ms`, `${((megabytes * 1000) / up).toFixed(0)} MB/s`)
    row(mode.name, `download ${megabytes} MB (readFile)`, `${fmt(down)} ms`, `${((megabytes * 1000) / down).toFixed(0)} MB/s`)

    started = performance.now()
    const results = await Promise.all(Array.from({ length: concurrency }, (_, i) => sandbox.exec(`echo ${i}`)))
    const wall = performance.now() - started
    if (results.some((r, i) => r.stdout !== `${i}\n`)) throw new Error('concurrent exec output mismatch')
    row(
      mode.name,
      `${concurrency} concurrent execs`,
      `${fmt(wall)} ms wall`,
      `${((concurrency * 1000) / wall).toFixed(0)} execs/s; ${(exec.median * concurrency / wall).toFixed(1)}× sequential`,
    )
    // Diagnostics off vs on (DEBUG=sandbank:boxlite): alternating children, best median of three each.
    const runs = []
    for (const debug of [false, true, false, true, false, true]) runs.push({ debug, ...(await childRun(setup.config, debug)) })
    const best = (debug, key) => Math.min(...runs.filter((r) => r.debug === debug).map((r) => r[key]))
    for (const key of ['getBox', 'exec']) {
      row(
        mode.name,
        `${key}, diagnostics off → on (DEBUG=sandbank:boxlite)`,
        `${fmt(best(false, key))} → ${fmt(best(true, key))} ms`,
        `on/off ${(best(true, key) / best(false, key)).toFixed(2)}×`,
      )
    }
    await adapter.destroySandbox(id)
  } finally {
    await adapter.dispose()
    await setup.teardown()
  }
}

const width = (key) => Math.max(key.length, ...rows.map((r) => String(r[key]).length))
const columns = ['mode', 'metric', 'value', 'ratio']
const line = (r) => `| ${columns.map((c) => String(r[c]).padEnd(width(c))).join(' | ')} |`
console.log(line(Object.fromEntries(columns.map((c) => [c, c]))))
console.log(`|${columns.map((c) => '-'.repeat(width(c) + 2)).join('|')}|`)
for (const r of rows) console.log(line(r))

// Soak benchmark (run on demand, never in CI): many execs, create/destroy cycles and terminals
// per mode against the test bed, printing the process's RSS, open descriptors and threads, and
// the boxes left, at the start (after a warm-up) and at the end. Flat numbers mean no leak.
//   node bench/soak.mjs [--modes local,sse,current,boxrun] [--execs 10000] [--cycles 1000]
//                       [--terminals 100] [--concurrency 8] [--create-timeout 120]
// Uses whichever addon is built (bench/run.sh builds the release ones).
import { readdirSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { BoxLiteAdapter } from '../index.js'
import { resolveTestTarget } from '../__test__/helpers/target.mjs'
import { adapterModes } from '../__test__/helpers/testbed.mjs'

const { values } = parseArgs({
  options: {
    modes: { type: 'string', default: 'local,sse,current,boxrun' },
    execs: { type: 'string', default: '10000' },
    cycles: { type: 'string', default: '1000' },
    terminals: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '8' },
    // Seconds per create: a first boot on a real runtime on a loaded machine can pass 30 s.
    'create-timeout': { type: 'string', default: '120' },
  },
})
const execs = Number(values.execs)
const cycles = Number(values.cycles)
const terminals = Number(values.terminals)
const concurrency = Number(values.concurrency)
const createTimeout = Number(values['create-timeout'])
const wanted = values.modes.split(',')

const target = await resolveTestTarget()
if (target.skip) {
  console.log(`skipped: ${target.reason}`)
  process.exit(0)
}
const image = target.image ?? 'ubuntu:24.04'

/** RSS (MiB), open descriptors and threads of this process, and the boxes the server lists. */
async function sample(adapter) {
  global.gc?.()
  const status = readFileSync('/proc/self/status', 'utf8')
  return {
    rssMiB: Math.round(process.memoryUsage().rss / 1048576),
    fds: readdirSync('/proc/self/fd').length,
    threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]),
    boxes: adapter ? (await adapter.listSandboxes()).length : '-',
  }
}

/** Runs `fn(i)` for i in 0..n with `width` in flight. */
async function pool(n, width, fn) {
  let next = 0
  const worker = async () => {
    while (next < n) await fn(next++)
  }
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker))
}

/** Opens a terminal, runs one command in it, closes it. */
async function oneTerminal(sandbox, i) {
  const { url } = await sandbox.startTerminal()
  await new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.binaryType = 'nodebuffer'
    let seen = ''
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`terminal ${i}: no echo within 20 s (got ${JSON.stringify(seen.slice(-200))})`))
    }, 20_000)
    ws.on('open', () => ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(`echo soak-${i}-ok\r`)])))
    ws.on('message', (data) => {
      if (data[0] === 0) seen += data.subarray(1).toString()
      if (seen.includes(`soak-${i}-ok\r\n`) || seen.includes(`soak-${i}-ok\n`)) {
        clearTimeout(timer)
        ws.close()
      }
    })
    ws.on('close', () => {
      clearTimeout(timer)
      resolve()
    })
    ws.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

function row(name, start, end, note = '') {
  const cell = (k) => `${start[k]} → ${end[k]}`
  console.log(`| ${name.padEnd(26)} | ${cell('rssMiB').padEnd(12)} | ${cell('fds').padEnd(10)} | ${cell('threads').padEnd(9)} | ${cell('boxes').padEnd(7)} | ${note}`)
}

for (const mode of adapterModes(target).filter((m) => wanted.includes(m.dialect))) {
  const setup = await mode.setup()
  const adapter = new BoxLiteAdapter(setup.config)
  try {
    // Warm-up: the runtime, the connection pool and the engine exist before the first sample.
    const sandbox = await adapter.createSandbox({ image, timeout: createTimeout })
    await sandbox.exec('true')
    const warm = await adapter.createSandbox({ image, timeout: createTimeout })
    await adapter.destroySandbox(warm.id)
    console.log(`\n## ${mode.name}: ${execs} execs (${concurrency} at once), ${cycles} create/destroy cycles, ${terminals} terminals`)
    console.log('| phase                      | RSS MiB      | fds        | threads   | boxes   | note')
    console.log('| --- | --- | --- | --- | --- | --- |')
    const begin = await sample(adapter)

    let started = Date.now()
    let before = begin
    await pool(execs, concurrency, async (i) => {
      const { exitCode, stdout } = await sandbox.exec(`echo ${i}`)
      if (exitCode !== 0 || stdout !== `${i}\n`) throw new Error(`exec ${i}: ${exitCode} ${JSON.stringify(stdout)}`)
    })
    let after = await sample(adapter)
    row('execs', before, after, `${Math.round(execs / ((Date.now() - started) / 1000))}/s`)

    started = Date.now()
    before = after
    for (let i = 0; i < cycles; i++) {
      const box = await adapter.createSandbox({ image, timeout: createTimeout })
      await adapter.destroySandbox(box.id)
    }
    after = await sample(adapter)
    row('create/destroy cycles', before, after, `${Math.round((Date.now() - started) / cycles)} ms/cycle`)

    before = after
    let note
    if (typeof sandbox.startTerminal !== 'function') note = 'no startTerminal'
    else {
      try {
        started = Date.now()
        for (let i = 0; i < terminals; i++) await oneTerminal(sandbox, i)
        note = `${Math.round((Date.now() - started) / terminals)} ms/terminal`
      } catch (err) {
        note = `terminals refused: ${err.message.split('\n')[0].slice(0, 120)}`
      }
    }
    after = await sample(adapter)
    row('terminals', before, after, note)

    await adapter.destroySandbox(sandbox.id)
    const end = await sample(adapter)
    row('whole run (start → end)', begin, end)
    await adapter.dispose()
    // Destroying the sandbox closed its terminal servers; dispose releases the rest.
    row('after dispose', begin, await sample(null), 'boxes not listed (adapter disposed)')
  } finally {
    await adapter.dispose()
    await setup.teardown()
  }
}

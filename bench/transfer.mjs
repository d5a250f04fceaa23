// Large-file throughput in the current dialect, on demand (never in CI):
//   node bench/transfer.mjs [--mib 1024] [--rounds 2] [--targets testbed,serve] [--dirs /root,/tmp] [--markdown]
// `writeFile` and `readFile` of one random (incompressible) file, per target and directory.
// `/root` is on the box's disk (reads use the server's file endpoint); `/tmp` is a tmpfs in a
// real guest, where reads go through command output in checked pieces (docs/dialects.md). Targets: `testbed` = our test server (current dialect, simulator SDK); `serve` = a
// real `boxlite serve` named by BOXLITE_REAL_CURRENT_URL / BOXLITE_REAL_CURRENT_API_KEY (image
// from BOXLITE_TEST_ROOTFS), as bench/transfer.sh starts it over the fake VM. The current
// dialect uploads through exec stdin (the real server refuses request bodies over 2 MiB) and
// downloads with the files endpoint, so the figure to watch is upload / download throughput.
import { randomBytes, createHash } from 'node:crypto'
import { cpus, loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '2' },
    targets: { type: 'string', default: 'testbed,serve' },
    dirs: { type: 'string', default: '/root,/tmp' },
    markdown: { type: 'boolean', default: false },
  },
})
const MIB = Number(values.mib)
const ROUNDS = Number(values.rounds)
if (!(MIB > 0) || !(ROUNDS > 0)) throw new Error('--mib and --rounds must be positive numbers')

const { BoxLiteAdapter } = await import('../index.js')
const { resolveTestTarget } = await import('../__test__/helpers/target.mjs')
const { startTestServer } = await import('../__test__/helpers/testbed.mjs')

const digest = (bytes) => createHash('sha256').update(bytes).digest('hex')
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Each target: { name, config, image, teardown }. */
async function openTargets() {
  const wanted = values.targets.split(',')
  const out = []
  if (wanted.includes('testbed')) {
    const target = await resolveTestTarget({ ...process.env, BOXLITE_TEST_TARGET: 'sim' })
    const server = await startTestServer(target, ['--dialect', 'current', '--auth', 'token', '--token', 'bench'])
    out.push({
      name: 'our test server (current)',
      config: { apiUrl: server.url, apiToken: 'bench', dialect: 'current' },
      image: undefined,
      teardown: () => server.stop(),
    })
  }
  if (wanted.includes('serve')) {
    const url = process.env.BOXLITE_REAL_CURRENT_URL
    if (!url) {
      console.log('serve: skipped (BOXLITE_REAL_CURRENT_URL is not set; bench/transfer.sh starts boxlite serve)')
    } else {
      out.push({
        name: 'boxlite serve 0.11.0 (fake VM)',
        config: { apiUrl: url, apiToken: process.env.BOXLITE_REAL_CURRENT_API_KEY, dialect: 'current' },
        image: process.env.BOXLITE_TEST_ROOTFS,
        teardown: async () => {},
      })
    }
  }
  return out
}

const data = randomBytes(MIB * 1024 * 1024)
const want = digest(data)
const dirs = values.dirs.split(',')
const rate = (ms) => MIB / (ms / 1000)
const rows = []
for (const t of await openTargets()) {
  const adapter = new BoxLiteAdapter(t.config)
  const times = Object.fromEntries(dirs.map((d) => [d, { up: [], down: [] }]))
  try {
    const sandbox = await adapter.createSandbox(t.image ? { image: t.image } : {})
    try {
      for (let r = 0; r < ROUNDS; r++) {
        for (const dir of dirs) {
          const path = `${dir}/transfer-${r}.bin`
          let began = performance.now()
          await sandbox.writeFile(path, data)
          times[dir].up.push(performance.now() - began)
          began = performance.now()
          const back = await sandbox.readFile(path)
          times[dir].down.push(performance.now() - began)
          if (back.length !== data.length || digest(back) !== want) {
            throw new Error(`${t.name}: readFile of ${path} returned other bytes (${back.length} of ${data.length})`)
          }
          await sandbox.exec(`rm -f ${path}`)
        }
      }
    } finally {
      await adapter.destroySandbox(sandbox.id)
    }
  } finally {
    await adapter.dispose()
    await t.teardown()
  }
  for (const dir of dirs) {
    const up = rate(median(times[dir].up))
    const down = rate(median(times[dir].down))
    rows.push([t.name, dir, `${up.toFixed(0)} MiB/s`, `${down.toFixed(0)} MiB/s`, (up / down).toFixed(2)])
  }
}

const head = ['target', 'directory', `writeFile ${MIB} MiB`, `readFile ${MIB} MiB`, 'upload / download (goal ≥ 0.5)']
console.log(
  `# transfer, ${MIB} MiB random bytes, median of ${ROUNDS} rounds; ${cpus().length} cores, load ${loadavg()[0].toFixed(1)}`,
)
if (values.markdown) {
  console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`)
  for (const r of rows) console.log(`| ${r.join(' | ')} |`)
} else {
  console.table(rows.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]]))))
}

// Child process of bench/run.mjs: diagnostics are read from the environment once per process, so
// "on" and "off" are measured in two children started the same way (DEBUG set or not; stderr
// goes to /dev/null, so formatting and writing the lines is what "on" costs).
//   node bench/diagnostics.mjs '<adapter config JSON>' <rounds>
// Prints {"getBox": median ms, "exec": median ms}.
import { performance } from 'node:perf_hooks'
import { BoxLiteAdapter } from '../index.js'

const config = JSON.parse(process.argv[2])
const rounds = Number(process.argv[3])

async function median(n, fn) {
  const samples = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await fn()
    samples.push(performance.now() - started)
  }
  samples.sort((a, b) => a - b)
  return samples[Math.floor(samples.length / 2)]
}

const adapter = new BoxLiteAdapter(config)
try {
  const client = adapter.getClient()
  const sandbox = await adapter.createSandbox({})
  await client.getBox(sandbox.id) // warm-up
  const getBox = await median(rounds, () => client.getBox(sandbox.id))
  const exec = await median(Math.max(10, Math.floor(rounds / 4)), () => sandbox.exec('true'))
  await adapter.destroySandbox(sandbox.id)
  console.log(JSON.stringify({ getBox, exec }))
} finally {
  await adapter.dispose()
}

// The quickstart demo: local mode through @sandbank.dev/core, as a user would write it.
// Usage: node examples/demo.mjs --python <interpreter with boxlite> [--simulator] [--image <image or OCI dir>]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createProvider } from '@sandbank.dev/core'
import { BoxLiteAdapter } from '../index.js'

const { values } = parseArgs({
  options: { python: { type: 'string' }, simulator: { type: 'boolean' }, image: { type: 'string' } },
})
const label = values.simulator ? '[simulator] ' : ''
const home = await mkdtemp(join(tmpdir(), 'boxlite-demo-'))
const adapter = new BoxLiteAdapter({ mode: 'local', pythonPath: values.python, boxliteHome: home })
const provider = createProvider(adapter)
const step = (text) => console.log(`${label}${text}`)

let sandbox
try {
  step('creating a sandbox…')
  sandbox = await provider.create({ image: values.image ?? 'ubuntu:24.04' })
  step(`sandbox ${sandbox.id} is ${sandbox.state}`)

  const { stdout, exitCode } = await sandbox.exec('echo "hello from $(uname -s)"; id -un')
  step(`exec → exit ${exitCode}: ${stdout.trim().replace(/\n/g, ' | ')}`)

  await sandbox.writeFile('/root/greeting.txt', 'written by the demo\n')
  const text = new TextDecoder().decode(await sandbox.readFile('/root/greeting.txt'))
  step(`writeFile/readFile → ${JSON.stringify(text)}`)

  step('streaming (each line arrives as it is printed):')
  const stream = await sandbox.execStream('for i in 1 2 3; do echo "tick $i"; sleep 0.3; done')
  const started = Date.now()
  for await (const chunk of stream) {
    process.stdout.write(`${label}  +${Date.now() - started} ms ${new TextDecoder().decode(chunk)}`)
  }
} catch (err) {
  console.error(`${label}demo failed: ${err.message}`)
  process.exitCode = 1
} finally {
  if (sandbox) {
    await provider.destroy(sandbox.id)
    step(`destroyed ${sandbox.id}`)
  }
  await adapter.dispose()
  await rm(home, { recursive: true, force: true })
}

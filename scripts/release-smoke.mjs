// Release check (scripts/check-release.sh, musl step): loads the package as a user does, runs
// one sandbox through the test server in remote mode, then asks for local mode, which must
// refuse with its reason on platforms without a local flavour. Prints one JSON line per step.
//   node scripts/release-smoke.mjs API_URL API_TOKEN
import { createProvider } from '@sandbank.dev/core'
import { BoxLiteAdapter } from '@sandbank.dev/boxlite'

const [apiUrl, apiToken] = process.argv.slice(2)
if (!apiUrl) {
  console.error('usage: node scripts/release-smoke.mjs API_URL API_TOKEN')
  process.exit(2)
}
const platform = `${process.platform}-${process.arch}${process.report?.getReport?.().header.glibcVersionRuntime ? '-gnu' : process.platform === 'linux' ? '-musl' : ''}`

const remote = createProvider(new BoxLiteAdapter({ apiUrl, apiToken, dialect: 'current' }))
const sandbox = await remote.create({ image: 'ubuntu:24.04' })
const result = await sandbox.exec('echo smoke-ok')
await remote.destroy(sandbox.id)
const glibc = process.report?.getReport?.().header.glibcVersionRuntime ?? null
console.log(JSON.stringify({ step: 'remote', platform, node: process.version, glibc, result }))
if (result.exitCode !== 0 || result.stdout !== 'smoke-ok\n') process.exit(1)

const local = createProvider(new BoxLiteAdapter({ mode: 'local' }))
const refused = await local.create({ image: 'ubuntu:24.04' }).then(
  () => null,
  (err) => err,
)
console.log(JSON.stringify({ step: 'local', platform, error: refused?.name, message: refused?.message }))

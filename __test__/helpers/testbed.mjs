/**
 * The test bed for the Node suites: starts the test server (python/testbed) in a given dialect
 * and auth mode and describes every mode the adapter runs in (local mode on the SDK, and the
 * three remote dialects), for the target chosen by BOXLITE_TEST_TARGET (helpers/target.mjs).
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const READY = 'BOXLITE_TESTBED_READY '
const START_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000

/**
 * Starts the test server with `args` (e.g. `--dialect current --auth token --token t`).
 * Resolves to `{ url, info, stop(), control(method, path, body?) }` once it printed its ready line.
 */
export async function startTestServer(target, args, extraEnv = {}) {
  const { command, args: fullArgs, env } = target.serverCommand('--host', '127.0.0.1', '--port', '0', ...args)
  const child = spawn(command, fullArgs, {
    env: { ...process.env, ...env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const stderr = []
  child.stderr.on('data', (chunk) => {
    stderr.push(chunk.toString())
    if (stderr.length > 200) stderr.shift()
  })
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`test server did not start within ${START_TIMEOUT_MS} ms: ${stderr.join('').slice(-2000)}`))
    }, START_TIMEOUT_MS)
    const lines = createInterface({ input: child.stdout })
    lines.on('line', (line) => {
      if (!line.startsWith(READY)) return
      clearTimeout(timer)
      resolve(JSON.parse(line.slice(READY.length)))
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`test server exited with ${code} before it was ready: ${stderr.join('').slice(-2000)}`))
    })
  })
  child.stdout.resume()
  const url = info.url
  return {
    url,
    info,
    logs: () => stderr.join(''),
    async control(method, path, body) {
      const response = await fetch(`${url}/__testbed${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      })
      if (!response.ok) throw new Error(`control ${method} ${path}: ${response.status} ${await response.text()}`)
      const text = await response.text()
      return text ? JSON.parse(text) : null
    },
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await new Promise((resolve) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL')
          resolve()
        }, STOP_TIMEOUT_MS)
        child.on('exit', () => {
          clearTimeout(timer)
          resolve()
        })
      })
    },
  }
}

const TOKEN = 'test-token-5f1c9a'
const CLIENT = { id: 'test-client', secret: 'test-secret-77ad' }

/**
 * Every mode the adapter runs in for this target, each as `{ name, setup(): Promise<{config,
 * teardown(), server?}> }`. `sim` and `real-sdk`: local mode plus a test server per dialect;
 * `remote`: the configured server only.
 */
export function adapterModes(target) {
  if (target.target === 'remote') {
    const api = target.api ?? {}
    return [
      {
        name: `remote (${api.dialect})`,
        dialect: api.dialect,
        setup: async () => ({
          config: {
            apiUrl: api.url,
            apiToken: api.token ?? undefined,
            clientId: api.clientId ?? undefined,
            clientSecret: api.clientSecret ?? undefined,
            prefix: api.prefix ?? undefined,
            dialect: api.dialect,
          },
          teardown: async () => {},
        }),
      },
    ]
  }
  // `key` names the mode (BOXLITE_TEST_MODES); `args` start the test server.
  const remote = (name, key, args, config, env) => ({
    name,
    dialect: key,
    setup: async () => {
      const server = await startTestServer(target, args, env)
      return { server, config: { apiUrl: server.url, ...config }, teardown: () => server.stop() }
    },
  })
  return [
    {
      name: 'local',
      dialect: 'local',
      setup: async () => {
        const home = await mkdtemp(join(tmpdir(), 'boxlite-home-'))
        return {
          config: { mode: 'local', pythonPath: target.python, boxliteHome: home },
          teardown: () => rm(home, { recursive: true, force: true }),
        }
      },
    },
    remote(
      'remote sse',
      'sse',
      ['--dialect', 'sse-ref', '--auth', 'client-credentials', '--client-id', CLIENT.id, '--client-secret', CLIENT.secret],
      { clientId: CLIENT.id, clientSecret: CLIENT.secret },
    ),
    // The SSE-era `boxlite serve`: fixed `default` prefix, stub token endpoint, executions
    // forgotten once their output is opened (no stdin), nested uploads.
    remote(
      'remote sse (boxlite serve)',
      'sse-serve',
      ['--dialect', 'sse-serve', '--prefix', 'default', '--auth', 'client-credentials', '--client-id', CLIENT.id,
        '--client-secret', CLIENT.secret],
      { clientId: CLIENT.id, clientSecret: CLIENT.secret },
    ),
    remote('remote current', 'current', ['--dialect', 'current', '--auth', 'token', '--token', TOKEN], { apiToken: TOKEN }),
    // BoxRun admits boxes up to the host's CPU count (2 here, one default box); operators raise
    // it with BOXRUN_MAX_CPU, as the suites need several boxes at once.
    remote('remote boxrun', 'boxrun', ['--dialect', 'boxrun', '--auth', 'none'], {}, { BOXRUN_MAX_CPU: '64' }),
  ]
}

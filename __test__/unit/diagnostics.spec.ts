// Diagnostics switches as Node users set them: the addon reads DEBUG / BOXLITE_LOG from the
// process environment when the first adapter is made, and prints one line per event on stderr.
// Each case runs in a child process (the switches are read once per process).
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const entry = fileURLToPath(new URL('../../index.js', import.meta.url))

// A refused connection (port 1 on loopback) exercises requests and retries without a server.
const script = `
import { BoxLiteAdapter } from ${JSON.stringify(entry)}
const adapter = new BoxLiteAdapter({ apiUrl: 'http://127.0.0.1:1', apiToken: 'tok-never-printed', dialect: 'boxrun' })
await adapter.getClient().getBox('b1').catch(() => {})
await adapter.dispose()
`

function run(env: Record<string, string>) {
  const base = { ...process.env }
  delete base.DEBUG
  delete base.BOXLITE_LOG
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...base, ...env },
    encoding: 'utf8',
    timeout: 15_000,
  })
  expect(child.status).toBe(0)
  return child.stderr.split('\n').filter((line) => line.length > 0)
}

describe('diagnostics', { timeout: 60_000 }, () => {
  it('are off by default: nothing on stderr', () => {
    expect(run({})).toEqual([])
  })

  it('DEBUG=sandbank:boxlite prints one line per request attempt and retry, never the token', () => {
    const lines = run({ DEBUG: 'sandbank:boxlite' })
    expect(lines.length).toBeGreaterThan(2)
    for (const line of lines) {
      expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z sandbank:boxlite (DEBUG|TRACE|INFO|WARN|ERROR) /)
      expect(line).not.toContain('tok-never-printed')
    }
    expect(lines.some((l) => l.includes('request failed method=GET path=/v1/boxes/b1'))).toBe(true)
    expect(lines.some((l) => l.includes('retrying') && l.includes('retry=1'))).toBe(true)
  })

  it('DEBUG=sandbank:* and BOXLITE_LOG=trace turn them on too; other namespaces do not', () => {
    expect(run({ DEBUG: 'sandbank:*' }).length).toBeGreaterThan(0)
    expect(run({ BOXLITE_LOG: 'trace' }).length).toBeGreaterThan(0)
    expect(run({ DEBUG: 'express:*' })).toEqual([])
    expect(run({ DEBUG: '*,-sandbank:boxlite' })).toEqual([])
  })

  it('an unknown BOXLITE_LOG level prints one warning naming the accepted ones', () => {
    const lines = run({ BOXLITE_LOG: 'verbose' })
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain('BOXLITE_LOG="verbose" is not a level; use error, warn, info, debug, trace or off')
  })
})

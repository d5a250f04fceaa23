// The drop-in surface of BoxLiteAdapter (the same class, config, methods and error classes as the
// original TypeScript package), driven
// through the stand-in @sandbank.dev/core exactly as users drive it.
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { createProvider, ProviderError, SandboxNotFoundError } from '@sandbank.dev/core'
import { BoxLiteAdapter } from '@sandbank.dev/boxlite'

const require = createRequire(import.meta.url)
// Nothing listens on port 1: any remote call fails fast without a server.
const UNREACHABLE = { apiUrl: 'http://127.0.0.1:1' }
const ADAPTER_METHODS = ['createSandbox', 'getSandbox', 'listSandboxes', 'destroySandbox', 'getClient', 'dispose']
const CLIENT_METHODS = [
  'createBox', 'getBox', 'listBoxes', 'deleteBox', 'startBox', 'stopBox', 'exec', 'execStream',
  'uploadFiles', 'downloadFiles', 'createSnapshot', 'restoreSnapshot', 'deleteSnapshot', 'listSnapshots',
  'cloneBox', 'exportBox', 'importBox', 'execAsync', 'getExecOutput', 'sendExecInput', 'signalExec',
  'resizeExec', 'getMetrics', 'getBoxMetrics', 'getConfig', 'dispose',
]

describe('module entry', () => {
  // The installed package's `exports` map (import → index.js, require → index.cjs) is exercised by
  // packaging/pack-install.spec.ts; here both entries are loaded from the working tree.
  it('exports the same BoxLiteAdapter class to ESM import and CJS require', () => {
    const fromRequire = require('../../index.cjs').BoxLiteAdapter
    expect(typeof BoxLiteAdapter).toBe('function')
    expect(fromRequire).toBe(BoxLiteAdapter)
  })
})

describe('BoxLiteAdapter surface', () => {
  it("has name 'boxlite' as an own property", () => {
    const adapter = new BoxLiteAdapter(UNREACHABLE)
    expect(adapter.name).toBe('boxlite')
    expect(Object.prototype.hasOwnProperty.call(adapter, 'name')).toBe(true)
  })

  it('declares the five capabilities as a real Set in both modes', () => {
    const expected = new Set(['exec.stream', 'terminal', 'sleep', 'port.expose', 'snapshot'])
    for (const config of [UNREACHABLE, { mode: 'local' as const }]) {
      const adapter = new BoxLiteAdapter(config)
      expect(adapter.capabilities).toBeInstanceOf(Set)
      expect(adapter.capabilities).toEqual(expected)
    }
  })

  it('has the contract methods and a client with every BoxLiteClient method', () => {
    const adapter = new BoxLiteAdapter(UNREACHABLE)
    for (const method of ADAPTER_METHODS) expect(typeof (adapter as any)[method], method).toBe('function')
    const client = adapter.getClient()
    for (const method of CLIENT_METHODS) expect(typeof (client as any)[method], method).toBe('function')
    expect(adapter.getClient()).toBe(client)
  })

  it('becomes a provider through createProvider with name and capabilities intact', () => {
    const provider = createProvider(new BoxLiteAdapter(UNREACHABLE))
    expect(provider.name).toBe('boxlite')
    expect([...provider.capabilities].sort()).toEqual(['exec.stream', 'port.expose', 'sleep', 'snapshot', 'terminal'])
  })
})

describe('constructor', () => {
  const accepted: [string, unknown][] = [
    ['an empty apiUrl', { apiUrl: '' }],
    ['an unparsable apiUrl', { apiUrl: 'not-a-url' }],
    ['an unknown mode', { mode: 'bogus', apiUrl: 'http://h:1' }],
    ['no config at all', undefined],
    ['a function where a string belongs', { apiUrl: () => 'http://h:1' }],
    ['a circular object', (() => { const c: any = { apiUrl: 'http://h:1' }; c.self = c; return c })()],
    ['local mode with a missing interpreter', { mode: 'local', pythonPath: '/nonexistent/python' }],
  ]
  for (const [what, config] of accepted) {
    it(`does not throw for ${what}`, () => {
      expect(() => new BoxLiteAdapter(config as any)).not.toThrow()
    })
  }
})

describe('invalid config is reported on first use, naming the field', () => {
  const cases: [string, unknown, RegExp][] = [
    ['empty apiUrl', { apiUrl: '' }, /config\.apiUrl must be an absolute http\(s\) URL/],
    ['unparsable apiUrl', { apiUrl: 'not-a-url' }, /config\.apiUrl .*'not-a-url'/],
    ['unknown mode', { mode: 'bogus' }, /config\.mode must be 'remote' or 'local', got 'bogus'/],
    ['wrong type', { apiUrl: 9090 }, /config\.apiUrl must be a string, got a number/],
    ['function value', { mode: 'local', pythonPath: () => 'x' }, /config\.pythonPath must be a string, got a function/],
    ['missing config', undefined, /config must be an object/],
  ]
  for (const [what, config, message] of cases) {
    it(`rejects createSandbox with a ProviderError for ${what}`, async () => {
      const provider = createProvider(new BoxLiteAdapter(config as any))
      const err: any = await provider.create({}).catch((e) => e)
      expect(err).toBeInstanceOf(ProviderError)
      expect(err.provider).toBe('boxlite')
      expect(err.sandboxId).toBeUndefined()
      expect(err.cause).toBeInstanceOf(Error)
      expect(err.cause.code).toBe('invalid_config')
      expect(err.message).toMatch(message)
      expect(err.message).not.toMatch(/\[boxlite:/)
    })
  }

  it('reports it from getSandbox as a ProviderError carrying the id', async () => {
    const err: any = await new BoxLiteAdapter({ apiUrl: '' }).getSandbox('box-1').catch((e) => e)
    expect(err).toBeInstanceOf(ProviderError)
    expect(err).not.toBeInstanceOf(SandboxNotFoundError)
    expect(err.sandboxId).toBe('box-1')
  })

  it('reports it from the low-level client as a plain Error with a code', async () => {
    const err: any = await new BoxLiteAdapter({ apiUrl: '' }).getClient().getBox('b').catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err).not.toBeInstanceOf(ProviderError)
    expect(err.code).toBe('invalid_config')
  })
})

describe('local mode environment errors', () => {
  it('reports a pythonPath that does not exist as a ProviderError with code environment', async () => {
    const provider = createProvider(new BoxLiteAdapter({ mode: 'local', pythonPath: '/nonexistent/bin/python3' }))
    const err: any = await provider.create({}).catch((e) => e)
    expect(err).toBeInstanceOf(ProviderError)
    expect(err.cause.code).toBe('environment')
    expect(err.message).toMatch(/Python interpreter not found: config\.pythonPath is '\/nonexistent\/bin\/python3'/)
  })

  it('reports a getClient() call the same way, as a plain Error with the code', async () => {
    const client = new BoxLiteAdapter({ mode: 'local', pythonPath: '/nonexistent/bin/python3' }).getClient()
    const err: any = await client.listBoxes().catch((e) => e)
    expect(err).not.toBeInstanceOf(ProviderError)
    expect(err.code).toBe('environment')
  })
})

describe('dispose', () => {
  it('resolves, and resolves again, before and after use', async () => {
    const adapter = new BoxLiteAdapter(UNREACHABLE)
    await expect(adapter.dispose()).resolves.toBeUndefined()
    await adapter.listSandboxes().catch(() => {})
    await expect(adapter.dispose()).resolves.toBeUndefined()
    await expect(adapter.dispose()).resolves.toBeUndefined()
  })
})

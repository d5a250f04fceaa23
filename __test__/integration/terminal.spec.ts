// startTerminal without anything installed in the box (issue 7): the addon serves a loopback
// WebSocket behind a per-terminal token, speaking core's framing (0x00/0x01) and ttyd 1.7's
// ('0'/'1', `tty` subprotocol, opening JSON), detected from the client's first frame. Driven with
// core's own connectTerminal (the stand-in, with the `ws` class: Node 20 has no global WebSocket)
// and a raw ttyd-style client, in local mode and every remote dialect (BoxRun through its own box
// terminal WebSocket). The SSE-era boxlite serve has no way to run a shell: it falls back to the
// in-box ttyd when the box maps port 7681, otherwise it must refuse clearly.
// BOXLITE_TEST_MODES=local,sse,sse-serve,current,boxrun selects modes.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { connectTerminal, createProvider, ProviderError, type Sandbox, type SandboxProvider } from '@sandbank.dev/core'
import { BoxLiteAdapter } from '@sandbank.dev/boxlite'
import { resolveTestTarget } from '../helpers/target.mjs'
import { adapterModes } from '../helpers/testbed.mjs'

const target = await resolveTestTarget()
const selected = process.env.BOXLITE_TEST_MODES?.split(',').map((m) => m.trim())
const modes = adapterModes(target).filter((m) => !selected || selected.includes(m.dialect))
const image = target.image ?? 'ubuntu:24.04'
const URL_SHAPE = /^ws:\/\/127\.0\.0\.1:(\d+)\/terminal\/[0-9a-f]{64}\/ws$/
const WAIT_MS = 20_000

/** Resolves once `check()` is truthy; fails after `ms` with `what` and the last `detail()`. */
async function waitFor(what: string, check: () => boolean, detail: () => string = () => '', ms = WAIT_MS) {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got: ${JSON.stringify(detail().slice(-800))}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** A ttyd 1.7 style client: `tty` subprotocol, opening JSON, ASCII type bytes. */
function ttydClient(url: string) {
  const ws = new WebSocket(url, ['tty'])
  ws.binaryType = 'arraybuffer'
  const state = { output: '', titles: [] as string[], prefs: [] as string[], closed: null as null | { code: number; reason: string } }
  const decoder = new TextDecoder()
  ws.on('message', (data: ArrayBuffer) => {
    const bytes = new Uint8Array(data)
    const text = decoder.decode(bytes.subarray(1))
    if (bytes[0] === 0x30) state.output += text
    else if (bytes[0] === 0x31) state.titles.push(text)
    else if (bytes[0] === 0x32) state.prefs.push(text)
  })
  ws.on('close', (code, reason) => {
    state.closed = { code, reason: reason.toString() }
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const send = (type: string, payload: string) => ws.send(Buffer.from(type + payload))
  return {
    ws,
    state,
    opened,
    handshake: (columns: number, rows: number, AuthToken = '') => ws.send(Buffer.from(JSON.stringify({ AuthToken, columns, rows }))),
    input: (text: string) => send('0', text),
    resize: (columns: number, rows: number) => send('1', JSON.stringify({ columns, rows })),
  }
}

/** Core's connectTerminal with an output log. */
function coreClient(info: { url: string; port: number }) {
  const session = connectTerminal(info, { WebSocketImpl: WebSocket })
  const log = { output: '' }
  session.onData((text) => {
    log.output += text
  })
  return { session, log }
}

/** The HTTP status a WebSocket upgrade to `url` is refused with (or the connection error). */
function refusal(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url)
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0)
      ws.terminate()
    })
    ws.on('open', () => {
      resolve('opened')
      ws.close()
    })
    ws.on('error', (err: any) => resolve(err?.code ?? String(err)))
  })
}

for (const mode of modes) {
  describe(`terminal: ${mode.name}`, () => {
    let provider: SandboxProvider
    let adapter: BoxLiteAdapter
    let sandbox: Sandbox
    let config: any
    let teardown = async () => {}
    let disposed = false

    beforeAll(async () => {
      if (target.skip) return
      const setup = await mode.setup()
      teardown = setup.teardown
      config = setup.config
      adapter = new BoxLiteAdapter(config)
      provider = createProvider(adapter)
      sandbox = await provider.create({ image })
    })

    afterAll(async () => {
      if (disposed && sandbox) {
        // The suite's adapter was disposed by the last test: clean up through a fresh one.
        const cleanup = new BoxLiteAdapter(config)
        await cleanup.destroySandbox(sandbox.id).catch(() => {})
        await cleanup.dispose().catch(() => {})
      } else if (sandbox) {
        await provider.destroy(sandbox.id).catch(() => {})
        await adapter?.dispose()
      }
      await teardown()
    })

    it('refuses a hostname that is not loopback', async (ctx) => {
      if (target.skip) return ctx.skip()
      const err = await sandbox.startTerminal!({ hostname: '0.0.0.0' }).catch((e) => e)
      expect(err).toBeInstanceOf(ProviderError)
      expect(err.cause.code).toBe('invalid_argument')
      expect(err.message).toContain('loopback')
    })

    // The SSE-era boxlite serve forgets an execution once its output is read (no stdin) and has
    // no terminal endpoint: without a mapped ttyd port there is no way to a shell.
    if (mode.dialect === 'sse-serve') {
      it('says clearly that this server cannot run an interactive shell, and what would', async (ctx) => {
        if (target.skip) return ctx.skip()
        const err = await sandbox.startTerminal!().catch((e) => e)
        expect(err).toBeInstanceOf(ProviderError)
        expect(err.sandboxId).toBe(sandbox.id)
        expect(err.cause.code).toBe('unsupported')
        expect(err.message).toMatch(/startTerminal .*stdin.* is not supported by /)
        expect(err.message).toMatch(/dialect sse\): boxlite serve/)
        expect(err.message).toContain('port 7681')
      })

      it('falls back to the in-box ttyd when the box maps its port', async (ctx) => {
        if (target.skip) return ctx.skip()
        const mapped = await provider.create({ image, ports: [[17681, 7681]] })
        try {
          // Installing ttyd needs the box to reach the network; either way the in-box ttyd path
          // is the one taken (its own result or its own error), never the refusal above.
          const outcome = await mapped.startTerminal!().then(
            (info) => ({ url: info.url, port: info.port }),
            (err) => ({ error: String(err.message) }),
          )
          if ('error' in outcome) expect(outcome.error).toMatch(/ttyd (could not be installed|did not start) in box /)
          else expect(outcome).toEqual({ url: expect.stringMatching(/^ws:\/\/[^/]+:17681\/ws$/), port: 7681 })
        } finally {
          await provider.destroy(mapped.id).catch(() => {})
        }
      }, 180_000)
      return
    }

    it("core's connectTerminal: types a command, resizes, and the shell's exit closes the socket", async (ctx) => {
      if (target.skip) return ctx.skip()
      const info = await sandbox.startTerminal!()
      const [, port] = URL_SHAPE.exec(info.url) ?? []
      expect(info.url).toMatch(URL_SHAPE)
      expect(info.port).toBe(Number(port))

      const { session, log } = coreClient(info)
      await session.ready
      expect(session.state).toBe('open')
      // Core's client says nothing until the user types: the prompt still arrives (in its framing).
      await waitFor('the prompt', () => log.output.length > 0)
      session.write('echo core-$((6*7))\r')
      await waitFor('the command output', () => log.output.includes('core-42'), () => log.output)

      session.resize(101, 33)
      session.write('stty size\r')
      await waitFor('the new size', () => log.output.includes('33 101'), () => log.output)

      session.write('exit\r')
      await waitFor('the socket to close', () => session.state === 'closed', () => log.output)
    })

    it('a ttyd client: tty subprotocol, opening JSON sizes the shell, resize, exit closes with 1000', async (ctx) => {
      if (target.skip) return ctx.skip()
      const { url } = await sandbox.startTerminal!()
      const client = ttydClient(url)
      await client.opened
      expect(client.ws.protocol).toBe('tty')
      client.handshake(91, 29)
      await waitFor("ttyd's greeting", () => client.state.titles.length > 0 && client.state.prefs.length > 0)
      expect(client.state.titles[0]).toContain('/bin/bash')
      expect(JSON.parse(client.state.prefs[0])).toEqual({})

      client.input('echo ttyd-$((6*7)); stty size\r')
      await waitFor('output and the handshake size', () => /ttyd-42[\s\S]*29 91/.test(client.state.output), () => client.state.output)

      client.resize(120, 40)
      client.input('stty size\r')
      await waitFor('the resized size', () => client.state.output.includes('40 120'), () => client.state.output)

      client.input('exit\r')
      await waitFor('the socket to close', () => client.state.closed !== null, () => client.state.output)
      expect(client.state.closed!.code).toBe(1000)
    })

    it('a ttyd client without the subprotocol is recognised from its first frame', async (ctx) => {
      if (target.skip) return ctx.skip()
      const { url } = await sandbox.startTerminal!({ shell: '/bin/sh' })
      const ws = new WebSocket(url)
      ws.binaryType = 'arraybuffer'
      let output = ''
      ws.on('message', (data: ArrayBuffer) => {
        const bytes = new Uint8Array(data)
        if (bytes[0] === 0x30) output += new TextDecoder().decode(bytes.subarray(1))
      })
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
      ws.send('0echo plain-$((6*7))\r') // a text frame, as older ttyd clients send
      await waitFor('ttyd-framed output', () => output.includes('plain-42'), () => output)
      ws.close()
    })

    it('a wrong AuthToken in the opening message is refused', async (ctx) => {
      if (target.skip) return ctx.skip()
      const { url } = await sandbox.startTerminal!()
      const client = ttydClient(url)
      await client.opened
      client.handshake(80, 24, 'not-the-token')
      await waitFor('the refusal', () => client.state.closed !== null)
      expect(client.state.closed!.code).toBe(1008)
      expect(client.state.output).toBe('')
    })

    it('a wrong token or path is refused before the upgrade', async (ctx) => {
      if (target.skip) return ctx.skip()
      const { url } = await sandbox.startTerminal!()
      const wrong = url.replace(/\/terminal\/[0-9a-f]{64}\//, `/terminal/${randomBytes(32).toString('hex')}/`)
      expect(await refusal(wrong)).toBe(403)
      expect(await refusal(url.replace(/\/ws$/, '/other'))).toBe(404)
      expect(await refusal(url.replace(/\/terminal\/.*$/, '/ws'))).toBe(404)
    })

    it('closing the socket ends the shell', async (ctx) => {
      if (target.skip) return ctx.skip()
      const info = await sandbox.startTerminal!()
      const { session, log } = coreClient(info)
      await session.ready
      session.write('echo pid-$$-end\r')
      await waitFor('the shell pid', () => /pid-\d+-end/.test(log.output), () => log.output)
      const pid = /pid-(\d+)-end/.exec(log.output)![1]
      expect((await sandbox.exec(`kill -0 ${pid}`)).exitCode).toBe(0)

      session.close()
      const deadline = Date.now() + WAIT_MS
      let alive = true
      while (alive && Date.now() < deadline) {
        alive = (await sandbox.exec(`kill -0 ${pid} 2>/dev/null`)).exitCode === 0
        if (alive) await new Promise((r) => setTimeout(r, 200))
      }
      expect(alive).toBe(false)
    })

    it('dispose() closes every terminal server and its connections', async (ctx) => {
      if (target.skip) return ctx.skip()
      const first = await sandbox.startTerminal!()
      const second = await sandbox.startTerminal!()
      expect(second.url).not.toBe(first.url)
      const { session, log } = coreClient(first)
      await session.ready
      session.write('echo before-dispose-$((2*3))\r')
      await waitFor('the shell to answer', () => log.output.includes('before-dispose-6'), () => log.output)

      disposed = true
      await adapter.dispose()
      await waitFor('the socket to close', () => session.state === 'closed')
      expect(await refusal(first.url)).toBe('ECONNREFUSED')
      expect(await refusal(second.url)).toBe('ECONNREFUSED')
    })
  })
}

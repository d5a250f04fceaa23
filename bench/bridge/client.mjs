// Node side of the baseline bridge (bench/bridge/child.py): one Python child, one JSON request
// per line, replies matched by id, any number in flight.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const CHILD = fileURLToPath(new URL('./child.py', import.meta.url))
const START_TIMEOUT_MS = 30_000

export class Bridge {
  #child
  #next = 1
  #pending = new Map()

  /** Starts the child with `python` on SDK home `home`; resolves once it is ready. */
  static async start(python, home, env = {}) {
    const bridge = new Bridge()
    const child = spawn(python, [CHILD, home], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } })
    bridge.#child = child
    const lines = createInterface({ input: child.stdout, crlfDelay: Infinity })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bridge child did not start')), START_TIMEOUT_MS)
      child.once('exit', (code) => reject(new Error(`bridge child exited with ${code}`)))
      lines.on('line', (line) => {
        const reply = JSON.parse(line)
        if (reply.ready) {
          clearTimeout(timer)
          resolve()
          return
        }
        const waiter = bridge.#pending.get(reply.id)
        bridge.#pending.delete(reply.id)
        if (reply.ok) waiter.resolve(reply.result)
        else waiter.reject(new Error(reply.error))
      })
    })
    return bridge
  }

  call(op, args = {}) {
    const id = this.#next++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#child.stdin.write(`${JSON.stringify({ id, op, ...args })}\n`)
    })
  }

  exec(boxId, command) {
    return this.call('exec', { box_id: boxId, cmd: ['bash', '-c', command] })
  }

  async downloadArchive(boxId, path) {
    return Buffer.from((await this.call('download', { box_id: boxId, path })).data, 'base64')
  }

  uploadArchive(boxId, tar, path) {
    return this.call('upload', { box_id: boxId, path, data: Buffer.from(tar).toString('base64') })
  }

  async stop() {
    this.#child.stdin.end()
    await new Promise((resolve) => {
      if (this.#child.exitCode !== null) return resolve()
      const timer = setTimeout(() => {
        this.#child.kill('SIGKILL')
        resolve()
      }, 10_000)
      this.#child.once('exit', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}

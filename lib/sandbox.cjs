/**
 * `BoxLiteSandbox`: the `AdapterSandbox` the adapter hands to @sandbank.dev/core. A thin view over
 * the native adapter keyed by box id; every failure becomes a sandbank error here, through
 * lib/errors.cjs (an unknown box is a SandboxNotFoundError, a timed-out exec an ExecTimeoutError).
 */
'use strict'

const { PROVIDER, toSandbankError, fromNative, loadErrorClasses } = require('./errors.cjs')
const { mapStreamErrors } = require('./streams.cjs')
const { toWireConfig } = require('./config.cjs')

const nativeOf = new WeakMap()

class BoxLiteSandbox {
  #info

  /** @param native the native adapter; @param info `{ id, state, createdAt, image, status }`. */
  constructor(native, info) {
    nativeOf.set(this, native)
    this.#info = info
  }

  /** The box id. */
  get id() {
    return this.#info.id
  }

  /** The state when this object was fetched (re-`get` the sandbox for a fresh one). */
  get state() {
    return this.#info.state
  }

  get createdAt() {
    return this.#info.createdAt
  }

  /** The image (or OCI layout path) the box was created from. */
  get image() {
    return this.#info.image
  }

  #mapError(err) {
    return toSandbankError(err, { sandboxId: this.#info.id, notFound: true })
  }

  async #call(method, ...args) {
    try {
      return await nativeOf.get(this)[method](this.#info.id, ...args)
    } catch (err) {
      throw await this.#mapError(err)
    }
  }

  /** `bash -c command`; `timeout` (ms) kills the command and rejects with ExecTimeoutError. */
  async exec(command, options) {
    try {
      const result = await nativeOf.get(this).sandboxExec(this.#info.id, command, toWireConfig(options ?? null))
      return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr }
    } catch (err) {
      const cause = fromNative(err)
      if (cause?.code === 'exec_timeout') {
        const { ExecTimeoutError } = await loadErrorClasses()
        const timeoutError = new ExecTimeoutError(PROVIDER, this.#info.id, options?.timeout)
        timeoutError.cause = cause
        throw timeoutError
      }
      throw await this.#mapError(err)
    }
  }

  /** stdout and stderr bytes as produced; cancelling the stream stops the command. */
  async execStream(command, options) {
    const stream = await this.#call('sandboxExecStream', command, toWireConfig(options ?? null))
    return mapStreamErrors(stream, (err) => this.#mapError(err))
  }

  /** Writes a file (strings as UTF-8), creating parent directories; any size. */
  writeFile(path, content) {
    return this.#call('writeFile', path, content)
  }

  async readFile(path) {
    return this.#call('readFile', path)
  }

  /** Extracts a tar or tar.gz (bytes or a ReadableStream) into `destDir` (default `/`). */
  uploadArchive(archive, destDir) {
    return this.#call('uploadArchive', archive, destDir ?? '/')
  }

  /** A gzip tar of the contents of `srcDir` (default `/`), streamed. */
  async downloadArchive(srcDir) {
    const stream = await this.#call('downloadArchive', srcDir ?? '/')
    return mapStreamErrors(stream, (err) => this.#mapError(err))
  }

  sleep() {
    return this.#call('sleep')
  }

  /** Starts the box again; resolves once it runs. */
  wake() {
    return this.#call('wake')
  }

  /** Snapshots the box (a running box is stopped for it and started again); the id is the name. */
  async createSnapshot(name) {
    const snapshotId = await this.#call('sandboxCreateSnapshot', name ?? `snap-${Date.now()}`)
    return { snapshotId }
  }

  restoreSnapshot(snapshotId) {
    return this.#call('sandboxRestoreSnapshot', snapshotId)
  }

  /** `{ url }` of a guest port: the mapped host port on the API host (127.0.0.1 locally). */
  async exposePort(port, options) {
    const url = await this.#call('exposePort', port, options?.hostname ?? null)
    return { url }
  }

  /**
   * `{ url, port }` of a terminal of this box. Default: a WebSocket served by the addon on loopback
   * (`ws://127.0.0.1:<port>/terminal/<token>/ws`), nothing installed in the box; it speaks core's
   * `connectTerminal` framing and ttyd 1.7's, and each connection runs `options.shell` (default
   * `/bin/bash`) with a pty. `options.mode: 'ttyd'` restores the original: ttyd downloaded into the
   * box and reached through the port mapped to guest port 7681.
   */
  async startTerminal(options) {
    const info = await this.#call('startTerminal', toWireConfig(options ?? null))
    return { url: info.url, port: info.port }
  }
}

module.exports = { BoxLiteSandbox }

/**
 * @sandbank.dev/boxlite: the `BoxLiteAdapter` class users hand to `createProvider`. It keeps the
 * original TypeScript package's surface and delegates every operation to the native addon;
 * errors become `@sandbank.dev/core` classes in one place (lib/errors.cjs).
 */
'use strict'

const { toWireConfig } = require('./lib/config.cjs')
const { bindingFor } = require('./lib/native.cjs')
const { toSandbankError, isNotFound } = require('./lib/errors.cjs')
const { BoxLiteClient } = require('./lib/client.cjs')
const { BoxLiteSandbox } = require('./lib/sandbox.cjs')

const CAPABILITIES = Object.freeze(['exec.stream', 'terminal', 'sleep', 'port.expose', 'snapshot'])

class BoxLiteAdapter {
  #config
  #native
  #client

  /** Never throws and does no I/O: an unusable config is reported by the first operation. */
  constructor(config) {
    this.name = 'boxlite'
    this.capabilities = new Set(CAPABILITIES)
    this.#config = toWireConfig(config)
  }

  #adapter() {
    this.#native ??= new (bindingFor(this.#config).NativeAdapter)(this.#config)
    return this.#native
  }

  /** Creates a box and resolves once it runs (gives up after `config.timeout ?? 30` seconds). */
  async createSandbox(config) {
    try {
      const native = this.#adapter()
      return new BoxLiteSandbox(native, await native.createSandbox(toWireConfig(config ?? {})))
    } catch (err) {
      throw await toSandbankError(err)
    }
  }

  async getSandbox(id) {
    try {
      const native = this.#adapter()
      return new BoxLiteSandbox(native, await native.getSandbox(id))
    } catch (err) {
      throw await toSandbankError(err, { sandboxId: id, notFound: true })
    }
  }

  async listSandboxes(filter) {
    try {
      const infos = await this.#adapter().listSandboxes(toWireConfig(filter ?? null))
      return infos.map(({ id, state, createdAt, image }) => ({ id, state, createdAt, image }))
    } catch (err) {
      throw await toSandbankError(err)
    }
  }

  /** Force-deletes the box; a box that does not exist is not an error. */
  async destroySandbox(id) {
    try {
      await this.#adapter().destroySandbox(id)
    } catch (err) {
      if (isNotFound(err)) return
      throw await toSandbankError(err, { sandboxId: id })
    }
  }

  /** The low-level client (same method names and shapes in both modes). */
  getClient() {
    this.#client ??= new BoxLiteClient(
      () => this.#adapter(),
      () => this.dispose(),
    )
    return this.#client
  }

  /** Releases connections and runtimes; idempotent. */
  async dispose() {
    if (!this.#native) return
    try {
      await this.#native.dispose()
    } catch (err) {
      throw await toSandbankError(err)
    }
  }
}

module.exports = { BoxLiteAdapter }

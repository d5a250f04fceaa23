/**
 * The one place native errors become JS errors. Rust rejects with messages of the fixed form
 * `[boxlite:<code>] <message>` (src/error.rs); this module turns them into the error classes of
 * the user's own `@sandbank.dev/core` (loaded lazily: core is ESM-only and an optional peer), or
 * into look-alike classes with the same names and fields when core is not installed.
 */
'use strict'

const PROVIDER = 'boxlite'
const NATIVE_ERROR = /^\[boxlite:([a-z_]+)\] ([\s\S]*)$/

class SandboxError extends Error {
  constructor(message, provider, sandboxId) {
    super(message)
    this.name = 'SandboxError'
    this.provider = provider
    this.sandboxId = sandboxId
  }
}
class SandboxNotFoundError extends SandboxError {
  constructor(provider, sandboxId) {
    super(`Sandbox '${sandboxId}' not found`, provider, sandboxId)
    this.name = 'SandboxNotFoundError'
  }
}
class ProviderError extends SandboxError {
  constructor(provider, cause, sandboxId) {
    super(`Provider error: ${cause instanceof Error ? cause.message : String(cause)}`, provider, sandboxId)
    this.name = 'ProviderError'
    this.cause = cause
  }
}
class ExecTimeoutError extends SandboxError {
  constructor(provider, sandboxId, timeout) {
    super(`Command timed out after ${timeout}ms`, provider, sandboxId)
    this.name = 'ExecTimeoutError'
    this.timeout = timeout
  }
}

/** Used only when `@sandbank.dev/core` is not installed (it is an optional peer dependency). */
const fallbackClasses = { SandboxError, SandboxNotFoundError, ProviderError, ExecTimeoutError }

let corePromise
/** The error classes of the user's `@sandbank.dev/core`, or the fallbacks when it is absent. */
function loadErrorClasses() {
  corePromise ??= import('@sandbank.dev/core').then(
    (core) => ({
      SandboxError: core.SandboxError,
      SandboxNotFoundError: core.SandboxNotFoundError,
      ProviderError: core.ProviderError,
      ExecTimeoutError: core.ExecTimeoutError,
    }),
    (err) => {
      // Only a missing core means "use the fallbacks"; a broken core must not be hidden.
      if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('@sandbank.dev/core')) {
        return fallbackClasses
      }
      throw err
    },
  )
  return corePromise
}

/**
 * A native rejection as a plain `Error` with a stable `code` (`not_found`, `invalid_config`, …)
 * and the message without the code prefix. Other values pass through unchanged.
 */
function fromNative(err) {
  const match = err instanceof Error ? NATIVE_ERROR.exec(err.message) : null
  if (!match) return err
  const plain = new Error(match[2])
  plain.code = match[1]
  return plain
}

/** Whether `err` (native or already converted) says the box does not exist. */
function isNotFound(err) {
  return fromNative(err)?.code === 'not_found'
}

/**
 * Maps an error of an adapter method to the contract's class. `sandboxId` is set when the call
 * named one. Existing sandbank errors (from core or the fallbacks) pass through unchanged.
 */
async function toSandbankError(err, { sandboxId, notFound = false } = {}) {
  const classes = await loadErrorClasses()
  if (err instanceof classes.SandboxError || err instanceof SandboxError) return err
  const cause = fromNative(err)
  if (notFound && sandboxId !== undefined && cause?.code === 'not_found') {
    return new classes.SandboxNotFoundError(PROVIDER, sandboxId)
  }
  return new classes.ProviderError(PROVIDER, cause, sandboxId)
}

module.exports = { PROVIDER, fromNative, isNotFound, toSandbankError, loadErrorClasses, fallbackClasses }

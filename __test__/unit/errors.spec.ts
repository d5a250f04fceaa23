// The one error mapper (lib/errors.cjs): native code → the user's @sandbank.dev/core class.
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import * as core from '@sandbank.dev/core'

const require = createRequire(import.meta.url)
const { toSandbankError, fromNative, isNotFound, fallbackClasses } = require('../../lib/errors.cjs')
const { errorCodes } = require('../../binding.cjs')

const native = (code: string, message = 'something happened') => new Error(`[boxlite:${code}] ${message}`)

describe('fromNative', () => {
  it('strips the code prefix into err.code and keeps the message', () => {
    const err = fromNative(native('timeout', 'exec timed out after 5 ms'))
    expect(err.message).toBe('exec timed out after 5 ms')
    expect(err.code).toBe('timeout')
  })

  it('passes errors without the prefix through unchanged', () => {
    const original = new TypeError('boom')
    expect(fromNative(original)).toBe(original)
    expect(fromNative('text')).toBe('text')
  })
})

describe('toSandbankError maps every code the addon can produce', () => {
  const codes: string[] = errorCodes()
  it('covers a non-trivial list of codes from the addon itself', () => {
    expect(codes).toContain('not_found')
    expect(codes).toContain('invalid_config')
    expect(new Set(codes).size).toBe(codes.length)
  })

  for (const code of errorCodes() as string[]) {
    it(`maps '${code}' from getSandbox to the right core class`, async () => {
      const err: any = await toSandbankError(native(code), { sandboxId: 'b1', notFound: true })
      if (code === 'not_found') {
        expect(err).toBeInstanceOf(core.SandboxNotFoundError)
        expect(err.message).toBe("Sandbox 'b1' not found")
      } else {
        expect(err).toBeInstanceOf(core.ProviderError)
        expect(err.cause.code).toBe(code)
        expect(err.message).toBe('Provider error: something happened')
      }
      expect(err.provider).toBe('boxlite')
      expect(err.sandboxId).toBe('b1')
    })
  }

  it('wraps not_found as ProviderError where the call did not ask for not-found mapping', async () => {
    const err: any = await toSandbankError(native('not_found'))
    expect(err).toBeInstanceOf(core.ProviderError)
    expect(err.sandboxId).toBeUndefined()
  })

  it('rethrows an existing core ProviderError unchanged', async () => {
    const existing = new core.ProviderError('boxlite', new Error('x'))
    expect(await toSandbankError(existing)).toBe(existing)
  })

  it('wraps a non-native error as the cause', async () => {
    const cause = new RangeError('bad')
    const err: any = await toSandbankError(cause, { sandboxId: 'b2' })
    expect(err.cause).toBe(cause)
    expect(err.message).toBe('Provider error: bad')
  })

  it('recognises not-found only by code, never by wording', () => {
    expect(isNotFound(native('not_found'))).toBe(true)
    expect(isNotFound(native('api_error', 'box not found (404)'))).toBe(false)
    expect(isNotFound(new Error('Not Found'))).toBe(false)
  })
})

describe('fallback classes (used when @sandbank.dev/core is not installed)', () => {
  it('have the same names, fields and messages as core', () => {
    const notFound = new fallbackClasses.SandboxNotFoundError('boxlite', 'b1')
    const coreNotFound = new core.SandboxNotFoundError('boxlite', 'b1')
    expect([notFound.name, notFound.message, notFound.provider, notFound.sandboxId]).toEqual([
      coreNotFound.name, coreNotFound.message, coreNotFound.provider, coreNotFound.sandboxId,
    ])
    const cause = new Error('inner')
    const provider = new fallbackClasses.ProviderError('boxlite', cause, 'b1')
    const coreProvider = new core.ProviderError('boxlite', cause, 'b1')
    expect([provider.name, provider.message, provider.cause, provider.sandboxId]).toEqual([
      coreProvider.name, coreProvider.message, coreProvider.cause, coreProvider.sandboxId,
    ])
    expect(provider).toBeInstanceOf(fallbackClasses.SandboxError)
  })
})

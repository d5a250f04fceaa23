// The native loader's platform logic (lib/native.cjs): musl vs glibc detection from Node's
// diagnostic report, and local mode refused on musl with its reason (no SDK wheels there).
// The real musl Node run is in scripts/check-release.sh (step musl).
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it, vi } from 'vitest'

const require = createRequire(import.meta.url)
const native = require('../../lib/native.cjs')

const report = (header: Record<string, unknown>) => vi.spyOn(process.report, 'getReport').mockReturnValue({ header } as any)

describe.skipIf(process.platform !== 'linux')('platform tag on Linux', () => {
  afterEach(() => vi.restoreAllMocks())

  it('is -gnu when the report names the glibc Node runs on', () => {
    report({ glibcVersionRuntime: '2.31' })
    expect(native.isMusl()).toBe(false)
    expect(native.platformTag()).toBe(`linux-${process.arch}-gnu`)
  })

  it('is -musl when the report names no glibc', () => {
    report({})
    expect(native.isMusl()).toBe(true)
    expect(native.platformTag()).toBe(`linux-${process.arch}-musl`)
  })

  it('refuses local mode on musl, saying why and what to use instead', () => {
    report({})
    expect(() => native.loadLocalBinding('python3')).toThrow(
      /^\[boxlite:environment\] local mode is not available on linux-[a-z0-9]+-musl: .*no musl \(Alpine\) wheels.*remote mode/,
    )
  })
})

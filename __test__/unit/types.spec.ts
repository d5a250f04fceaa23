// index.d.ts must let users write createProvider(new BoxLiteAdapter(cfg)) against core's types.
import { describe, expect, it } from 'vitest'
import { repoRoot, run } from '../helpers/repo.mjs'

describe('TypeScript declarations', () => {
  it('type-check the drop-in usage against the core stand-in with tsc --noEmit', async () => {
    const result = await run('npx', ['tsc', '--noEmit', '-p', '__test__/tsconfig.json'], { cwd: repoRoot }).catch(
      (e) => e,
    )
    expect(result.stdout ?? '').toBe('')
    expect(result.code ?? 0).toBe(0)
  }, 120_000)

  it('reject a config that mixes local mode with remote fields', async () => {
    // A negative control: proves the check above can fail.
    const { writeFile, rm } = await import('node:fs/promises')
    const file = `${repoRoot}__test__/types/_negative.ts`
    await writeFile(
      file,
      "import { BoxLiteAdapter } from '@sandbank.dev/boxlite'\nnew BoxLiteAdapter({ mode: 'local', apiUrl: 42 })\n",
    )
    try {
      const result = await run('npx', ['tsc', '--noEmit', '-p', '__test__/tsconfig.json'], { cwd: repoRoot }).catch(
        (e) => e,
      )
      expect(result.code).not.toBe(0)
      expect(result.stdout).toMatch(/_negative\.ts/)
    } finally {
      await rm(file, { force: true })
    }
  }, 120_000)
})

// Packaging (issue 2): `npm pack` of the main package and the linux-x64-gnu platform package,
// installed with `pnpm add` into a fresh project, imports and constructs the adapter from ESM and
// CJS, with the core stand-in installed and without it.
import { cp, mkdtemp, readFile, rm, writeFile, mkdir, readdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { repoRoot, run } from '../helpers/repo.mjs'

const PLATFORM = 'linux-x64-gnu'
const pnpm = join(repoRoot, 'node_modules', '.bin', 'pnpm')
let work: string
let tarballs: { main: string; platform: string; core: string }

async function pack(dir: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: dir })
  return join(work, JSON.parse(stdout)[0].filename)
}

/** What `napi prepublish` does before publishing: point the main package at its platform package. */
async function stageMainPackage(): Promise<string> {
  const manifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8'))
  const stage = join(work, 'stage-main')
  await mkdir(stage)
  for (const entry of manifest.files) await cp(join(repoRoot, entry), join(stage, entry), { recursive: true })
  manifest.optionalDependencies = { [`@sandbank.dev/boxlite-${PLATFORM}`]: manifest.version }
  delete manifest.devDependencies
  delete manifest.scripts
  await writeFile(join(stage, 'package.json'), JSON.stringify(manifest, null, 2))
  return stage
}

async function stagePlatformPackage(): Promise<string> {
  const stage = join(work, 'stage-platform')
  await cp(join(repoRoot, 'npm', PLATFORM), stage, { recursive: true })
  for (const file of await readdir(repoRoot)) {
    if (file.endsWith(`.${PLATFORM}.node`)) await cp(join(repoRoot, file), join(stage, file))
  }
  return stage
}

async function consumerProject(name: string, withCore: boolean): Promise<string> {
  const dir = join(work, name)
  await mkdir(dir)
  const dependencies: Record<string, string> = { '@sandbank.dev/boxlite': `file:${tarballs.main}` }
  if (withCore) dependencies['@sandbank.dev/core'] = `file:${tarballs.core}`
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({
      name,
      private: true,
      type: 'module',
      dependencies,
      // The platform package is not in any registry we reach: resolve it to the packed tarball.
      pnpm: { overrides: { [`@sandbank.dev/boxlite-${PLATFORM}`]: `file:${tarballs.platform}` } },
    }),
  )
  await run(pnpm, ['install', '--prefer-offline', '--reporter=silent'], { cwd: dir, maxBuffer: 1 << 24 })
  return dir
}

const probe = (importLine: string) => `
${importLine}
const adapter = new BoxLiteAdapter({ apiUrl: '' })
const err = await adapter.createSandbox({}).catch((e) => e)
console.log(JSON.stringify({
  name: adapter.name,
  capabilities: adapter.capabilities instanceof Set ? [...adapter.capabilities] : null,
  errorName: err?.name,
  provider: err?.provider,
  causeCode: err?.cause?.code,
  message: err?.message,
  isCoreClass: await import('@sandbank.dev/core').then((core) => err instanceof core.ProviderError, () => null),
}))
`

async function runProbe(dir: string, file: string, source: string) {
  await writeFile(join(dir, file), source)
  const { stdout } = await run('node', [file], { cwd: dir })
  return JSON.parse(stdout.trim().split('\n').pop()!)
}

beforeAll(async () => {
  const nodeFile = join(repoRoot, `boxlite.${PLATFORM}.node`)
  if (!existsSync(nodeFile)) throw new Error(`build the addon first (npm run build): ${nodeFile} is missing`)
  work = await mkdtemp(join(tmpdir(), 'boxlite-pack-'))
  tarballs = {
    main: await pack(await stageMainPackage()),
    platform: await pack(await stagePlatformPackage()),
    core: await pack(join(repoRoot, '__test__', 'core-standin')),
  }
})

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true })
})

describe('packed and installed with pnpm', () => {
  it('ships the entries, loader and types but no build outputs in the main tarball', async () => {
    const { stdout } = await run('tar', ['tzf', tarballs.main])
    const files = stdout.split('\n').filter(Boolean)
    for (const expected of ['package/index.js', 'package/index.cjs', 'package/index.d.ts', 'package/binding.cjs']) {
      expect(files).toContain(expected)
    }
    expect(files.some((f) => f.endsWith('.node') || f.includes('/src/') || f.includes('__test__'))).toBe(false)
  })

  it('imports from ESM and requires from CJS, and maps errors to the installed core classes', async () => {
    const dir = await consumerProject('with-core', true)
    const esm = await runProbe(dir, 'probe.mjs', probe("import { BoxLiteAdapter } from '@sandbank.dev/boxlite'"))
    const cjs = await runProbe(
      dir,
      'probe.cjs',
      `(async () => {${probe("const { BoxLiteAdapter } = require('@sandbank.dev/boxlite')")}})()`,
    )
    for (const result of [esm, cjs]) {
      expect(result.name).toBe('boxlite')
      expect(result.capabilities).toEqual(['exec.stream', 'terminal', 'sleep', 'port.expose', 'snapshot'])
      expect(result.errorName).toBe('ProviderError')
      expect(result.provider).toBe('boxlite')
      expect(result.causeCode).toBe('invalid_config')
      expect(result.message).toMatch(/config\.apiUrl/)
      expect(result.isCoreClass).toBe(true)
    }
  })

  it('works without @sandbank.dev/core installed, using look-alike error classes', async () => {
    const dir = await consumerProject('without-core', false)
    const result = await runProbe(dir, 'probe.mjs', probe("import { BoxLiteAdapter } from '@sandbank.dev/boxlite'"))
    expect(result.isCoreClass).toBe(null)
    expect(result.errorName).toBe('ProviderError')
    expect(result.provider).toBe('boxlite')
    expect(result.causeCode).toBe('invalid_config')
  })
})

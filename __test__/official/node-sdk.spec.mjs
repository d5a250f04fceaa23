// The official Node SDK `@boxlite-ai/boxlite` 0.10 as a judge of our test server: its REST client
// (the only remote dialect it speaks is the current BoxLite REST API) creates, lists, gets, runs,
// copies in and out, and removes a box. Against a real `boxlite serve` as well when
// BOXLITE_REAL_CURRENT_URL (and BOXLITE_REAL_CURRENT_API_KEY) name one. Its local mode runs on the
// fake VM when BOXLITE_RUNTIME_DIR and BOXLITE_TEST_ROOTFS are given. The SDK is installed
// outside the checkout by scripts/setup-official-node.sh (BOXLITE_OFFICIAL_NODE_SDK = its dir).
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestServer } from '../helpers/testbed.mjs'
import { resolveTestTarget } from '../helpers/target.mjs'

const SDK_DIR = process.env.BOXLITE_OFFICIAL_NODE_SDK
const SDK_ENTRY = SDK_DIR && join(SDK_DIR, 'node_modules', '@boxlite-ai', 'boxlite', 'dist', 'index.js')
const sdkMissing = !SDK_ENTRY || !existsSync(SDK_ENTRY)
const sdk = sdkMissing ? null : await import(pathToFileURL(SDK_ENTRY).href)
const target = await resolveTestTarget()
const TOKEN = 'blk_test_official_node'
const REAL_URL = process.env.BOXLITE_REAL_CURRENT_URL
const REAL_KEY = process.env.BOXLITE_REAL_CURRENT_API_KEY

function restRuntime(url, key) {
  const credential = key ? new sdk.ApiKeyCredential(key) : undefined
  return sdk.JsBoxlite.rest(new sdk.BoxliteRestOptions({ url, credential }))
}

/** Runs `sh -c script` through the SDK; resolves to { out, err, code }. */
async function run(box, script, stdin) {
  const execution = await box.exec('sh', ['-c', script])
  if (stdin !== undefined) {
    const input = await execution.stdin()
    await input.writeString(stdin)
    await input.close()
  }
  const drain = async (stream) => {
    let text = ''
    for (let chunk = await stream.next(); chunk !== null; chunk = await stream.next()) text += chunk
    return text
  }
  const [out, err, result] = await Promise.all([
    drain(await execution.stdout()),
    drain(await execution.stderr()),
    execution.wait(),
  ])
  return { out, err, code: result.exitCode }
}

/**
 * The full cycle on one server; `image` is the box's image options (image or rootfsPath).
 * `placed`: where the server puts a file copied in to /root/in.txt and the contents of a tree
 * copied in to /root/tree, and whether a file is copied out into an existing directory (the
 * real servers place them differently: docs/testing.md).
 */
async function fullCycle(rt, image, work, placed = { file: '/root/in.txt', tree: '/root/tree', outIntoDir: false }) {
  const name = `official-node-${process.pid}-${Date.now()}`
  const box = await rt.create({ ...image, autoDelete: 0, env: [{ key: 'GREETING', value: 'hi' }] }, name)
  try {
    expect(box.name).toBe(name)
    expect((await rt.listInfo()).map((i) => i.id)).toContain(box.id)
    const info = await rt.getInfo(name)
    expect(info?.id).toBe(box.id)
    const got = await rt.get(box.id)
    expect(got?.id).toBe(box.id)
    expect(await run(got, 'echo $GREETING; echo oops >&2; exit 7')).toEqual({ out: 'hi\n', err: 'oops\n', code: 7 })
    expect(await run(got, 'cat', 'through stdin')).toEqual({ out: 'through stdin', err: '', code: 0 })
    // copy in: a file and a directory tree
    await writeFile(join(work, 'in.txt'), 'file content')
    await mkdir(join(work, 'tree', 'sub'), { recursive: true })
    await writeFile(join(work, 'tree', 'a'), 'A')
    await writeFile(join(work, 'tree', 'sub', 'b'), 'B')
    await got.copyIn(join(work, 'in.txt'), '/root/in.txt')
    // includeParent (default true in 0.10.0) would place the tree at /root/tree/tree.
    await got.copyIn(join(work, 'tree'), '/root/tree', { includeParent: false })
    const listed = await run(got, `cat ${placed.file}; echo; find /root/tree -type f | sort`)
    expect(listed.out).toBe(`file content\n${placed.tree}/a\n${placed.tree}/sub/b\n`)
    // copy out a file
    if (placed.outIntoDir) {
      await mkdir(join(work, 'out'), { recursive: true })
      await got.copyOut(placed.file, join(work, 'out'))
      expect(await readFile(join(work, 'out', 'in.txt'), 'utf8')).toBe('file content')
    } else {
      await got.copyOut(placed.file, join(work, 'out.txt'))
      expect(await readFile(join(work, 'out.txt'), 'utf8')).toBe('file content')
    }
    expect((await got.info()).state.status).toBe('running')
  } finally {
    await rt.remove(box.id, true)
  }
  expect(await rt.getInfo(box.id)).toBeNull()
  expect((await rt.listInfo()).map((i) => i.id)).not.toContain(box.id)
}

let work
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'boxlite-official-node-'))
})
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true })
})

describe('official Node SDK 0.10, REST mode, against the test server (current dialect)', () => {
  let server
  beforeAll(async () => {
    if (sdkMissing || target.target !== 'sim') return
    // --upload-style ref: the SDK sends a file's tar without saying it is a file (no
    // source_is_dir), which boxlite serve's placement turns into a directory (README, "Server").
    server = await startTestServer(target, ['--dialect', 'current', '--auth', 'token', '--token', TOKEN, '--upload-style', 'ref'])
  })
  afterAll(async () => {
    await server?.stop()
  })
  const reason = sdkMissing
    ? 'official Node SDK not installed (scripts/setup-official-node.sh, then BOXLITE_OFFICIAL_NODE_SDK=<its dir>)'
    : target.target !== 'sim' ? `the test server runs on the simulator target only (BOXLITE_TEST_TARGET=${target.target})` : ''

  it('creates, lists, gets, runs, copies in and out, and removes a box', async (ctx) => {
    if (reason) return ctx.skip(reason)
    await fullCycle(restRuntime(server.url, TOKEN), { image: 'alpine:latest' }, work)
    const log = (await server.control('GET', '/requests')).requests
    expect(log.length).toBeGreaterThan(0)
    expect(log.every((e) => e.authorization.present && e.authorization.token === TOKEN)).toBe(true)
    expect(log.some((e) => e.path.endsWith('/attach') && e.status === 101)).toBe(true)
    // Only the look-up after the removal may fail (404 is how the SDK learns the box is gone).
    const failed = log.filter((e) => e.status >= 400).map((e) => `${e.method} ${e.path} ${e.status}`)
    expect(failed.every((f) => /^GET \/v1\/boxes\/[^/]+ 404$/.test(f))).toBe(true)
  })

  it('creates boxes with the per-direction network shape it sends, and the server keeps it', async (ctx) => {
    if (reason) return ctx.skip(reason)
    const rt = restRuntime(server.url, TOKEN)
    const box = await rt.create({
      image: 'alpine:latest',
      network: { outbound: { mode: 'disabled' }, inbound: { mode: 'enabled' } },
    })
    try {
      const response = await fetch(`${server.url}/v1/boxes/${box.id}`, { headers: { authorization: `Bearer ${TOKEN}` } })
      expect((await response.json()).network).toEqual({
        outbound: { mode: 'disabled', allow_net: [] },
        inbound: { mode: 'enabled', allow_net: [] },
      })
    } finally {
      await rt.remove(box.id, true)
    }
  })

  it('surfaces a wrong API key as an error and an unknown box as null', async (ctx) => {
    if (reason) return ctx.skip(reason)
    await expect(restRuntime(server.url, 'wrong-key').listInfo()).rejects.toThrow(/api key|unauth|401/i)
    expect(await restRuntime(server.url, TOKEN).getInfo('does-not-exist')).toBeNull()
  })
})

describe('official Node SDK 0.10, REST mode, against a real boxlite serve', () => {
  const reason = sdkMissing
    ? 'official Node SDK not installed (scripts/setup-official-node.sh)'
    : !REAL_URL ? 'no real boxlite serve (BOXLITE_REAL_CURRENT_URL / BOXLITE_REAL_CURRENT_API_KEY unset)' : ''

  it('creates, lists, gets, runs, copies in and out, and removes a box', async (ctx) => {
    if (reason) return ctx.skip(reason)
    const image = target.rootfs ? { rootfsPath: target.rootfs } : { image: target.image ?? 'alpine:latest' }
    // The real serve 0.11.0 unpacks an upload into a temporary `extracted` directory and copies
    // that directory itself into the destination: everything lands under `<dest>/extracted/`.
    await fullCycle(restRuntime(REAL_URL, REAL_KEY), image, work, {
      file: '/root/in.txt/extracted/in.txt',
      tree: '/root/tree/extracted',
      outIntoDir: true,
    })
  })
})

describe('official Node SDK 0.10, local mode on the fake VM', () => {
  // The SDK's own runtime, unmodified; only the micro-VM underneath is the test bed's fake VM
  // (BOXLITE_RUNTIME_DIR, started by the test command): box commands run as host processes
  // with NO VM isolation.
  const runtimeDir = process.env.BOXLITE_RUNTIME_DIR
  const reason = sdkMissing
    ? 'official Node SDK not installed (scripts/setup-official-node.sh)'
    : !runtimeDir || !existsSync(join(runtimeDir, 'boxlite-shim'))
      ? 'no fake VM runtime (BOXLITE_RUNTIME_DIR with a boxlite-shim); micro-VMs do not boot on this machine kind'
      : !target.rootfs ? 'no local OCI layout to boot from (BOXLITE_TEST_ROOTFS; scripts/build-oci-rootfs.sh)' : ''

  it('creates, lists, gets, runs, copies in and out, and removes a box', async (ctx) => {
    if (reason) return ctx.skip(reason)
    const home = await mkdtemp(join(tmpdir(), 'boxlite-official-node-home-'))
    const rt = new sdk.JsBoxlite({ homeDir: home })
    try {
      await fullCycle(rt, { rootfsPath: target.rootfs }, work)
    } finally {
      await rt.shutdown()
      await rm(home, { recursive: true, force: true })
    }
  })
})

// The sandbox, complete (issue 6): every SandboxAdapter / AdapterSandbox behaviour, driven only
// through the core stand-in's createProvider, in local mode and every remote dialect.
// BOXLITE_TEST_MODES=local,sse,current,boxrun selects modes; BOXLITE_TEST_TARGET picks the
// simulator (default), the real SDK or a real server (helpers/target.mjs).
import { execFileSync } from 'node:child_process'
import { mkdtemp, mkdir, readFile, rm, writeFile, symlink, chmod, readdir, lstat, readlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createProvider,
  ExecTimeoutError,
  ProviderError,
  SandboxNotFoundError,
  withSleep,
  withSnapshot,
  withStreaming,
  type Sandbox,
  type SandboxProvider,
} from '@sandbank.dev/core'
import { BoxLiteAdapter } from '@sandbank.dev/boxlite'
import { fakeVmRuntime, resolveTestTarget } from '../helpers/target.mjs'
import { adapterModes } from '../helpers/testbed.mjs'

const target = await resolveTestTarget()
const selected = process.env.BOXLITE_TEST_MODES?.split(',').map((m) => m.trim())
const modes = adapterModes(target).filter((m) => !selected || selected.includes(m.dialect))
const image = target.image ?? 'ubuntu:24.04'
// Under the fake VM (real runtime, host processes) some features cannot exist: docs/testing.md.
const fakeVm = target.isReal && fakeVmRuntime()
const fakeVmLimit = (what: string) => (fakeVm ? `the fake VM ${what} (docs/testing.md)` : undefined)
const decoder = new TextDecoder()

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  for await (const chunk of stream as any) chunks.push(chunk)
  return Buffer.concat(chunks)
}

function tarDirectory(dir: string, gzip: boolean): Buffer {
  return execFileSync('tar', [gzip ? '-czf' : '-cf', '-', '-C', dir, '.'], { maxBuffer: 1 << 30 })
}

function extractTo(archive: Uint8Array, dir: string) {
  execFileSync('tar', ['-xzf', '-', '-C', dir], { input: archive })
}

/** A directory tree with a file of every interesting kind. */
async function sampleTree(root: string) {
  await mkdir(join(root, 'nested', 'deeper'), { recursive: true })
  await mkdir(join(root, 'empty-dir'))
  await writeFile(join(root, 'test.txt'), 'hello archive\n')
  await writeFile(join(root, 'nested', 'deeper', 'bin.dat'), Buffer.from([0, 1, 2, 127, 128, 255]))
  await writeFile(join(root, 'script.sh'), '#!/bin/sh\necho run\n')
  await chmod(join(root, 'script.sh'), 0o755)
  await symlink('test.txt', join(root, 'link-to-test'))
  await writeFile(join(root, "it's a $(name).txt"), 'hostile\n')
}

for (const mode of modes) {
  describe(`conformance: ${mode.name}`, () => {
    let provider: SandboxProvider
    let adapter: BoxLiteAdapter
    let sandbox: Sandbox
    let teardown = async () => {}
    let scratch: string

    beforeAll(async () => {
      if (target.skip) return
      const setup = await mode.setup()
      teardown = setup.teardown
      adapter = new BoxLiteAdapter(setup.config)
      provider = createProvider(adapter)
      sandbox = await provider.create({ image })
      scratch = await mkdtemp(join(tmpdir(), 'boxlite-conformance-'))
    })

    afterAll(async () => {
      if (sandbox) await provider.destroy(sandbox.id).catch(() => {})
      await adapter?.dispose()
      await teardown()
      if (scratch) await rm(scratch, { recursive: true, force: true })
    })

    const test = (name: string, fn: () => Promise<void>, timeout?: number, limit?: string) =>
      it(name, async (ctx) => {
        if (target.skip) ctx.skip(target.reason)
        if (limit) ctx.skip(limit)
        await fn()
      }, timeout)

    // ---- provider and sandbox basics
    test('provider has name boxlite and a capabilities Set', async () => {
      expect(provider.name).toBe('boxlite')
      expect(provider.capabilities).toBeInstanceOf(Set)
    })

    test('a created sandbox is running with an id and a parsable createdAt', async () => {
      expect(sandbox.id).toBeTruthy()
      expect(sandbox.state).toBe('running')
      expect(Number.isNaN(new Date(sandbox.createdAt).getTime())).toBe(false)
    })

    // ---- exec
    test('exec returns exactly exitCode, stdout and stderr', async () => {
      const result = await sandbox.exec('echo hello-sandbank')
      expect(Object.keys(result).sort()).toEqual(['exitCode', 'stderr', 'stdout'])
      expect(result).toEqual({ exitCode: 0, stdout: 'hello-sandbank\n', stderr: '' })
    })

    test('exec reports a non-zero exit code and stderr', async () => {
      const result = await sandbox.exec('ls /nonexistent-path-xyz')
      expect(result.exitCode).not.toBe(0)
      expect(typeof result.stderr).toBe('string')
      expect(result.stderr.length).toBeGreaterThan(0)
      expect((await sandbox.exec('exit 42')).exitCode).toBe(42)
    })

    test('a missing cwd resolves with exit code 2 and a message naming the directory', async () => {
      const result = await sandbox.exec('echo never', { cwd: '/no/such/dir-xyz' })
      expect(result.exitCode).toBe(2)
      expect(result.stdout).toBe('')
      expect(result.stderr).toContain('/no/such/dir-xyz')
    })

    test('exec honours cwd', async () => {
      expect((await sandbox.exec('pwd', { cwd: '/tmp' })).stdout.trim()).toBe('/tmp')
      await sandbox.exec("mkdir -p '/root/dir with space'")
      expect((await sandbox.exec('pwd', { cwd: '/root/dir with space' })).stdout.trim()).toBe('/root/dir with space')
    })

    test('exec keeps multi-line output and UTF-8', async () => {
      const result = await sandbox.exec("printf 'line1\\nline2\\nline3\\n'; echo 'héllo ✓ 日本'")
      expect(result.stdout).toBe('line1\nline2\nline3\nhéllo ✓ 日本\n')
    })

    test('exec survives non-UTF-8 output', async () => {
      const result = await sandbox.exec("printf 'a\\377\\376b'")
      expect(result.exitCode).toBe(0)
      expect(result.stdout.startsWith('a')).toBe(true)
      expect(result.stdout.endsWith('b')).toBe(true)
    })

    test('exec accepts explicit undefined options and unknown keys', async () => {
      const result = await sandbox.exec('echo ok', { cwd: undefined, timeout: undefined, asRoot: true } as any)
      expect(result.stdout).toBe('ok\n')
    })

    test('concurrent execs on one sandbox all complete with their own output', async () => {
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => sandbox.exec(`echo job-${i}`)))
      results.forEach((r, i) => expect(r.stdout).toBe(`job-${i}\n`))
    })

    test('a timeout kills the command and rejects with ExecTimeoutError', async () => {
      const started = Date.now()
      const err: any = await sandbox.exec('sleep 30; echo finished > /root/timeout-marker', { timeout: 700 }).catch((e) => e)
      expect(err).toBeInstanceOf(ExecTimeoutError)
      expect(err.provider).toBe('boxlite')
      expect(err.sandboxId).toBe(sandbox.id)
      expect(err.timeout).toBe(700)
      expect(Date.now() - started).toBeLessThan(15_000)
      // Not a zombie: nothing of the command is still running ('[s]' keeps pgrep's own shell out).
      const ps = await sandbox.exec("pgrep -f '[s]leep 30' || true")
      expect(ps.stdout.trim()).toBe('')
    }, 60_000)

    // ---- streaming
    test('execStream delivers output as it is produced', async () => {
      const stream = await withStreaming(sandbox)!.execStream('echo first; sleep 2; echo second')
      expect(stream).toBeInstanceOf(ReadableStream)
      const reader = stream.getReader()
      const started = Date.now()
      const first = await reader.read()
      const firstAt = Date.now() - started
      expect(decoder.decode(first.value)).toContain('first')
      expect(firstAt).toBeLessThan(1800)
      let rest = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        rest += decoder.decode(value)
      }
      expect(rest).toContain('second')
    })

    test('execStream carries stderr too', async () => {
      const bytes = await collect(await sandbox.execStream!('echo out; echo err >&2'))
      const text = decoder.decode(bytes)
      expect(text).toContain('out')
      expect(text).toContain('err')
    })

    // SSE-era `boxlite serve` forgets an execution as soon as its output is opened, so its API
    // has no way left to stop it: there the command runs to its end (pinned, so a fix shows).
    const unstoppable = mode.dialect === 'sse-serve'
    test(
      unstoppable
        ? 'cancelling an exec stream ends the stream, but SSE-era boxlite serve cannot stop the command'
        : 'cancelling an exec stream stops the command',
      async () => {
        await sandbox.exec('rm -f /root/stream-marker')
        const stream = await sandbox.execStream!('echo started; sleep 3; touch /root/stream-marker')
        const reader = stream.getReader()
        await reader.read()
        await reader.cancel()
        await new Promise((r) => setTimeout(r, 4500))
        const markerExists = (await sandbox.exec('test -e /root/stream-marker; echo $?')).stdout.trim() === '0'
        expect(markerExists).toBe(unstoppable)
      },
      30_000,
    )

    // ---- files
    test('writeFile and readFile round-trip text and binary', async () => {
      await sandbox.writeFile('/root/conf/text.txt', 'hello file ✓\n')
      expect(decoder.decode(await sandbox.readFile('/root/conf/text.txt'))).toBe('hello file ✓\n')
      const binary = new Uint8Array([0, 1, 2, 127, 128, 255])
      await sandbox.writeFile('/root/conf/bin.dat', binary)
      expect(new Uint8Array(await sandbox.readFile('/root/conf/bin.dat'))).toEqual(binary)
      expect((await sandbox.exec('cat /root/conf/text.txt')).stdout).toBe('hello file ✓\n')
    })

    test('writeFile creates parent directories and replaces an existing file', async () => {
      await sandbox.writeFile('/root/a/b/c/deep.txt', 'one')
      await sandbox.writeFile('/root/a/b/c/deep.txt', 'two')
      expect(decoder.decode(await sandbox.readFile('/root/a/b/c/deep.txt'))).toBe('two')
    })

    test('empty files round-trip', async () => {
      await sandbox.writeFile('/root/empty.txt', '')
      expect((await sandbox.readFile('/root/empty.txt')).byteLength).toBe(0)
      expect((await sandbox.exec('stat -c %s /root/empty.txt')).stdout.trim()).toBe('0')
    })

    test('hostile file names are just names', async () => {
      for (const name of ["it's.txt", 'a b.txt', '$(touch pwned).txt', '`id`;rm -rf x.txt', 'dq".txt']) {
        const path = `/root/hostile/${name}`
        await sandbox.writeFile(path, `content of ${name}`)
        expect(decoder.decode(await sandbox.readFile(path))).toBe(`content of ${name}`)
      }
      expect((await sandbox.exec('test -e pwned || test -e /root/pwned; echo $?')).stdout.trim()).toBe('1')
    })

    test('files under /tmp land where exec sees them and come back byte-exact', async () => {
      const data = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff)
      await sandbox.writeFile('/tmp/conf/tmpfile.bin', data)
      expect((await sandbox.exec('stat -c %s /tmp/conf/tmpfile.bin')).stdout.trim()).toBe('300000')
      expect(new Uint8Array(await sandbox.readFile('/tmp/conf/tmpfile.bin'))).toEqual(data)
    })

    test('a /tmp file of several read pieces (12 MiB) comes back byte-exact', async () => {
      const size = 12 * 1024 * 1024
      const data = Buffer.alloc(size)
      for (let i = 0; i < size; i += 512) data.writeUInt32LE(i, i)
      await sandbox.writeFile('/tmp/conf/pieces.bin', data)
      const back = await sandbox.readFile('/tmp/conf/pieces.bin')
      expect(back.byteLength).toBe(size)
      expect(Buffer.compare(Buffer.from(back), data)).toBe(0)
      await sandbox.exec('rm -f /tmp/conf/pieces.bin')
    })

    test('output written at once beyond a server backlog (1 MB) reaches exec and execStream whole', async () => {
      const command = "head -c 1000000 /dev/zero | tr '\\0' a"
      const result = await sandbox.exec(command)
      expect(result.exitCode).toBe(0)
      expect(result.stdout.length).toBe(1_000_000)
      expect((await collect(await sandbox.execStream!(command))).byteLength).toBe(1_000_000)
    })

    test('a path is normalised once: /root/../tmp/x is /tmp/x for writeFile, readFile and exec', async () => {
      await sandbox.writeFile('/root/../tmp/conf-dots/x', 'dotted\n')
      expect(decoder.decode(await sandbox.readFile('/root/../tmp/conf-dots/x'))).toBe('dotted\n')
      expect(decoder.decode(await sandbox.readFile('/tmp/./conf-dots//x'))).toBe('dotted\n')
      expect((await sandbox.exec('cat /tmp/conf-dots/x')).stdout).toBe('dotted\n')
    })

    test('readFile of a missing path rejects clearly', async () => {
      const err: any = await sandbox.readFile('/root/does-not-exist.txt').catch((e) => e)
      expect(err).toBeInstanceOf(ProviderError)
      expect(err).not.toBeInstanceOf(SandboxNotFoundError)
      expect(err.message).toMatch(/does-not-exist\.txt/)
    })

    test('a 200 MB file round-trips', async () => {
      const size = 200 * 1024 * 1024
      const data = Buffer.alloc(size)
      for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff
      await sandbox.writeFile('/root/big.bin', data)
      expect((await sandbox.exec('stat -c %s /root/big.bin')).stdout.trim()).toBe(String(size))
      const back = await sandbox.readFile('/root/big.bin')
      expect(back.byteLength).toBe(size)
      expect(Buffer.compare(Buffer.from(back), data)).toBe(0)
      await sandbox.exec('rm -f /root/big.bin')
    }, 300_000)

    // ---- archives
    test('uploadArchive extracts a tar.gz into a new directory (bytes and stream)', async () => {
      const tree = join(scratch, 'tree-upload')
      await mkdir(tree)
      await sampleTree(tree)
      const gz = tarDirectory(tree, true)
      await sandbox.uploadArchive(new Uint8Array(gz), '/root/up-bytes')
      expect((await sandbox.exec('cat /root/up-bytes/test.txt')).stdout).toBe('hello archive\n')
      const stream = new ReadableStream({
        start(controller) {
          for (let i = 0; i < gz.length; i += 1000) controller.enqueue(new Uint8Array(gz.subarray(i, i + 1000)))
          controller.close()
        },
      })
      await sandbox.uploadArchive(stream, '/root/up-stream')
      expect((await sandbox.exec('cat /root/up-stream/test.txt')).stdout).toBe('hello archive\n')
    })

    test('uploadArchive accepts a plain tar and a /tmp destination', async () => {
      const tree = join(scratch, 'tree-plain')
      await mkdir(tree)
      await sampleTree(tree)
      await sandbox.uploadArchive(new Uint8Array(tarDirectory(tree, false)), '/tmp/conf-upload-dest')
      expect((await sandbox.exec('cat /tmp/conf-upload-dest/test.txt')).stdout).toBe('hello archive\n')
      expect((await sandbox.exec('readlink /tmp/conf-upload-dest/link-to-test')).stdout.trim()).toBe('test.txt')
    })

    test('downloadArchive streams a gzip tar of the directory contents', async () => {
      await sandbox.exec('mkdir -p /root/dl/sub && echo dl > /root/dl/test.txt && echo x > /root/dl/sub/x')
      const stream = await sandbox.downloadArchive('/root/dl')
      expect(stream).toBeInstanceOf(ReadableStream)
      const out = join(scratch, 'dl')
      await mkdir(out)
      extractTo(await collect(stream), out)
      expect(await readFile(join(out, 'test.txt'), 'utf8')).toBe('dl\n')
      expect(await readFile(join(out, 'sub', 'x'), 'utf8')).toBe('x\n')
    })

    test('archives round-trip bytes, modes, symlinks and empty directories in both directions', async () => {
      const tree = join(scratch, 'tree-roundtrip')
      await mkdir(tree)
      await sampleTree(tree)
      for (const dest of ['/root/rt-one', '/tmp/rt-two']) {
        await sandbox.uploadArchive(new Uint8Array(tarDirectory(tree, true)), dest)
        const back = join(scratch, `back-${dest.replace(/\//g, '_')}`)
        await mkdir(back)
        extractTo(await collect(await sandbox.downloadArchive(dest)), back)
        expect((await readdir(back)).sort()).toEqual((await readdir(tree)).sort())
        expect(await readFile(join(back, 'nested', 'deeper', 'bin.dat'))).toEqual(
          Buffer.from([0, 1, 2, 127, 128, 255]),
        )
        expect((await lstat(join(back, 'script.sh'))).mode & 0o777).toBe(0o755)
        expect(await readlink(join(back, 'link-to-test'))).toBe('test.txt')
        expect((await readdir(join(back, 'empty-dir'))).length).toBe(0)
        expect(await readFile(join(back, "it's a $(name).txt"), 'utf8')).toBe('hostile\n')
      }
    })

    test('the conformance archive round trip: sandbox tar → download → re-upload', async () => {
      await sandbox.exec('mkdir -p /tmp/conf-src && echo conformance > /tmp/conf-src/test.txt')
      await sandbox.exec('tar czf /tmp/conf.tar.gz -C /tmp/conf-src .')
      const gz = await sandbox.readFile('/tmp/conf.tar.gz')
      await sandbox.uploadArchive(gz, '/tmp/conf-dest-1')
      expect((await sandbox.exec('cat /tmp/conf-dest-1/test.txt')).stdout).toBe('conformance\n')
      const downloaded = await collect(await sandbox.downloadArchive('/tmp/conf-dest-1'))
      await sandbox.uploadArchive(downloaded, '/root/conf-dest-2')
      expect((await sandbox.exec('cat /root/conf-dest-2/test.txt')).stdout).toBe('conformance\n')
    })

    // ---- lifecycle
    test('getSandbox of an unknown id is a SandboxNotFoundError', async () => {
      const err: any = await provider.get('no-such-box-0000').catch((e) => e)
      expect(err).toBeInstanceOf(SandboxNotFoundError)
      expect(err.provider).toBe('boxlite')
      expect(err.sandboxId).toBe('no-such-box-0000')
    })

    test('ids that cannot name a box are not found, and destroying them resolves', async () => {
      for (const id of ['', '.', '..', '../boxes', 'a/b']) {
        const err: any = await provider.get(id).catch((e) => e)
        expect(err, JSON.stringify(id)).toBeInstanceOf(SandboxNotFoundError)
        expect(err.sandboxId).toBe(id)
        await provider.destroy(id)
      }
      // Nothing reached another URL: the sandbox is still there.
      expect((await provider.get(sandbox.id)).state).toBe('running')
    })

    test('getSandbox returns the running sandbox', async () => {
      const again = await provider.get(sandbox.id)
      expect(again.id).toBe(sandbox.id)
      expect(again.state).toBe('running')
      expect((await again.exec('echo via-get')).stdout).toBe('via-get\n')
    })

    test('list filters by state and honours limit', async () => {
      const running = await provider.list({ state: 'running' })
      expect(running.some((s) => s.id === sandbox.id)).toBe(true)
      expect(running.every((s) => s.state === 'running')).toBe(true)
      expect(await provider.list({ state: ['stopped'], limit: 1 })).not.toContainEqual(
        expect.objectContaining({ id: sandbox.id }),
      )
      expect((await provider.list({ limit: 1 })).length).toBeLessThanOrEqual(1)
    })

    test('sleep stops the box and wake brings it back', async () => {
      const second = await provider.create({ image })
      try {
        await withSleep(second)!.sleep!()
        expect((await provider.get(second.id)).state).toBe('stopped')
        await second.wake!()
        expect((await provider.get(second.id)).state).toBe('running')
        expect((await second.exec('echo awake')).stdout).toBe('awake\n')
      } finally {
        await provider.destroy(second.id)
      }
    }, 180_000)

    test('snapshots restore the files of their time', async () => {
      const snap = withSnapshot(sandbox)!
      if (mode.dialect === 'boxrun') {
        // BoxRun has no snapshot endpoints: a clear error, not a silent no-op.
        const err: any = await snap.createSnapshot('conf-snap').catch((e) => e)
        expect(err).toBeInstanceOf(ProviderError)
        expect(err.cause.code).toBe('unsupported')
        expect(err.message).toMatch(/not supported by BoxRun server \(dialect boxrun\)/)
        return
      }
      await sandbox.writeFile('/root/snap-test.txt', 'before')
      const { snapshotId } = await snap.createSnapshot('conf-snap')
      expect(snapshotId).toBe('conf-snap')
      expect((await provider.get(sandbox.id)).state).toBe('running')
      await sandbox.writeFile('/root/snap-test.txt', 'after')
      await snap.restoreSnapshot(snapshotId)
      expect(decoder.decode(await sandbox.readFile('/root/snap-test.txt'))).toBe('before')
      expect((await provider.get(sandbox.id)).state).toBe('running')
    }, 180_000, fakeVmLimit('keeps files written by commands outside the qcow2 disk, so snapshots do not capture them'))

    test('exposePort names the mapped host port', async () => {
      const { url } = await sandbox.exposePort!(8080)
      expect(url).toMatch(/^http:\/\/[^/]+:\d+$/)
      const mapped = await provider.create({ image, ports: [[18080, 8080]] })
      try {
        expect((await mapped.exposePort!(8080)).url).toMatch(/:18080$/)
      } finally {
        await provider.destroy(mapped.id)
      }
    }, 180_000, fakeVmLimit('has no gvproxy, so port mappings are not served'))

    test('a sandbox destroyed twice, and an unknown one, destroy without error', async () => {
      const doomed = await provider.create({ image })
      await provider.destroy(doomed.id)
      await provider.destroy(doomed.id)
      await provider.destroy('never-existed-1234')
      const err: any = await provider.get(doomed.id).catch((e) => e)
      expect(err).toBeInstanceOf(SandboxNotFoundError)
    }, 180_000)

    test('exec on a destroyed sandbox is a SandboxNotFoundError', async () => {
      const doomed = await provider.create({ image })
      await provider.destroy(doomed.id)
      const err: any = await doomed.exec('true').catch((e) => e)
      expect(err).toBeInstanceOf(SandboxNotFoundError)
    }, 180_000)
  })
}

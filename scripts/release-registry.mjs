// Release check (scripts/check-release.sh, consumer steps): a read-only npm registry for the
// packed @sandbank.dev packages, so that pnpm installs them as from npm — in particular choosing
// the optional platform package by its `os`/`cpu`/`libc` from registry metadata, which it does not
// do for `file:` tarballs. Serves packuments and tarballs of every *.tgz in DIR (one version each);
// the consumer project points only the @sandbank.dev scope here (everything else comes from npm).
// Verdaccio would do this too, with a hundred dependencies; this needs only the two routes.
//
//   node scripts/release-registry.mjs DIR   -> prints "BOXLITE_REGISTRY_READY <url>" and serves
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'

const dir = process.argv[2]
if (!dir) {
  console.error('usage: node scripts/release-registry.mjs DIR_OF_TGZ')
  process.exit(2)
}

/** name -> { manifest, file, data } from each tarball's package/package.json */
const packages = new Map()
for (const file of readdirSync(dir).filter((f) => f.endsWith('.tgz'))) {
  const data = readFileSync(join(dir, file))
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', join(dir, file), 'package/package.json'], { encoding: 'utf8' }))
  packages.set(manifest.name, { manifest, file, data })
}

const server = createServer((req, res) => {
  const url = decodeURIComponent(req.url.split('?')[0]).replace(/^\//, '')
  const base = `http://127.0.0.1:${server.address().port}`
  const tarball = url.match(/^(.+)\/-\/([^/]+\.tgz)$/)
  if (tarball && packages.get(tarball[1])?.file === tarball[2]) {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    return res.end(packages.get(tarball[1]).data)
  }
  const pkg = packages.get(url)
  if (!pkg) {
    res.writeHead(404, { 'content-type': 'application/json' })
    return res.end(JSON.stringify({ error: `not found: ${url} (this registry serves only ${[...packages.keys()].join(', ')})` }))
  }
  const { manifest, file, data } = pkg
  const dist = {
    tarball: `${base}/${manifest.name}/-/${file}`,
    shasum: createHash('sha1').update(data).digest('hex'),
    integrity: `sha512-${createHash('sha512').update(data).digest('base64')}`,
  }
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(
    JSON.stringify({
      name: manifest.name,
      'dist-tags': { latest: manifest.version },
      versions: { [manifest.version]: { ...manifest, dist } },
    }),
  )
})
server.listen(0, '127.0.0.1', () => {
  console.log(`BOXLITE_REGISTRY_READY http://127.0.0.1:${server.address().port}/`)
})

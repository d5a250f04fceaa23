/**
 * Stand-in for @sandbank.dev/core 0.3.6, written from core's adapter contract
 * (docs/testing.md, "The @sandbank.dev/core stand-in")
 * so the adapter is tested the way users drive it. ESM only, like the real package.
 */

// ---- errors ----
export class SandboxError extends Error {
  constructor(message, provider, sandboxId) {
    super(message)
    this.name = 'SandboxError'
    this.provider = provider
    this.sandboxId = sandboxId
  }
}
export class SandboxNotFoundError extends SandboxError {
  constructor(provider, sandboxId) {
    super(`Sandbox '${sandboxId}' not found`, provider, sandboxId)
    this.name = 'SandboxNotFoundError'
  }
}
export class SandboxStateError extends SandboxError {
  constructor(provider, sandboxId, currentState, requiredState) {
    super(`Sandbox '${sandboxId}' is '${currentState}', expected '${requiredState}'`, provider, sandboxId)
    this.name = 'SandboxStateError'
    this.currentState = currentState
    this.requiredState = requiredState
  }
}
export class ExecTimeoutError extends SandboxError {
  constructor(provider, sandboxId, timeout) {
    super(`Command timed out after ${timeout}ms`, provider, sandboxId)
    this.name = 'ExecTimeoutError'
    this.timeout = timeout
  }
}
export class RateLimitError extends SandboxError {
  constructor(provider, retryAfter) {
    super(retryAfter !== undefined ? `Rate limited, retry after ${retryAfter}s` : 'Rate limited', provider)
    this.name = 'RateLimitError'
    this.retryAfter = retryAfter
  }
}
export class ProviderError extends SandboxError {
  constructor(provider, cause, sandboxId) {
    super(`Provider error: ${cause instanceof Error ? cause.message : String(cause)}`, provider, sandboxId)
    this.name = 'ProviderError'
    this.cause = cause
  }
}
export class CapabilityNotSupportedError extends SandboxError {
  constructor(provider, capability) {
    super(`Capability '${capability}' is not supported by '${provider}'`, provider)
    this.name = 'CapabilityNotSupportedError'
    this.capability = capability
  }
}

// ---- observer ----
export function emitEvent(observer, event) {
  if (!observer) return
  try {
    const result = observer.onEvent(event)
    if (result && typeof result.catch === 'function') result.catch(() => {})
  } catch {
    // observers never break the sandbox
  }
}
export function createNoopObserver() {
  return { onEvent() {} }
}

// ---- exec-based file fallbacks ----
const quote = (s) => `'${String(s).replace(/'/g, "'\\''")}'`

function toBase64(bytes) {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 8192) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 8192))
  }
  return btoa(binary)
}
function fromBase64(text) {
  const binary = atob(text.replace(/\s+/g, ''))
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i)
  return out
}
async function drain(stream) {
  const reader = stream.getReader()
  const chunks = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value)
    size += value.byteLength
  }
  const out = new Uint8Array(size)
  let offset = 0
  for (const c of chunks) {
    out.set(c, offset)
    offset += c.byteLength
  }
  return out
}

export async function writeFileViaExec(sandbox, path, content) {
  const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content
  const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : ''
  if (dir) await sandbox.exec(`mkdir -p ${quote(dir)}`)
  const result = await sandbox.exec(`printf '%s' ${quote(toBase64(bytes))} | base64 -d > ${quote(path)}`)
  if (result.exitCode !== 0) throw new Error(`writeFile failed: ${result.stderr}`)
}
export async function readFileViaExec(sandbox, path) {
  const result = await sandbox.exec(`base64 ${quote(path)}`)
  if (result.exitCode !== 0) throw new Error(`readFile failed: ${result.stderr}`)
  return fromBase64(result.stdout)
}
export async function uploadArchiveViaExec(sandbox, archive, destDir) {
  const bytes = archive instanceof Uint8Array ? archive : await drain(archive)
  const tmp = `/tmp/_sb_archive_${Date.now()}_${Math.random().toString(36).slice(2)}.tar.gz`
  const write = await sandbox.exec(`printf '%s' ${quote(toBase64(bytes))} | base64 -d > ${tmp}`)
  if (write.exitCode !== 0) throw new Error(`uploadArchive: write failed: ${write.stderr}`)
  const dest = destDir ?? '/'
  await sandbox.exec(`mkdir -p ${quote(dest)}`)
  const extract = await sandbox.exec(`tar xzf ${tmp} -C ${quote(dest)}`)
  if (extract.exitCode !== 0) {
    await sandbox.exec(`rm -f ${tmp}`)
    throw new Error(`uploadArchive: extract failed: ${extract.stderr}`)
  }
  await sandbox.exec(`rm -f ${tmp}`)
}
export async function downloadArchiveViaExec(sandbox, srcDir) {
  const tmp = `/tmp/_sb_download_${Date.now()}_${Math.random().toString(36).slice(2)}.tar.gz`
  try {
    const tar = await sandbox.exec(`tar czf ${tmp} -C ${quote(srcDir ?? '/')} .`)
    if (tar.exitCode !== 0) throw new Error(`downloadArchive: tar failed: ${tar.stderr}`)
    const read = await sandbox.exec(`base64 ${tmp}`)
    if (read.exitCode !== 0) throw new Error(`downloadArchive: read failed: ${read.stderr}`)
    const bytes = fromBase64(read.stdout)
    return new ReadableStream({
      start(controller) {
        controller.enqueue(bytes)
        controller.close()
      },
    })
  } finally {
    await sandbox.exec(`rm -f ${tmp}`)
  }
}

// ---- user setup ----
export async function setupSandboxUser(raw, cfg) {
  const spec = typeof cfg === 'string' ? { name: cfg } : cfg ?? {}
  const name = spec.name ?? 'sandbank'
  const uid = spec.uid !== undefined ? ` -u ${spec.uid}` : ''
  const add = await raw.exec(`id ${name} >/dev/null 2>&1 || useradd -m -s /bin/bash${uid} ${name}`)
  if (add.exitCode !== 0) throw new Error(`Failed to create user ${name}: ${add.stderr}`)
  const home = (await raw.exec(`eval echo ~${name}`)).stdout.trim()
  if (!home || home === `~${name}`) throw new Error(`Failed to resolve home of user ${name}`)
  if (spec.sudo !== false) {
    await raw.exec(
      `command -v sudo >/dev/null 2>&1 || (apt-get update && apt-get install -y sudo) >/dev/null 2>&1; ` +
        `echo '${name} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/${name}`,
    )
  }
  return { name, home }
}
export function wrapAsUser(command, user, cwd) {
  const inner = cwd ? `cd "${cwd.replace(/(["$`\\])/g, '\\$1')}" && ${command}` : command
  return `su - ${user} -c '${inner.replace(/'/g, "'\\''")}'`
}

// ---- skills ----
export async function injectSkills(sandbox, skills) {
  for (const skill of skills) {
    if (!skill.name || skill.name === '.' || skill.name === '..' || /[/\\]/.test(skill.name)) {
      throw new Error(`Invalid skill name: ${skill.name}`)
    }
  }
  await sandbox.exec(`mkdir -p '/root/.claude/skills'`)
  for (const skill of skills) await sandbox.writeFile(`/root/.claude/skills/${skill.name}.md`, skill.content)
}

// ---- capability helpers ----
export const hasCapability = (provider, cap) => provider.capabilities.has(cap)
const hasMethod = (sandbox, m) => (m in sandbox && typeof sandbox[m] === 'function' ? sandbox : null)
export const withStreaming = (s) => hasMethod(s, 'execStream')
export const withTerminal = (s) => hasMethod(s, 'startTerminal')
export const withSleep = (s) => hasMethod(s, 'sleep')
export const withPortExpose = (s) => hasMethod(s, 'exposePort')
export const withSnapshot = (s) => hasMethod(s, 'createSnapshot')
export const withVolumes = (p) =>
  typeof p.createVolume === 'function' && typeof p.deleteVolume === 'function' && typeof p.listVolumes === 'function' ? p : null
export const withServices = (p) =>
  ['createService', 'getService', 'listServices', 'destroyService'].every((m) => typeof p[m] === 'function') ? p : null

// ---- terminal client: core's framing, 0x00 input/output, 0x01 resize ----
export function connectTerminal(info, { WebSocketImpl = globalThis.WebSocket } = {}) {
  if (!WebSocketImpl) throw new Error('connectTerminal needs a global WebSocket (Node >= 22)')
  const ws = new WebSocketImpl(info.url)
  ws.binaryType = 'arraybuffer'
  const listeners = new Set()
  const session = {
    state: 'connecting',
    ready: new Promise((resolve, reject) => {
      ws.onopen = () => {
        session.state = 'open'
        resolve()
      }
      ws.onerror = (e) => reject(e?.error ?? new Error('terminal connection failed'))
    }),
    write(data) {
      const bytes = new TextEncoder().encode(data)
      const frame = new Uint8Array(bytes.length + 1)
      frame[0] = 0
      frame.set(bytes, 1)
      ws.send(frame)
    },
    onData(cb) {
      listeners.add(cb)
      return { dispose: () => listeners.delete(cb) }
    },
    resize(columns, rows) {
      const bytes = new TextEncoder().encode(JSON.stringify({ columns, rows }))
      const frame = new Uint8Array(bytes.length + 1)
      frame[0] = 1
      frame.set(bytes, 1)
      ws.send(frame)
    },
    close() {
      ws.close()
    },
  }
  ws.onmessage = (event) => {
    const bytes = new Uint8Array(event.data)
    if (bytes[0] !== 0) return
    const text = new TextDecoder().decode(bytes.subarray(1))
    for (const cb of listeners) cb(text)
  }
  ws.onclose = () => {
    session.state = 'closed'
  }
  return session
}

// ---- provider ----
export function createProvider(adapter, options = {}) {
  const { observer, taskId } = options
  const capabilities = new Set()
  for (const cap of adapter.capabilities) {
    if (cap === 'volumes' && !withVolumes(adapter)) continue
    if (cap === 'services' && !withServices(adapter)) continue
    capabilities.add(cap)
  }
  const emit = (raw, type, data) => emitEvent(observer, { type, sandboxId: raw.id, taskId, timestamp: Date.now(), data })

  function wrap(raw, user) {
    const sandbox = {
      get id() {
        return raw.id
      },
      get state() {
        return raw.state
      },
      get createdAt() {
        return raw.createdAt
      },
      get user() {
        return user
      },
      async exec(command, execOptions) {
        let cmd = command
        let opts = execOptions
        if (user && !execOptions?.asRoot) {
          cmd = wrapAsUser(command, user.name, execOptions?.cwd)
          opts = execOptions ? { ...execOptions, cwd: undefined, asRoot: undefined } : undefined
        }
        const started = Date.now()
        try {
          const result = await raw.exec(cmd, opts)
          emit(raw, 'sandbox:exec', { command, exitCode: result.exitCode, duration: Date.now() - started })
          return result
        } catch (err) {
          emit(raw, 'sandbox:exec', { command, error: err?.message, duration: Date.now() - started })
          throw err
        }
      },
      async writeFile(path, content) {
        const impl = raw.writeFile ? raw.writeFile.bind(raw) : (p, c) => writeFileViaExec(raw, p, c)
        await impl(path, content)
        emit(raw, 'sandbox:writeFile', { path, size: typeof content === 'string' ? content.length : content.byteLength })
      },
      async readFile(path) {
        const impl = raw.readFile ? raw.readFile.bind(raw) : (p) => readFileViaExec(raw, p)
        const bytes = await impl(path)
        emit(raw, 'sandbox:readFile', { path, size: bytes.byteLength })
        return bytes
      },
      async uploadArchive(archive, destDir) {
        const impl = raw.uploadArchive ? raw.uploadArchive.bind(raw) : (a, d) => uploadArchiveViaExec(raw, a, d)
        await impl(archive, destDir)
        emit(raw, 'sandbox:uploadArchive', { destDir: destDir ?? '/' })
      },
      async downloadArchive(srcDir) {
        const impl = raw.downloadArchive ? raw.downloadArchive.bind(raw) : (d) => downloadArchiveViaExec(raw, d)
        const stream = await impl(srcDir)
        emit(raw, 'sandbox:downloadArchive', { srcDir: srcDir ?? '/' })
        return stream
      },
    }
    if (raw.execStream) sandbox.execStream = raw.execStream.bind(raw)
    if (raw.sleep) sandbox.sleep = raw.sleep.bind(raw)
    if (raw.wake) sandbox.wake = raw.wake.bind(raw)
    if (raw.startTerminal) sandbox.startTerminal = (o) => raw.startTerminal(o)
    if (raw.exposePort) sandbox.exposePort = (port, o) => raw.exposePort(port, o)
    if (raw.createSnapshot) sandbox.createSnapshot = (name) => raw.createSnapshot(name)
    if (raw.restoreSnapshot) sandbox.restoreSnapshot = (id) => raw.restoreSnapshot(id)
    return sandbox
  }

  const provider = {
    get name() {
      return adapter.name
    },
    get capabilities() {
      return capabilities
    },
    async create(config = {}) {
      let cfg = config
      if (config.services?.length) {
        if (!capabilities.has('services') || !adapter.getService) {
          throw new CapabilityNotSupportedError(adapter.name, 'services')
        }
        const env = { ...(config.env ?? {}) }
        for (const binding of config.services) {
          const service = await adapter.getService(binding.id)
          if (service.state !== 'ready') {
            throw new ProviderError(adapter.name, new Error(`Service ${binding.id} is not ready (state: ${service.state})`))
          }
          for (const [k, v] of Object.entries(service.credentials.env)) env[binding.envPrefix ? `${binding.envPrefix}_${k}` : k] = v
        }
        cfg = { ...config, env }
      }
      const raw = await adapter.createSandbox(cfg)
      const user = cfg.user ? await setupSandboxUser(raw, cfg.user) : undefined
      const sandbox = wrap(raw, user)
      if (cfg.skills?.length) {
        try {
          await injectSkills(sandbox, cfg.skills)
        } catch (err) {
          await adapter.destroySandbox(raw.id).catch(() => {})
          throw err
        }
      }
      return sandbox
    },
    async get(id) {
      return wrap(await adapter.getSandbox(id), undefined)
    },
    list(filter) {
      return adapter.listSandboxes(filter)
    },
    destroy(id) {
      return adapter.destroySandbox(id)
    },
  }
  if (capabilities.has('volumes')) {
    provider.createVolume = (c) => adapter.createVolume(c)
    provider.deleteVolume = (id) => adapter.deleteVolume(id)
    provider.listVolumes = () => adapter.listVolumes()
  }
  return provider
}

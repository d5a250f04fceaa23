/** Types of the @sandbank.dev/core 0.3.6 stand-in (docs/testing.md, "The @sandbank.dev/core stand-in"). */
export type SandboxState = 'creating' | 'running' | 'stopped' | 'error' | 'terminated'
export type Capability =
  | 'exec.stream' | 'terminal' | 'sleep' | 'volumes' | 'snapshot' | 'port.expose' | 'services' | 'dynamic.worker'

export interface CreateConfig {
  image?: string
  env?: Record<string, string>
  resources?: { cpu?: number; memory?: number; disk?: number }
  region?: string
  autoDestroyMinutes?: number
  volumes?: { id: string; mountPath: string }[]
  /** Creation timeout in seconds. */
  timeout?: number
  skills?: { name: string; content: string }[]
  services?: { id: string; envPrefix?: string }[]
  ports?: [number, number][]
  user?: string | { name?: string; uid?: number; sudo?: boolean }
}
export interface ExecOptions { timeout?: number; cwd?: string; asRoot?: boolean }
export interface ExecResult { stdout: string; stderr: string; exitCode: number }
export interface ListFilter { state?: SandboxState | SandboxState[]; limit?: number }
export interface SandboxInfo { id: string; state: SandboxState; createdAt: string; image: string; region?: string }
export interface TerminalOptions { shell?: string; hostname?: string }
export interface TerminalInfo { url: string; port: number }
export interface VolumeConfig { name: string; region?: string; sizeGB?: number }
export interface VolumeInfo { id: string; name: string; sizeGB: number; attachedTo: string | null }

export interface AdapterSandbox {
  readonly id: string
  readonly state: SandboxState
  readonly createdAt: string
  exec(command: string, options?: ExecOptions): Promise<ExecResult>
  writeFile?(path: string, content: string | Uint8Array): Promise<void>
  readFile?(path: string): Promise<Uint8Array>
  uploadArchive?(archive: Uint8Array | ReadableStream, destDir?: string): Promise<void>
  downloadArchive?(srcDir?: string): Promise<ReadableStream>
  execStream?(command: string, options?: ExecOptions): Promise<ReadableStream<Uint8Array>>
  sleep?(): Promise<void>
  wake?(): Promise<void>
  startTerminal?(options?: TerminalOptions): Promise<TerminalInfo>
  exposePort?(port: number, options?: { hostname?: string }): Promise<{ url: string }>
  createSnapshot?(name?: string): Promise<{ snapshotId: string }>
  restoreSnapshot?(snapshotId: string): Promise<void>
}

export interface SandboxAdapter {
  readonly name: string
  readonly capabilities: ReadonlySet<Capability>
  createSandbox(config: CreateConfig): Promise<AdapterSandbox>
  getSandbox(id: string): Promise<AdapterSandbox>
  listSandboxes(filter?: ListFilter): Promise<SandboxInfo[]>
  destroySandbox(id: string): Promise<void>
  createVolume?(config: VolumeConfig): Promise<VolumeInfo>
  deleteVolume?(id: string): Promise<void>
  listVolumes?(): Promise<VolumeInfo[]>
}

export interface Sandbox {
  readonly id: string
  readonly state: SandboxState
  readonly createdAt: string
  readonly user?: { name: string; home: string }
  exec(command: string, options?: ExecOptions): Promise<ExecResult>
  writeFile(path: string, content: string | Uint8Array): Promise<void>
  readFile(path: string): Promise<Uint8Array>
  uploadArchive(archive: Uint8Array | ReadableStream, destDir?: string): Promise<void>
  downloadArchive(srcDir?: string): Promise<ReadableStream>
  execStream?(command: string, options?: ExecOptions): Promise<ReadableStream<Uint8Array>>
  sleep?(): Promise<void>
  wake?(): Promise<void>
  startTerminal?(options?: TerminalOptions): Promise<TerminalInfo>
  exposePort?(port: number, options?: { hostname?: string }): Promise<{ url: string }>
  createSnapshot?(name?: string): Promise<{ snapshotId: string }>
  restoreSnapshot?(snapshotId: string): Promise<void>
}

export interface SandboxEvent { type: string; sandboxId: string; taskId?: string; timestamp: number; data: unknown }
export interface SandboxObserver { onEvent(event: SandboxEvent): void | Promise<void> }

export interface SandboxProvider {
  readonly name: string
  readonly capabilities: ReadonlySet<Capability>
  create(config?: CreateConfig): Promise<Sandbox>
  get(id: string): Promise<Sandbox>
  list(filter?: ListFilter): Promise<SandboxInfo[]>
  destroy(id: string): Promise<void>
}

export declare function createProvider(
  adapter: SandboxAdapter,
  options?: { observer?: SandboxObserver; taskId?: string },
): SandboxProvider

export declare class SandboxError extends Error {
  constructor(message: string, provider: string, sandboxId?: string)
  readonly provider: string
  readonly sandboxId?: string
}
export declare class SandboxNotFoundError extends SandboxError {
  constructor(provider: string, sandboxId: string)
}
export declare class SandboxStateError extends SandboxError {
  constructor(provider: string, sandboxId: string, currentState: string, requiredState: string)
  readonly currentState: string
  readonly requiredState: string
}
export declare class ExecTimeoutError extends SandboxError {
  constructor(provider: string, sandboxId: string, timeout: number)
  readonly timeout: number
}
export declare class RateLimitError extends SandboxError {
  constructor(provider: string, retryAfter?: number)
  readonly retryAfter?: number
}
export declare class ProviderError extends SandboxError {
  constructor(provider: string, cause: unknown, sandboxId?: string)
  readonly cause: unknown
}
export declare class CapabilityNotSupportedError extends SandboxError {
  constructor(provider: string, capability: Capability)
  readonly capability: Capability
}

export declare function hasCapability(provider: SandboxProvider, capability: Capability): boolean
export declare function withStreaming(sandbox: Sandbox): (Sandbox & Required<Pick<Sandbox, 'execStream'>>) | null
export declare function withTerminal(sandbox: Sandbox): (Sandbox & Required<Pick<Sandbox, 'startTerminal'>>) | null
export declare function withSleep(sandbox: Sandbox): (Sandbox & Required<Pick<Sandbox, 'sleep' | 'wake'>>) | null
export declare function withPortExpose(sandbox: Sandbox): (Sandbox & Required<Pick<Sandbox, 'exposePort'>>) | null
export declare function withSnapshot(
  sandbox: Sandbox,
): (Sandbox & Required<Pick<Sandbox, 'createSnapshot' | 'restoreSnapshot'>>) | null

export declare function writeFileViaExec(sandbox: AdapterSandbox, path: string, content: string | Uint8Array): Promise<void>
export declare function readFileViaExec(sandbox: AdapterSandbox, path: string): Promise<Uint8Array>
export declare function uploadArchiveViaExec(
  sandbox: AdapterSandbox, archive: Uint8Array | ReadableStream, destDir?: string): Promise<void>
export declare function downloadArchiveViaExec(sandbox: AdapterSandbox, srcDir?: string): Promise<ReadableStream>
export declare function emitEvent(observer: SandboxObserver | undefined, event: SandboxEvent): void
export declare function createNoopObserver(): SandboxObserver

export interface TerminalSession {
  write(data: string): void
  onData(cb: (data: string) => void): { dispose(): void }
  resize(cols: number, rows: number): void
  close(): void
  readonly state: 'connecting' | 'open' | 'closed'
  readonly ready: Promise<void>
}
export declare function connectTerminal(info: TerminalInfo, options?: { WebSocketImpl?: unknown }): TerminalSession

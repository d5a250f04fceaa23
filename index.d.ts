/**
 * Public types of @sandbank.dev/boxlite, the same names and shapes as the original TypeScript
 * package (0.6.1), so `createProvider(new BoxLiteAdapter(config))` type-checks unchanged.
 */
import type {
  AdapterSandbox,
  Capability,
  CreateConfig,
  ListFilter,
  SandboxAdapter,
  SandboxInfo,
} from '@sandbank.dev/core'

/** Remote mode: a BoxLite REST or BoxRun server. */
export interface BoxLiteRemoteConfig {
  mode?: 'remote'
  /** Base URL of the server, e.g. `http://localhost:9090` (without `/v1`). */
  apiUrl: string
  /** Tenant prefix. @default the dialect's own (`/v1/me` for current BoxLite, `default` for the SSE era, none for BoxRun) */
  prefix?: string
  /** Bearer token; wins over `clientId`/`clientSecret`. */
  apiToken?: string
  /** OAuth2 client-credentials id (with `clientSecret`). */
  clientId?: string
  /** OAuth2 client-credentials secret (with `clientId`). */
  clientSecret?: string
  /** Which REST dialect the server speaks. @default 'auto' (detected once, on first use) */
  dialect?: 'auto' | 'sse' | 'current' | 'boxrun'
}

/** Local mode: the `boxlite` Python SDK, run inside this Node process. */
export interface BoxLiteLocalConfig {
  mode: 'local'
  /** Interpreter (or venv interpreter) that has `boxlite` installed. @default 'python3' */
  pythonPath?: string
  /** SDK home directory; `~` is expanded. @default the SDK's (`$BOXLITE_HOME` or `~/.boxlite`) */
  boxliteHome?: string
}

export type BoxLiteAdapterConfig = BoxLiteRemoteConfig | BoxLiteLocalConfig

export type BoxStatus = 'configured' | 'running' | 'stopping' | 'stopped' | 'paused' | 'unknown'

/** One direction's network policy. */
export interface BoxLiteNetworkDirection {
  mode: 'enabled' | 'disabled'
  allow_net?: string[]
}

/**
 * A box's network: `{mode, allow_net}` (outbound), or per direction `{outbound, inbound}` as the
 * current `boxlite serve` takes it. Servers without an inbound policy (SSE era, BoxRun) get the
 * outbound part only.
 */
export type BoxLiteNetworkConfig =
  | BoxLiteNetworkDirection
  | { outbound?: BoxLiteNetworkDirection; inbound?: BoxLiteNetworkDirection }

export interface BoxLiteSecretSpec {
  name: string
  value: string
  target?: string
}

export interface BoxLiteBox {
  id: string
  boxlite_id?: string
  name: string | null
  status: BoxStatus
  created_at: string
  started_at?: string
  stopped_at?: string
  image: string
  cpu: number
  memory_mb: number
  disk_size_gb?: number
  workdir?: string
  env?: Record<string, string>
  network?: boolean | BoxLiteNetworkConfig
  error_code?: string
  error_message?: string
  volumes?: unknown[]
}

export interface BoxLiteCreateParams {
  image?: string
  /** Absolute path of a local OCI layout, used instead of `image`. */
  rootfs_path?: string
  name?: string
  cpu?: number
  memory_mb?: number
  disk_size_gb?: number
  working_dir?: string
  env?: Record<string, string>
  auto_remove?: boolean
  security?: Record<string, unknown>
  /** `[hostPort, guestPort]` pairs. */
  ports?: [number, number][]
  network?: BoxLiteNetworkConfig
  secrets?: BoxLiteSecretSpec[]
  entrypoint?: string
  cmd?: string[]
  user?: string
  labels?: Record<string, string>
}

export interface BoxLiteExecRequest {
  /** argv; no shell is added. */
  cmd: string[]
  env?: Record<string, string>
  /** Kills the command after this many seconds. */
  timeout_seconds?: number
  working_dir?: string
  tty?: boolean
}

export interface BoxLiteExecution {
  id: string
  box_id?: string
  cmd?: string[]
  status: string
  exit_code: number | null
  stdout?: string
  stderr?: string
}

export interface BoxLiteSnapshot {
  id: string
  box_id: string
  name: string
  /** Unix seconds. */
  created_at: number
  size_bytes: number
  guest_disk_bytes?: number
  container_disk_bytes?: number
}

/** The low-level client (`getClient()`): same methods and shapes in remote and local mode. */
export interface BoxLiteClient {
  createBox(params: BoxLiteCreateParams): Promise<BoxLiteBox>
  getBox(boxId: string): Promise<BoxLiteBox>
  listBoxes(status?: string, pageSize?: number): Promise<BoxLiteBox[]>
  deleteBox(boxId: string, force?: boolean): Promise<void>
  startBox(boxId: string): Promise<void>
  stopBox(boxId: string): Promise<void>
  exec(boxId: string, req: BoxLiteExecRequest): Promise<{ stdout: string; stderr: string; exitCode: number }>
  execStream(boxId: string, req: BoxLiteExecRequest): Promise<ReadableStream<Uint8Array>>
  uploadFiles(boxId: string, path: string, tarData: Uint8Array | ReadableStream<Uint8Array>): Promise<void>
  downloadFiles(boxId: string, path: string): Promise<ReadableStream<Uint8Array>>
  createSnapshot(boxId: string, name: string): Promise<BoxLiteSnapshot>
  restoreSnapshot(boxId: string, name: string): Promise<void>
  deleteSnapshot(boxId: string, name: string): Promise<void>
  listSnapshots(boxId: string): Promise<BoxLiteSnapshot[]>
  cloneBox(boxId: string, name?: string): Promise<BoxLiteBox>
  exportBox?(boxId: string): Promise<ReadableStream<Uint8Array>>
  importBox?(data: Uint8Array | ReadableStream<Uint8Array>): Promise<BoxLiteBox>
  execAsync?(boxId: string, req: BoxLiteExecRequest): Promise<BoxLiteExecution>
  getExecOutput?(boxId: string, execId: string): Promise<ReadableStream<Uint8Array>>
  sendExecInput?(boxId: string, execId: string, data: string | Uint8Array, close?: boolean): Promise<void>
  signalExec?(boxId: string, execId: string, signal: number): Promise<void>
  resizeExec?(boxId: string, execId: string, cols: number, rows: number): Promise<void>
  getMetrics?(): Promise<Record<string, unknown>>
  getBoxMetrics?(boxId: string): Promise<Record<string, unknown>>
  getConfig?(): Promise<Record<string, unknown>>
  dispose?(): Promise<void>
}

/**
 * Options of `sandbox.startTerminal(options)` (sandbank's `TerminalOptions` plus `mode`).
 *
 * Default (`mode: 'native'`): the addon serves a WebSocket on loopback,
 * `ws://127.0.0.1:<port>/terminal/<64 hex token>/ws` (the token is random per terminal; any other
 * path is refused before the upgrade), and each connection runs `shell` in the box with a pty
 * through the mode's interactive exec. Nothing is installed in the box and the box needs no
 * network. Both framings work on the same URL, told apart by the client's first frame:
 * `@sandbank.dev/core`'s `connectTerminal` (type bytes `0x00` input/output, `0x01` resize
 * `{"columns","rows"}`) and ttyd 1.7's (`'0'`/`'1'`, the `tty` subprotocol and the opening
 * `{"AuthToken","columns","rows"}`; `AuthToken` may be empty or the URL's token). Closing the
 * socket ends the shell, the shell's exit closes the socket. The URL takes new connections (each
 * a new shell) until the box is destroyed through this adapter, 15 minutes pass without a
 * connection, or `adapter.dispose()`. On BoxRun servers the shell runs on the server's box
 * terminal; on the SSE-era `boxlite serve` (no exec stdin) only through the in-box ttyd when the
 * box maps guest port 7681, and otherwise the call rejects with a `ProviderError` whose
 * `cause.code` is `'unsupported'`.
 *
 * `mode: 'ttyd'`: the original's behaviour, kept for users who rely on it: ttyd 1.7.7 is
 * downloaded into the box if missing (needs network access and curl, wget or apt-get there),
 * started writable on guest port 7681, and `{ url: 'ws://<host>:<mapped port>/ws', port: 7681 }`
 * is returned; unlike the original, a failed install or start rejects.
 */
export interface BoxLiteTerminalOptions {
  /** Program run as the shell (one path, no arguments). @default '/bin/bash' */
  shell?: string
  /**
   * Native mode: the loopback address to serve on (`127.0.0.1`, `::1` or `localhost`; anything
   * else rejects). ttyd mode: the host named in the URL. @default '127.0.0.1' (native), the API host (ttyd)
   */
  hostname?: string
  /** @default 'native' */
  mode?: 'native' | 'ttyd'
}

export declare class BoxLiteAdapter implements SandboxAdapter {
  readonly name: 'boxlite'
  readonly capabilities: ReadonlySet<Capability>
  /** Never throws and does no I/O; an unusable config is reported by the first operation. */
  constructor(config: BoxLiteAdapterConfig)
  createSandbox(config: CreateConfig): Promise<AdapterSandbox>
  getSandbox(id: string): Promise<AdapterSandbox>
  listSandboxes(filter?: ListFilter): Promise<SandboxInfo[]>
  /** Force-deletes the box; resolves when it does not exist. */
  destroySandbox(id: string): Promise<void>
  getClient(): BoxLiteClient
  /** Releases connections and runtimes; idempotent. */
  dispose(): Promise<void>
}

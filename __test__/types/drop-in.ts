// Type-checked by `tsc --noEmit -p __test__/tsconfig.json` (see unit/types.spec.ts): the adapter
// must fit core's SandboxAdapter exactly as users write it, in both modes.
import { createProvider, type SandboxAdapter, type SandboxProvider } from '@sandbank.dev/core'
import {
  BoxLiteAdapter,
  type BoxLiteAdapterConfig,
  type BoxLiteBox,
  type BoxLiteClient,
  type BoxLiteCreateParams,
  type BoxLiteExecRequest,
  type BoxLiteExecution,
  type BoxLiteLocalConfig,
  type BoxLiteNetworkConfig,
  type BoxLiteRemoteConfig,
  type BoxLiteSecretSpec,
  type BoxLiteSnapshot,
  type BoxLiteTerminalOptions,
  type BoxStatus,
} from '@sandbank.dev/boxlite'

const remote: BoxLiteRemoteConfig = { apiUrl: 'http://localhost:9090', apiToken: 'x', prefix: 'default' }
const oauth: BoxLiteAdapterConfig = { apiUrl: 'http://h:9090', clientId: 'id', clientSecret: 's' }
const local: BoxLiteLocalConfig = { mode: 'local', pythonPath: '/usr/bin/python3', boxliteHome: '~/.boxlite' }

const providers: SandboxProvider[] = [
  createProvider(new BoxLiteAdapter(remote)),
  createProvider(new BoxLiteAdapter(oauth)),
  createProvider(new BoxLiteAdapter(local)),
]
const asAdapter: SandboxAdapter = new BoxLiteAdapter({ apiUrl: '' })
const name: 'boxlite' = new BoxLiteAdapter(remote).name

async function useClient(client: BoxLiteClient): Promise<void> {
  const params: BoxLiteCreateParams = { image: 'ubuntu:24.04', cpu: 1, memory_mb: 512, ports: [[8080, 80]] }
  const box: BoxLiteBox = await client.createBox(params)
  const status: BoxStatus = box.status
  const request: BoxLiteExecRequest = { cmd: ['echo', 'hi'], timeout_seconds: 5 }
  const result = await client.exec(box.id, request)
  const code: number = result.exitCode
  const snapshot: BoxLiteSnapshot = await client.createSnapshot(box.id, 'snap')
  const execution: BoxLiteExecution | undefined = await client.execAsync?.(box.id, request)
  const network: BoxLiteNetworkConfig = { mode: 'disabled' }
  const perDirection: BoxLiteNetworkConfig = { outbound: { mode: 'enabled', allow_net: ['a.example'] }, inbound: { mode: 'disabled' } }
  const secret: BoxLiteSecretSpec = { name: 'k', value: 'v' }
  void [status, code, snapshot, execution, network, perDirection, secret]
}

// The terminal options extend core's TerminalOptions: a typed variable passes through `Sandbox`.
async function useTerminal(provider: SandboxProvider): Promise<void> {
  const sandbox = await provider.create({})
  const native = await sandbox.startTerminal?.({ shell: '/bin/sh', hostname: '127.0.0.1' })
  const ttyd: BoxLiteTerminalOptions = { mode: 'ttyd' }
  const legacy = await sandbox.startTerminal?.(ttyd)
  const port: number | undefined = legacy?.port
  void [native?.url, port]
}

void [providers, asAdapter, name, useClient, useTerminal]

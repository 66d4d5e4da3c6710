/**
 * The ComfyUI 0.8 stand-in: a real HTTP + WebSocket server that answers like ComfyUI 0.8.0 on the
 * recorded scenarios (fixtures/comfyui-0.8.0), for tests, benchmarks and demos without a GPU.
 *
 * @example
 * const sim = await createSimServer({ dataDir: await mkdtemp(join(tmpdir(), 'sim-')), speed: 20 })
 * await fetch(`${sim.url}/prompt`, { method: 'POST', body: JSON.stringify({ prompt }) })
 * await sim.close()
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { createCatalogue } from './catalogue.js'
import { createDataDir } from './data-dir.js'
import type { DataDir } from './data-dir.js'
import { GpuModel } from './gpu-model.js'
import type { HistoryEntry, QueueItem } from './prompt-queue.js'
import type { PyObject } from './py-json.js'
import { PREVIEW_METHODS, SimEngine } from './sim-engine.js'
import { createRoutes, originRejected, serverFeatures, type SimInstall } from './sim-routes.js'
import { LogTerminal } from './sim-logs.js'
import type { LogEntry } from './sim-logs.js'
import { WsHub } from './ws-hub.js'

export { createDataDir, auditInputPng } from './data-dir.js'
export type { SimInstall } from './sim-routes.js'
export { decodePng, encodePng } from './png.js'
export type { DecodedPng, RawImage } from './png.js'
export { parsePyJson, dumpPyJson, PyFloat } from './py-json.js'
export type { PyValue, PyObject } from './py-json.js'

/** Options of {@link createSimServer}. */
export interface SimOptions {
  /** Base directory holding input/, output/, temp/, models/ and user/ (created and seeded). */
  dataDir: string
  /** Interface to listen on; default 127.0.0.1. */
  host?: string
  /** Port; 0 (default) picks a free one. */
  port?: number
  /** Time scale: 1 = the recording's timings, 10 = ten times faster. Default 1. */
  speed?: number
  /** Clock in epoch milliseconds (timestamps, create_time). Default Date.now. */
  now?: () => number
  /** Randomness in [0, 1) (ids, PreviewImage suffixes, the corrupt model bytes). Default Math.random. */
  random?: () => number
  /** `--preview-method`: sampler previews (none, auto, latent2rgb, taesd). Default none. */
  previewMethod?: string
  /**
   * A built ComfyUI front end (the folder holding index.html): served as ComfyUI serves its web root, every
   * path that is no API route. Without it `/` is a short page saying what this server is.
   */
  webRoot?: string
  /**
   * The install this stand-in plays, as `/system_stats` and the start-up log report it: another ComfyUI or
   * PyTorch version is another install (a real one changes only across a restart, so restart the stand-in to
   * change it). Each field defaults to the recorded install's.
   */
  install?: Partial<SimInstall>
  /**
   * Makes a node type slower (or faster) than the recording, as a driver update or a throttled card would:
   * its recorded timings are multiplied by the factor returned for its class type, asked at every wait.
   * Default 1 for every type. Used by `comfy-audit demo` to plant a slowdown the analysis should find.
   */
  nodeTimeFactor?: (classType: string) => number
  /**
   * Called with the recorded milliseconds of every wait a node makes, as it ends: a virtual clock advanced by
   * it (`now`) gives timestamps that follow the recording exactly, whatever the wall and the machine's load do.
   */
  onSlept?: (recordedMillis: number) => void
}

/** The recorded install (fixtures/comfyui-0.8.0). */
export const RECORDED_INSTALL: SimInstall = {
  comfyuiVersion: '0.8.0',
  pytorchVersion: '2.11.0+cu130',
  pythonVersion: '3.12.3 (main, Aug 31 2026, 10:18:26) [GCC 13.3.0]',
}

/** A running stand-in. */
export interface SimServer {
  /** `http://HOST:PORT` */
  readonly url: string
  readonly port: number
  /** The data directory's layout. */
  readonly dir: DataDir
  /** Stops the worker, closes every socket and the listener. */
  close(): Promise<void>
  /** Resolves when nothing is queued or running. */
  idle(): Promise<void>
  /** Pending prompts in ComfyUI's heap order, and the running ones. */
  queue(): { running: readonly QueueItem[]; pending: readonly QueueItem[] }
  /** The history, oldest first (what GET /history returns). */
  history(): ReadonlyMap<string, HistoryEntry>
  /** Client ids whose socket currently receives events. */
  clientIds(): string[]
  /** The log ring buffer (GET /internal/logs). */
  logs(): readonly LogEntry[]
}

const startupLog = (install: SimInstall): string[] => [
  'Checkpoint files will always be loaded safely.',
  'Total VRAM 143156 MB, total RAM 128888 MB',
  `pytorch version: ${install.pytorchVersion}`,
  'Set vram state to: NORMAL_VRAM',
  'Device: cuda:0 NVIDIA H200 : cudaMallocAsync',
  'Using async weight offloading with 2 streams',
  'Enabled pinned memory 122443.0',
  'Using pytorch attention',
  `Python version: ${install.pythonVersion}`,
  `ComfyUI version: ${install.comfyuiVersion}`,
  '[Prompt Server] web root: /home/artist/ComfyUI/web',
  'Starting server\n',
]

function localIso(ms: number): string {
  const d = new Date(ms)
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}000`
}

function uuid4(random: () => number): string {
  const b = Array.from({ length: 16 }, () => Math.floor(random() * 256) & 0xff)
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const h = b.map((x) => x.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** Starts a stand-in server. */
export async function createSimServer(options: SimOptions): Promise<SimServer> {
  const host = options.host ?? '127.0.0.1'
  const speed = options.speed ?? 1
  if (!(speed > 0)) throw new Error(`speed must be a positive number, got ${speed}`)
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const previewMethod = options.previewMethod ?? 'none'
  if (!PREVIEW_METHODS.includes(previewMethod))
    throw new Error(`previewMethod must be one of ${PREVIEW_METHODS.join(', ')}, got ${previewMethod}`)
  const newId = options.random ? () => uuid4(random) : randomUUID
  const dir = await createDataDir(options.dataDir, random)
  const catalogue = createCatalogue(dir)
  const gpu = new GpuModel()
  // The terminal sends through the hub, which exists a few lines below.
  const terminal: LogTerminal = new LogTerminal({
    timestamp: () => localIso(now()),
    send: (event, data, sid) => hub.send(event, data, sid),
    connected: (sid) => hub.ids().includes(sid),
  })
  const logs = (): readonly LogEntry[] => terminal.entries()
  const log = (m: string): void => terminal.write(m)
  const install: SimInstall = { ...RECORDED_INSTALL, ...options.install }
  for (const startup of startupLog(install)) {
    const line =
      options.webRoot !== undefined && startup.startsWith('[Prompt Server] web root: ')
        ? `[Prompt Server] web root: ${options.webRoot}`
        : startup
    log(line.endsWith('\n') ? line : line + '\n')
  }

  // The hub and the engine call each other only after both exist.
  const hub: WsHub = new WsHub({
    queueInfo: () => engine.queueInfo(),
    current: () => ({ clientId: engine.clientId, lastNodeId: engine.lastNodeId }),
    serverFeatures: (): PyObject => serverFeatures(),
    newId: () => newId().replaceAll('-', ''),
  })
  const engine: SimEngine = new SimEngine({
    dir,
    catalogue,
    gpu,
    speed,
    now,
    random,
    log,
    send: (event, data, sid) => hub.send(event, data, sid),
    sendBytes: (message, sid) => hub.sendBytes(message, sid),
    supportsPreviewMetadata: (sid) => hub.supportsPreviewMetadata(sid),
    previewMethod,
    ...(options.nodeTimeFactor !== undefined ? { nodeTimeFactor: options.nodeTimeFactor } : {}),
    ...(options.onSlept !== undefined ? { onSlept: options.onSlept } : {}),
  })
  let port = 0
  const handler = createRoutes({
    dir,
    catalogue,
    engine,
    gpu,
    logs,
    log,
    terminal,
    ...(options.webRoot !== undefined ? { webRoot: options.webRoot } : {}),
    now,
    install,
    argv: () => [
      'main.py',
      '--listen',
      host,
      '--port',
      String(port),
      '--front-end-root',
      '/home/artist/ComfyUI/web',
      '--disable-auto-launch',
      '--disable-api-nodes',
      '--database-url',
      'sqlite:///:memory:',
    ],
    newPromptId: () => newId(),
  })
  const server = createServer(handler)
  const wss = new WebSocketServer({ noServer: true, maxPayload: 100 * 1024 * 1024 })
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if ((url.pathname !== '/ws' && url.pathname !== '/api/ws') || originRejected(req)) {
      socket.end(
        `HTTP/1.1 ${originRejected(req) ? '403 Forbidden' : '404 Not Found'}\r\nContent-Length: 0\r\n\r\n`,
      )
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => hub.attach(ws, url.searchParams.get('clientId')))
  })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')
    else socket.destroy()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  port = (server.address() as AddressInfo).port
  log(`To see the GUI go to: http://${host}:${port}\n`)
  const urlHost = host.includes(':') ? `[${host}]` : host
  let closed: Promise<void> | undefined
  return {
    url: `http://${urlHost}:${port}`,
    port,
    dir,
    idle: () => engine.idle(),
    queue: () => ({ running: engine.queue.running(), pending: engine.queue.pending() }),
    history: () => engine.queue.history,
    clientIds: () => hub.ids(),
    logs,
    close() {
      closed ??= (async () => {
        engine.close()
        hub.closeAll()
        wss.close()
        await new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      })()
      return closed
    },
  }
}

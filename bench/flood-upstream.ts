/**
 * A fast upstream for the WebSocket relay bench: it speaks just enough of ComfyUI's protocol for the gateway
 * and sends a prompt's frames as fast as the socket drains, where the stand-in paces them with its timers
 * (about one step per millisecond, so it measured the stand-in's clock, not the relay).
 *
 * HTTP goes to a real stand-in (object_info, system_stats, queue, features...) so the gateway starts and
 * captures as it would against ComfyUI; only `POST /prompt` and `/ws` are answered here. A prompt is
 * "run" at once: `execution_start`, then per node `executing` and `steps` × `progress`, then
 * `executing` with a null node and `execution_success`, all to the socket of the prompt's client id.
 */
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'

/** Options of {@link startFloodUpstream}. */
export interface FloodOptions {
  /** The stand-in that answers every HTTP request but `POST /prompt`. */
  readonly simUrl: string
  /** Bytes queued on a socket before the burst waits for `drain` (default 1 MiB). */
  readonly highWaterBytes?: number
}

export interface FloodUpstream {
  readonly url: string
  close(): Promise<void>
}

/** Frames sent between two looks at the socket's buffer: big enough to batch, small enough to stay fair. */
const FRAMES_PER_SLICE = 256

/** Starts the fast upstream on 127.0.0.1, port 0. */
export async function startFloodUpstream(options: FloodOptions): Promise<FloodUpstream> {
  const sim = new URL(options.simUrl)
  const highWater = options.highWaterBytes ?? 1 << 20
  const sockets = new Map<string, WebSocket>()
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method === 'POST' && path === '/prompt') {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          prompt?: Record<string, { class_type?: string; inputs?: { steps?: number } }>
          client_id?: string
        }
        const promptId = randomUUID()
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ prompt_id: promptId, number: 0, node_errors: {} }))
        const ws = body.client_id === undefined ? undefined : sockets.get(body.client_id)
        if (ws) void burst(ws, promptId, body.prompt ?? {}, highWater)
      })
      return
    }
    // Everything else from the stand-in, unchanged.
    const up = http.request(
      { host: sim.hostname, port: sim.port, path: req.url, method: req.method, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.pipe(res)
      },
    )
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname !== '/ws') {
      socket.destroy()
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const sid = url.searchParams.get('clientId') || randomUUID().replaceAll('-', '')
      sockets.set(sid, ws)
      ws.on('close', () => {
        if (sockets.get(sid) === ws) sockets.delete(sid)
      })
      ws.send(
        `{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": ${JSON.stringify(sid)}}}`,
      )
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** The prompt's frames, in ComfyUI's order and spelling (`json.dumps` separators). */
function* promptFrames(
  promptId: string,
  prompt: Record<string, { class_type?: string; inputs?: { steps?: number } }>,
): Generator<string> {
  const pid = JSON.stringify(promptId)
  const t = Date.now()
  yield `{"type": "execution_start", "data": {"prompt_id": ${pid}, "timestamp": ${t}}}`
  yield `{"type": "execution_cached", "data": {"nodes": [], "prompt_id": ${pid}, "timestamp": ${t}}}`
  for (const [id, node] of Object.entries(prompt)) {
    const nid = JSON.stringify(id)
    yield `{"type": "executing", "data": {"node": ${nid}, "display_node": ${nid}, "prompt_id": ${pid}}}`
    const steps = typeof node.inputs?.steps === 'number' ? node.inputs.steps : 0
    for (let i = 1; i <= steps; i++)
      yield `{"type": "progress", "data": {"value": ${i}, "max": ${steps}, "prompt_id": ${pid}, "node": ${nid}}}`
  }
  yield `{"type": "executing", "data": {"node": null, "prompt_id": ${pid}}}`
  yield `{"type": "execution_success", "data": {"prompt_id": ${pid}, "timestamp": ${Date.now()}}}`
}

/** Sends every frame, a slice at a time under one cork, waiting only when the socket's buffer is full. */
async function burst(
  ws: WebSocket,
  promptId: string,
  prompt: Record<string, { class_type?: string; inputs?: { steps?: number } }>,
  highWater: number,
): Promise<void> {
  const socket = (ws as unknown as { _socket: Socket })._socket
  const frames = promptFrames(promptId, prompt)
  for (;;) {
    if (ws.readyState !== ws.OPEN) return
    if (socket.writableLength > highWater) await once(socket, 'drain')
    socket.cork()
    let done = false
    for (let n = 0; n < FRAMES_PER_SLICE; n++) {
      const next = frames.next()
      if (next.done) {
        done = true
        break
      }
      ws.send(next.value)
    }
    socket.uncork()
    if (done) return
    await new Promise((resolve) => setImmediate(resolve))
  }
}

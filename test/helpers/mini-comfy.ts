/**
 * The ComfyUI stand-in and the recording downstream client of src/gateway/gateway-websocket.test.ts.
 */
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import type { Gateway } from '../../src/gateway/create-gateway.js'

export const FEATURES =
  '{"supports_preview_metadata": true, "max_upload_size": 104857600.0, "extension": {"manager": {"supports_v4": true}}}'

/**
 * A small ComfyUI stand-in for the socket rules: one socket per client id in a dict, including ComfyUI's
 * close bug (closing an old socket removes the id even when a newer socket holds it), a first `status` with
 * `sid`, first-frame feature flags, `/features`, `/queue` and `POST /prompt`.
 */
export class MiniComfy extends EventEmitter {
  readonly sockets = new Map<string, WebSocket>()
  /** Every connect, in order, by client id. */
  readonly opened: string[] = []
  readonly open = new Map<string, number>()
  /** Text frames received per client id. */
  readonly received = new Map<string, string[]>()
  readonly prompts: { body: Record<string, unknown>; raw: string }[] = []
  queue: { running: unknown[]; pending: unknown[] } = { running: [], pending: [] }
  queueRemaining = 0
  #server: http.Server | null = null
  #wss: WebSocketServer | null = null
  #number = 0
  port = 0

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async start(port = 0): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => this.#http(req, res, Buffer.concat(chunks).toString()))
    })
    const wss = new WebSocketServer({ server })
    wss.on('connection', (ws, req) => this.#connection(ws, req))
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    this.port = (server.address() as AddressInfo).port
    this.#server = server
    this.#wss = wss
  }

  /** Like a ComfyUI restart: every socket drops, the queue is gone. */
  async stop(): Promise<void> {
    for (const ws of this.#wss?.clients ?? []) ws.terminate()
    this.#wss?.close()
    this.#server?.closeAllConnections()
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()))
    this.sockets.clear()
    this.queue = { running: [], pending: [] }
  }

  send(type: string, data: unknown, sid?: string): string {
    const text = JSON.stringify({ type, data })
    this.#deliver(text, false, sid)
    return text
  }

  sendBinary(eventType: number, payload: Buffer, sid?: string): Buffer {
    const head = Buffer.alloc(4)
    head.writeUInt32BE(eventType)
    const frame = Buffer.concat([head, payload])
    this.#deliver(frame, true, sid)
    return frame
  }

  /** Resolves when a socket with this id connects (counting connects already made when `nth` is given). */
  connected(id: string, nth = 1): Promise<void> {
    if (this.opened.filter((x) => x === id).length >= nth) return Promise.resolve()
    return new Promise((resolve) => {
      const on = (cid: string): void => {
        if (cid === id && this.opened.filter((x) => x === id).length >= nth) {
          this.off('connection', on)
          resolve()
        }
      }
      this.on('connection', on)
    })
  }

  closed(id: string): Promise<void> {
    return new Promise((resolve) => {
      const on = (cid: string): void => {
        if (cid === id) {
          this.off('close', on)
          resolve()
        }
      }
      this.on('close', on)
    })
  }

  #deliver(data: string | Buffer, binary: boolean, sid?: string): void {
    const targets =
      sid === undefined ? [...this.sockets.values()] : this.sockets.has(sid) ? [this.sockets.get(sid)!] : []
    for (const ws of targets) ws.send(data, { binary })
  }

  #connection(ws: WebSocket, req: http.IncomingMessage): void {
    const id = new URL(req.url ?? '/', 'http://x').searchParams.get('clientId') || 'generated'
    this.sockets.set(id, ws)
    this.opened.push(id)
    this.open.set(id, (this.open.get(id) ?? 0) + 1)
    ws.send(
      JSON.stringify({
        type: 'status',
        data: { status: { exec_info: { queue_remaining: this.queueRemaining } }, sid: id },
      }),
    )
    let first = true
    ws.on('message', (data: Buffer) => {
      const text = data.toString()
      const list = this.received.get(id) ?? []
      list.push(text)
      this.received.set(id, list)
      if (first && (JSON.parse(text) as { type?: string }).type === 'feature_flags') {
        ws.send(`{"type": "feature_flags", "data": ${FEATURES}}`)
      }
      first = false
      this.emit('message', id, text)
    })
    ws.on('close', () => {
      this.open.set(id, (this.open.get(id) ?? 1) - 1)
      this.sockets.delete(id) // ComfyUI's close bug, on purpose
      this.emit('close', id)
    })
    this.emit('connection', id)
  }

  #http(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/features') return void res.end(FEATURES)
    if (path === '/queue') {
      return void res.end(
        JSON.stringify({ queue_running: this.queue.running, queue_pending: this.queue.pending }),
      )
    }
    if (path === '/prompt' && req.method === 'POST') {
      const parsed = JSON.parse(body) as Record<string, unknown>
      this.prompts.push({ body: parsed, raw: body })
      res.setHeader('Content-Type', 'application/json')
      res.end(JSON.stringify({ prompt_id: parsed.prompt_id, number: this.#number++, node_errors: {} }))
      this.emit('prompt', parsed)
      return
    }
    res.statusCode = 404
    res.end('404')
  }
}

export type Frame =
  { text: string; json: { type: string; data: Record<string, unknown> } } | { binary: Buffer }

/** A downstream client that records every frame from the first. */
export class Client {
  readonly frames: Frame[] = []
  readonly ws: WebSocket
  readonly #events = new EventEmitter()
  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers })
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      const text = data.toString()
      this.frames.push(
        isBinary
          ? { binary: data }
          : { text, json: JSON.parse(text) as { type: string; data: Record<string, unknown> } },
      )
      this.#events.emit('frame')
    })
    this.ws.on('error', () => {})
  }

  static async connect(gw: Gateway, query = '', headers: Record<string, string> = {}): Promise<Client> {
    const c = new Client(`${gw.url.replace('http', 'ws')}/ws${query}`, headers)
    await c.waitFor((f) => 'json' in f && f.json.type === 'status')
    return c
  }

  get json(): { type: string; data: Record<string, unknown> }[] {
    return this.frames.flatMap((f) => ('json' in f ? [f.json] : []))
  }

  waitFor(match: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const found = this.frames.find(match)
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#events.off('frame', on)
        reject(new Error(`frame not received; got ${JSON.stringify(this.json.map((j) => j.type))}`))
      }, timeoutMs)
      const on = (): void => {
        const f = this.frames.find(match)
        if (!f) return
        clearTimeout(timer)
        this.#events.off('frame', on)
        resolve(f)
      }
      this.#events.on('frame', on)
    })
  }

  waitForType(type: string, match: (d: Record<string, unknown>) => boolean = () => true): Promise<Frame> {
    return this.waitFor((f) => 'json' in f && f.json.type === type && match(f.json.data))
  }

  /** Resolves once every frame the gateway queued for this socket before now has arrived (ping/pong order). */
  async settle(): Promise<void> {
    const pong = once(this.ws, 'pong')
    this.ws.ping()
    await pong
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    const closed = once(this.ws, 'close')
    this.ws.close()
    await closed
  }
}

/**
 * ComfyUI's WebSocket registry (`PromptServer.sockets`): one socket per client id, the newest wins,
 * the older stays open and silent, and, reproducing ComfyUI's bug, closing the older socket removes
 * the id's entry, which by then belongs to the newer socket.
 */
import { randomUUID } from 'node:crypto'
import type { WebSocket } from 'ws'
import { dumpPyJson, isPyObject, parsePyJson } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'

interface WsHubOptions {
  /** Status payload for the first frame. */
  readonly queueInfo: () => PyObject
  /** The running prompt's client id and last announced node (for the reconnect `executing`). */
  readonly current: () => { clientId: PyValue; lastNodeId: string | null }
  readonly serverFeatures: () => PyObject
  /** Makes an id when the client gave none (uuid4 hex). */
  readonly newId?: () => string
}

export class WsHub {
  readonly #sockets = new Map<string, WebSocket>()
  readonly #flags = new Map<string, PyObject>()
  readonly #all = new Set<WebSocket>()
  readonly #o: WsHubOptions

  constructor(options: WsHubOptions) {
    this.#o = options
  }

  /** Client ids that currently receive events. */
  ids(): string[] {
    return [...this.#sockets.keys()]
  }

  /** Feature flags a client sent in its first frame. */
  featureFlags(sid: string): PyObject | undefined {
    return this.#flags.get(sid)
  }

  /** Registers a new socket for `?clientId=` (empty or missing: a fresh uuid4 hex). */
  attach(ws: WebSocket, requestedId: string | null): void {
    let sid = requestedId ?? ''
    if (sid) this.#sockets.delete(sid)
    else sid = (this.#o.newId ?? (() => randomUUID().replaceAll('-', '')))()
    this.#sockets.set(sid, ws)
    this.#flags.set(sid, {})
    this.#all.add(ws)
    this.#sendTo(ws, 'status', { status: this.#o.queueInfo(), sid })
    const cur = this.#o.current()
    if (cur.clientId === sid && cur.lastNodeId !== null)
      this.#sendTo(ws, 'executing', { node: cur.lastNodeId })
    let first = true
    ws.on('message', (data, isBinary) => {
      if (isBinary) return
      const parsed = parsePyJson(data.toString())
      // Only an object frame counts as "the first message"; ComfyUI's handler fails before that otherwise.
      if (!parsed.ok || !isPyObject(parsed.value)) return
      if (first && parsed.value.type === 'feature_flags') {
        const d = parsed.value.data
        this.#flags.set(sid, isPyObject(d) ? d : {})
        this.#sendTo(ws, 'feature_flags', this.#o.serverFeatures())
      }
      first = false
    })
    ws.on('close', () => {
      this.#all.delete(ws)
      this.#sockets.delete(sid)
      this.#flags.delete(sid)
    })
    ws.on('error', () => {
      // A broken socket is closed by ws; the close handler does the bookkeeping.
    })
  }

  /** Sends to `sid`, or to every registered socket when `sid` is null. Unknown ids are dropped. */
  send(event: string, data: PyValue, sid: PyValue): void {
    if (sid === null) {
      for (const ws of [...this.#sockets.values()]) this.#sendTo(ws, event, data)
      return
    }
    if (typeof sid !== 'string') return
    const ws = this.#sockets.get(sid)
    if (ws) this.#sendTo(ws, event, data)
  }

  /** Whether the socket of `sid` negotiated `supports_preview_metadata` (feature_flags.supports_feature). */
  supportsPreviewMetadata(sid: PyValue): boolean {
    return typeof sid === 'string' && this.#flags.get(sid)?.supports_preview_metadata === true
  }

  /** A binary frame to `sid`, or to every registered socket when `sid` is null (send_bytes). */
  sendBytes(message: Buffer, sid: PyValue): void {
    const targets =
      sid === null ? [...this.#sockets.values()] : typeof sid === 'string' ? [this.#sockets.get(sid)] : []
    for (const ws of targets) {
      if (!ws || ws.readyState !== ws.OPEN) continue
      try {
        ws.send(message, { binary: true }, () => {
          // ignored, as send_socket_catch_exception does
        })
      } catch {
        // same
      }
    }
  }

  #sendTo(ws: WebSocket, event: string, data: PyValue): void {
    if (ws.readyState !== ws.OPEN) return
    try {
      ws.send(dumpPyJson({ type: event, data }), () => {
        // Send errors are ignored, as in ComfyUI (send_socket_catch_exception).
      })
    } catch {
      // same
    }
  }

  /** Closes every socket (server shutdown). */
  closeAll(): void {
    for (const ws of this.#all) ws.terminate()
    this.#all.clear()
    this.#sockets.clear()
  }
}

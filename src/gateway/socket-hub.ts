import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import type { Logger } from '../audit/report-error.js'
import type { JsonValue } from '../audit/types.js'
import type { CaptureTap } from '../capture/tap.js'
import { isProgressText, parseUpstreamFrame, queueRemaining, type UpstreamFrame } from '../comfyui/frames.js'
import { pyString } from '../comfyui/py-json.js'
import { namespacedClientId, parseClientId } from './client-ids.js'
import {
  ClientIdSaver,
  CorkedWrites,
  downstreamText,
  isIdle,
  newChannel,
  settlePrompt,
  type Channel,
  type ClientIdState,
  type Downstream,
  type Wire,
} from './hub-channel.js'
import {
  frameOf,
  isNoClientBroadcast,
  isQueueBroadcast,
  isRecord,
  parseFrame,
  parseQueue,
  str,
  type Frame,
} from './hub-frames.js'
import { FeaturesCache } from './hub-features.js'
import type { PromptIdRegistry } from './prompt-ids.js'
import { binaryFrameFor, broadcastPreview } from './preview-translation.js'
import { UpstreamSocket, type ReconnectOptions } from './upstream-socket.js'

export type { ClientIdState } from './hub-channel.js'

/** Options of {@link SocketHub}. */
interface SocketHubOptions {
  /** ComfyUI's WebSocket URL without query. */
  readonly wsUrl: string
  readonly tap: CaptureTap
  /**
   * Told of every prompt the hub learns from ComfyUI under one of the gateway's ids (its queue, or a run
   * starting) rather than from a submission through the gateway: the registry, not the hub, answers whether
   * a prompt id is known.
   */
  readonly promptIds: Pick<PromptIdRegistry, 'notePromptIdHeld'>
  readonly now: () => number
  readonly logger: Logger
  readonly random: () => number
  readonly reconnect: ReconnectOptions
  readonly handshakeTimeoutMillis: number
  /** How long an id with neither a prompt in flight nor a downstream socket keeps its upstream socket. */
  readonly idleCloseMillis: number
  /** A downstream socket with more than this many bytes queued is dropped rather than slowing anyone. */
  readonly highWaterMarkBytes: number
  /** The raw body of ComfyUI's `GET /features`, or null when it cannot be had. */
  readonly fetchFeatures: () => Promise<string | null>
  /** The raw body of ComfyUI's `GET /queue`, or null when it cannot be had. */
  readonly fetchQueue: () => Promise<Buffer | null>
  readonly state?: ClientIdState
  /** ComfyUI became reachable (observer socket registered) or stopped being so. */
  readonly onHealth: (healthy: boolean) => void
}

/**
 * The gateway's own negotiation, sent as the first text frame of every upstream connection: ComfyUI picks
 * the preview format per socket, and several downstream sockets with different wishes share one upstream
 * socket, so the upstream asks for the richer type 4 and the hub converts per downstream socket. What a
 * downstream socket is answered stays ComfyUI's `GET /features`, as ComfyUI answers any socket.
 */
const UPSTREAM_FLAGS = '{"type": "feature_flags", "data": {"supports_preview_metadata": true}}'

/**
 * Owns every upstream WebSocket: one per namespaced client id (opened when a downstream socket connects or a
 * prompt is submitted under the id, kept while the id has a prompt in flight or a downstream socket), plus
 * one observer socket that tracks health and the queue length. Relays each upstream frame to the newest
 * downstream socket of its id, answers downstream connects the way ComfyUI would, and broadcasts what
 * ComfyUI would have broadcast for prompts whose client gave no id.
 */
export class SocketHub {
  readonly #opts: SocketHubOptions
  readonly #channels = new Map<string, Channel>()
  /** Upstream sockets being closed, by id: a new socket for the id waits for the old one (close bug). */
  readonly #closing = new Map<string, Promise<void>>()
  readonly #observer: UpstreamSocket
  #healthy = false
  #queueRemaining = 0
  readonly #features: FeaturesCache
  readonly #saver: ClientIdSaver
  #seq = 0
  #reconcileRunning = false
  #reconcileAgain = false
  #shuttingDown = false
  #restoring = false
  readonly #writes = new CorkedWrites()

  constructor(opts: SocketHubOptions) {
    this.#opts = opts
    this.#features = new FeaturesCache(opts.fetchFeatures)
    this.#saver = new ClientIdSaver(opts.state, opts.logger, () => [...this.#channels.keys()])
    this.#observer = new UpstreamSocket({
      ...this.#socketOptions(`comfy-audit~observer-${randomBytes(4).toString('hex')}`),
      onFrame: (data, isBinary) => this.#onObserverFrame(data, isBinary),
      onReady: () => this.#onObserverReady(),
      onDown: () => this.#setHealthy(false),
    })
  }

  /** Re-attaches the ids saved by an earlier run (kept until reconciled against ComfyUI's queue). */
  async restore(): Promise<void> {
    const state = this.#opts.state
    if (!state) return
    let ids: string[]
    try {
      ids = await state.load()
    } catch (error) {
      this.#opts.logger.warn('gateway: could not load client ids', { error: String(error) })
      return
    }
    // These ids are what the state already holds: no save until something changes.
    this.#restoring = true
    for (const id of ids) {
      if (parseClientId(id).kind === 'foreign' || this.#channels.has(id)) continue
      this.#channel(id).pinned = true
    }
    this.#restoring = false
    // An observer that connected before the ids were loaded reconciled without them.
    if (this.#healthy) void this.#reconcile()
  }

  /** Whether ComfyUI's WebSocket endpoint is reachable (the observer socket is registered). */
  get healthy(): boolean {
    return this.#healthy
  }

  /** The upstream ids currently held. */
  get clientIds(): string[] {
    return [...this.#channels.keys()]
  }

  /** The observer's upstream id (its frames reach the tap too). */
  get observerClientId(): string {
    return this.#observer.clientId
  }

  /** Number of upstream connections that are open and registered (observer included). */
  get openUpstreamSockets(): number {
    let n = this.#observer.ready ? 1 : 0
    for (const ch of this.#channels.values()) if (ch.socket.ready) n++
    return n
  }

  /**
   * Takes a downstream socket for `downstreamId` of `user` and answers the connect as ComfyUI would: the
   * first `status` with `sid` = the client's own id, then the reconnect `executing` while one of its prompts
   * runs a node.
   */
  attachDownstream(ws: WebSocket, downstreamId: string, user: string, wire?: Wire): void {
    const ch = this.#channel(namespacedClientId(user, downstreamId))
    const d: Downstream = wire ? { ws, wire, first: true } : { ws, first: true }
    ch.downstreams.add(d)
    ch.active = d
    this.#send(
      d,
      `{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": ${this.#queueRemaining}}}, "sid": ${pyString(downstreamId)}}}`,
      false,
    )
    if (ch.runningNode !== null)
      this.#send(d, `{"type": "executing", "data": {"node": ${pyString(ch.runningNode)}}}`, false)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary || !d.first) return
      const text = data.toString('utf8')
      const frame = parseFrame(text)
      if (frame === null) return // ComfyUI keeps waiting for a first valid JSON frame too
      d.first = false
      if (frame.type === 'feature_flags') {
        d.previewMeta = isRecord(frame.data) && frame.data.supports_preview_metadata === true
        this.#onClientFlags(d)
      }
    })
    ws.on('error', () => {})
    ws.on('close', () => {
      ch.downstreams.delete(d)
      if (ch.active === d) ch.active = null
      this.#maybeRelease(ch)
    })
  }

  /**
   * Makes sure the upstream socket for `upstreamId` exists and records a prompt about to be submitted under
   * it. Resolves once ComfyUI has registered the socket (so no event of the prompt can be missed), or after
   * `timeoutMs`.
   */
  async preparePrompt(upstreamId: string, promptId: string, timeoutMs: number): Promise<boolean> {
    const ch = this.#channel(upstreamId)
    ch.inflight.set(promptId, { answeredSeq: null })
    if (ch.socket.ready) return true
    if (!this.#healthy) return false
    return ch.socket.whenReady(timeoutMs)
  }

  /** ComfyUI answered a POST /prompt (status 0: not reachable). Refused prompts stop holding their id. */
  promptAnswered(upstreamId: string, promptId: string, status: number): void {
    const ch = this.#channels.get(upstreamId)
    const p = ch?.inflight.get(promptId)
    if (!ch || !p) return
    if (status === 200) p.answeredSeq = ++this.#seq
    else this.#finishPrompt(ch, promptId)
  }

  /** Closes every downstream and upstream socket. Keeps the saved ids, so the next start re-attaches them. */
  async close(): Promise<void> {
    this.#shuttingDown = true
    const closes: Promise<void>[] = [this.#observer.close(), ...this.#closing.values()]
    for (const ch of this.#channels.values()) {
      if (ch.idleTimer) clearTimeout(ch.idleTimer)
      for (const d of ch.downstreams) d.ws.close(1001, 'gateway shutting down')
      closes.push(ch.socket.close())
    }
    await Promise.all(closes)
    await this.#saver.settled()
  }

  #socketOptions(clientId: string) {
    const o = this.#opts
    return {
      wsUrl: o.wsUrl,
      clientId,
      handshakeTimeoutMillis: o.handshakeTimeoutMillis,
      reconnect: o.reconnect,
      random: o.random,
      logger: o.logger,
    }
  }

  #channel(id: string): Channel {
    const existing = this.#channels.get(id)
    if (existing) {
      if (existing.idleTimer) clearTimeout(existing.idleTimer)
      existing.idleTimer = null
      return existing
    }
    // Assigned right below: the socket needs the channel in its callbacks, which run only later.
    // eslint-disable-next-line prefer-const
    let ch!: Channel
    const socket = new UpstreamSocket({
      ...this.#socketOptions(id),
      after: this.#closing.get(id),
      onFrame: (data, isBinary) => this.#onChannelFrame(ch, data, isBinary),
      onReady: () => {
        if (!ch.socket.textSent) ch.socket.sendText(UPSTREAM_FLAGS)
      },
      onDown: () => {
        // ComfyUI dropped the socket (it restarted): a direct client would lose its socket now, and must
        // reconnect to learn the new state. The upstream socket itself reconnects with backoff.
        ch.runningNode = null
        ch.runningPrompt = null
        for (const d of ch.downstreams) d.ws.close(1012, 'ComfyUI connection lost')
      },
    })
    ch = newChannel(id, socket)
    this.#channels.set(id, ch)
    this.#persist()
    return ch
  }

  #maybeRelease(ch: Channel): void {
    if (!isIdle(ch) || ch.idleTimer) return
    if (this.#shuttingDown) return
    ch.idleTimer = setTimeout(() => {
      ch.idleTimer = null
      if (!isIdle(ch)) return
      ch.closed = true
      this.#channels.delete(ch.id)
      const closed = ch.socket.close()
      this.#closing.set(ch.id, closed)
      void closed.then(() => {
        if (this.#closing.get(ch.id) === closed) this.#closing.delete(ch.id)
      })
      this.#persist()
    }, this.#opts.idleCloseMillis)
    ch.idleTimer.unref()
  }

  #finishPrompt(ch: Channel, promptId: string): void {
    if (settlePrompt(ch, promptId)) this.#maybeRelease(ch)
  }

  /** A prompt of `ch` the hub learned from ComfyUI, not from a submission (which claimed its id already). */
  #learnPrompt(ch: Channel, promptId: string, answeredSeq: number): void {
    ch.inflight.set(promptId, { answeredSeq })
    this.#opts.promptIds.notePromptIdHeld(promptId)
  }

  #persist(): void {
    if (this.#shuttingDown || this.#restoring) return
    this.#saver.save()
  }

  #send(d: Downstream, data: Buffer | string, binary: boolean): void {
    const ws = d.ws
    if (ws.readyState !== WebSocket.OPEN) return
    if (ws.bufferedAmount > this.#opts.highWaterMarkBytes) {
      // Dropping one slow reader beats stalling everyone (ComfyUI's own publish loop would stall).
      this.#opts.logger.warn('gateway: dropping a downstream socket that does not keep up', {
        bufferedBytes: ws.bufferedAmount,
      })
      ws.terminate()
      return
    }
    this.#writes.hold(d)
    ws.send(data, { binary })
  }

  #broadcast(data: Buffer | string, binary: boolean): void {
    for (const ch of this.#channels.values()) if (ch.active) this.#send(ch.active, data, binary)
  }

  #onClientFlags(d: Downstream): void {
    const reply = (features: string): void =>
      this.#send(d, `{"type": "feature_flags", "data": ${features}}`, false)
    const features = this.#features.current
    if (features !== null) reply(features)
    else
      void this.#features.load().then((f) => {
        if (f !== null) reply(f)
      })
  }

  #setHealthy(healthy: boolean): void {
    if (this.#healthy === healthy) return
    this.#healthy = healthy
    this.#opts.logger.info(healthy ? 'gateway: ComfyUI is reachable' : 'gateway: ComfyUI is not reachable')
    this.#opts.onHealth(healthy)
  }

  #onObserverReady(): void {
    this.#setHealthy(true)
    void this.#features.load()
    for (const ch of this.#channels.values()) ch.socket.kick()
    void this.#reconcile()
  }

  #onObserverFrame(data: Buffer, isBinary: boolean): void {
    const timeMs = this.#opts.now()
    const upstream = parseUpstreamFrame(isBinary ? data : data.toString('utf8'), isBinary)
    this.#tapFrame(this.#observer.clientId, upstream, timeMs)
    if (isBinary) return
    const remaining = queueRemaining(upstream)
    if (remaining === undefined) return
    this.#queueRemaining = remaining
    // A status with `sid` answers a connect; without it, ComfyUI tells every socket the queue changed.
    const broadcast = !('sid' in (frameOf(upstream)?.data ?? {}))
    if (remaining === 0 && broadcast && this.#hasAnsweredInflight()) void this.#reconcile()
  }

  #hasAnsweredInflight(): boolean {
    for (const ch of this.#channels.values())
      for (const p of ch.inflight.values()) if (p.answeredSeq !== null) return true
    return false
  }

  #tapFrame(upstreamClientId: string, frame: UpstreamFrame, timeMs: number): void {
    try {
      this.#opts.tap.frame({ upstreamClientId, frame, timeMs })
    } catch (error) {
      this.#opts.logger.error('gateway: capture tap threw on a frame', { error: String(error) })
    }
  }

  #onChannelFrame(ch: Channel, data: Buffer, isBinary: boolean): void {
    const timeMs = this.#opts.now()
    if (isBinary) {
      if (ch.kind === 'client') {
        // The upstream socket always negotiated type 4; ComfyUI decides per socket (preview-translation.ts).
        const active = ch.active
        if (active) this.#send(active, binaryFrameFor(data, active.previewMeta === true), true)
      } else if (ch.runningPrompt !== null) {
        // A preview of a prompt whose client gave no id: ComfyUI would have sent everyone type 1.
        const preview = broadcastPreview(data)
        if (preview) this.#broadcast(preview, true)
      }
      this.#tapFrame(ch.id, parseUpstreamFrame(data, true), timeMs)
      return
    }
    const text = data.toString('utf8')
    const queueStatus = isQueueBroadcast(text) // relayed unread, tapped only on the observer
    if (queueStatus && ch.kind === 'client' && ch.active) this.#send(ch.active, data, false)
    if (queueStatus) return
    const upstream = parseUpstreamFrame(text, false)
    if (ch.kind === 'client' && isProgressText(text)) {
      // #route would only pass it on (nothing to track); capture parses it later, off the relay's tick.
      if (ch.active) this.#send(ch.active, downstreamText(ch, data, text), false)
      return this.#tapFrame(ch.id, upstream, timeMs)
    }
    this.#route(ch, data, text, frameOf(upstream))
    this.#tapFrame(ch.id, upstream, timeMs)
  }

  #route(ch: Channel, data: Buffer, text: string, frame: Frame | null): void {
    const type = frame?.type ?? null
    const d = frame?.data ?? {}
    // What the gateway answers itself on a downstream connect: the connect `status` (with `sid`), the
    // feature-flags reply, and the reconnect `executing` (no `prompt_id`).
    if (type === 'status' && 'sid' in d) return
    if (type === 'feature_flags') return
    if (type === 'executing' && !('prompt_id' in d)) {
      ch.runningNode = str(d.node)
      return
    }
    const promptId = str(d.prompt_id)
    this.#track(ch, type, d, promptId)
    if (ch.kind === 'noclient') {
      if (
        promptId !== null &&
        isNoClientBroadcast(type, d) &&
        (ch.inflight.has(promptId) || ch.recent.includes(promptId))
      ) {
        this.#broadcast(data, false)
      }
      return
    }
    if (ch.active) this.#send(ch.active, downstreamText(ch, data, text), false) // none: ComfyUI drops it
  }

  #track(ch: Channel, type: string | null, d: Record<string, JsonValue>, promptId: string | null): void {
    switch (type) {
      case 'execution_start':
        // ComfyUI now runs this id's prompt: no other id has a running node any more.
        for (const other of this.#channels.values()) {
          other.runningNode = null
          other.runningPrompt = null
        }
        ch.runningPrompt = promptId
        if (promptId !== null && !ch.inflight.has(promptId)) this.#learnPrompt(ch, promptId, ++this.#seq)
        break
      case 'executing': {
        const node = d.node
        if (node === null) {
          ch.runningNode = null
          ch.runningPrompt = null
          // `executing {node: null}` is the last event of a run (sent after the history entry is written).
          if (promptId !== null) this.#finishPrompt(ch, promptId)
        } else {
          ch.runningNode = str(d.display_node) ?? str(node)
        }
        break
      }
      case 'execution_success':
      case 'execution_interrupted':
        ch.runningNode = null
        break
      case 'execution_error':
        if (d.exception_type !== 'ExecutionBlocked') ch.runningNode = null
        break
      default:
        break
    }
  }

  /**
   * Brings the in-flight sets in line with ComfyUI's queue: prompts that ComfyUI accepted before the queue
   * was read and that are no longer in it have ended (or were deleted, or lost in a restart), and prompts
   * in the queue under one of our ids are re-attached.
   */
  async #reconcile(): Promise<void> {
    if (this.#reconcileRunning) {
      this.#reconcileAgain = true
      return
    }
    this.#reconcileRunning = true
    try {
      do {
        this.#reconcileAgain = false
        const mark = ++this.#seq
        const body = await this.#opts.fetchQueue().catch(() => null)
        const queued = body === null ? null : parseQueue(body)
        if (queued === null || this.#shuttingDown) return
        for (const [clientId, promptIds] of queued) {
          if (parseClientId(clientId).kind === 'foreign') continue
          const ch = this.#channel(clientId)
          for (const p of promptIds) if (!ch.inflight.has(p)) this.#learnPrompt(ch, p, mark)
        }
        for (const ch of [...this.#channels.values()]) {
          ch.pinned = false
          const stillQueued = queued.get(ch.id)
          for (const [p, st] of [...ch.inflight]) {
            if (st.answeredSeq !== null && st.answeredSeq < mark && !stillQueued?.has(p))
              this.#finishPrompt(ch, p)
          }
          this.#maybeRelease(ch)
        }
      } while (this.#reconcileAgain)
    } finally {
      this.#reconcileRunning = false
    }
  }
}

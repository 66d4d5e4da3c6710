import WebSocket from 'ws'
import type { Logger } from '../audit/report-error.js'

/** Reconnect backoff: exponential with jitter, so a restarted ComfyUI is not hit by every socket at once. */
export interface ReconnectOptions {
  /** First delay after a failure, ms (default 250). */
  readonly initialDelayMillis?: number
  /** Largest delay, ms (default 10 000). */
  readonly maxDelayMillis?: number
  /** Growth per failed attempt (default 2). */
  readonly factor?: number
  /** Fraction of the delay taken off at random, 0..1 (default 0.5). */
  readonly jitter?: number
}

/** The delay before reconnect attempt `attempt` (0-based). `random` returns [0, 1). */
export function backoffDelay(attempt: number, opts: ReconnectOptions, random: () => number): number {
  const initial = opts.initialDelayMillis ?? 250
  const max = opts.maxDelayMillis ?? 10_000
  const factor = opts.factor ?? 2
  const jitter = Math.min(1, Math.max(0, opts.jitter ?? 0.5))
  const base = Math.min(max, initial * factor ** Math.min(attempt, 30))
  return Math.round(base * (1 - jitter * random()))
}

/** Options of {@link UpstreamSocket}. */
interface UpstreamSocketOptions {
  /** ComfyUI's WebSocket URL without query (`ws://127.0.0.1:8188/ws`). */
  readonly wsUrl: string
  /** The upstream client id (`?clientId=`). */
  readonly clientId: string
  readonly handshakeTimeoutMillis: number
  readonly reconnect: ReconnectOptions
  readonly random: () => number
  readonly logger: Logger
  /** Every frame, in order, synchronously. `first` is true for the first frame of a connection. */
  readonly onFrame: (data: Buffer, isBinary: boolean, first: boolean) => void
  /** The connection delivered its first frame (ComfyUI has registered the socket). */
  readonly onReady?: () => void
  /** A connection that had been ready is gone (a reconnect follows unless closed). */
  readonly onDown?: () => void
  /** Resolves when an earlier socket with this id has fully closed (ComfyUI's close bug, protocol §7.2). */
  readonly after?: Promise<void>
}

const CLOSE_GRACE_MS = 5_000

/**
 * One upstream WebSocket for one client id, reconnected with backoff until closed. It never has two
 * connections at once: a new one opens only after the previous one emitted `close`, because ComfyUI's
 * cleanup of an old socket removes whichever socket then holds the id.
 */
export class UpstreamSocket {
  #lastError: string | null = null
  readonly clientId: string
  readonly #opts: UpstreamSocketOptions
  #ws: WebSocket | null = null
  #attempt = 0
  #timer: NodeJS.Timeout | null = null
  #closed = false
  #ready = false
  #textSent = false
  #waiters: ((ready: boolean) => void)[] = []
  #closedPromise: Promise<void> | null = null

  constructor(opts: UpstreamSocketOptions) {
    this.#opts = opts
    this.clientId = opts.clientId
    const start = (): void => {
      if (!this.#closed) this.#connect()
    }
    if (opts.after) void opts.after.then(start, start)
    else start()
  }

  /** Whether the current connection is open and ComfyUI has registered it. */
  get ready(): boolean {
    return this.#ready
  }

  /** Whether a text frame went up on the current connection (ComfyUI reads only the first for feature flags). */
  get textSent(): boolean {
    return this.#textSent
  }

  /** Resolves true once ready, false after `timeoutMs` or on close. */
  whenReady(timeoutMs: number): Promise<boolean> {
    if (this.#ready) return Promise.resolve(true)
    if (this.#closed) return Promise.resolve(false)
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), timeoutMs)
      timer.unref()
      const done = (ready: boolean): void => {
        clearTimeout(timer)
        const i = this.#waiters.indexOf(done)
        if (i >= 0) this.#waiters.splice(i, 1)
        resolve(ready)
      }
      this.#waiters.push(done)
    })
  }

  /** Sends a text frame on the current connection; false when there is none. */
  sendText(text: string): boolean {
    const ws = this.#ws
    if (!ws || ws.readyState !== WebSocket.OPEN) return false
    ws.send(text)
    this.#textSent = true
    return true
  }

  /** Retries at once when waiting in backoff (ComfyUI is known to be back). */
  kick(): void {
    if (this.#closed || this.#timer === null) return
    clearTimeout(this.#timer)
    this.#timer = null
    this.#connect()
  }

  /** Closes for good; resolves when the connection is gone (bounded by a grace period). */
  close(): Promise<void> {
    if (this.#closedPromise) return this.#closedPromise
    this.#closed = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#settle(false)
    const ws = this.#ws
    if (!ws) {
      this.#closedPromise = Promise.resolve()
      return this.#closedPromise
    }
    this.#closedPromise = new Promise<void>((resolve) => {
      const grace = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS)
      grace.unref()
      ws.once('close', () => {
        clearTimeout(grace)
        resolve()
      })
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
      else ws.close(1000)
    })
    return this.#closedPromise
  }

  #settle(ready: boolean): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w(ready)
  }

  #connect(): void {
    const url = `${this.#opts.wsUrl}?clientId=${encodeURIComponent(this.clientId)}`
    const ws = new WebSocket(url, {
      handshakeTimeout: this.#opts.handshakeTimeoutMillis,
      perMessageDeflate: false,
      maxPayload: 0,
    })
    this.#ws = ws
    this.#textSent = false
    let first = true
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const wasFirst = first
      first = false
      if (wasFirst) {
        this.#ready = true
        this.#attempt = 0
        this.#lastError = null
      }
      try {
        this.#opts.onFrame(data, isBinary, wasFirst)
      } catch (error) {
        this.#opts.logger.error('gateway: upstream frame handler failed', {
          clientId: this.clientId,
          error: String(error),
        })
      }
      if (wasFirst) {
        this.#settle(true)
        this.#opts.onReady?.()
      }
    })
    ws.on('error', (error) => {
      // While ComfyUI stays down every reconnect fails the same way: say it once, not at every backoff step.
      if (error.message !== this.#lastError) {
        this.#lastError = error.message
        this.#opts.logger.warn('gateway: upstream socket error', {
          clientId: this.clientId,
          error: error.message,
        })
      }
    })
    ws.on('close', () => {
      const wasReady = this.#ready
      this.#ready = false
      if (this.#ws === ws) this.#ws = null
      if (wasReady) this.#opts.onDown?.()
      if (this.#closed) return
      const delay = backoffDelay(this.#attempt++, this.#opts.reconnect, this.#opts.random)
      this.#timer = setTimeout(() => {
        this.#timer = null
        if (!this.#closed) this.#connect()
      }, delay)
      this.#timer.unref()
    })
  }
}

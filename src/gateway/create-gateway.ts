import { randomUUID } from 'node:crypto'
import { BodyTooLarge, pathOf, readBody } from './http-util.js'
import { canonicalTarget } from './request-target.js'
import { stripUrlCredentials } from '../capture/url-credentials.js'
import http from 'node:http'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { silentLogger, type Logger } from '../audit/report-error.js'
import type { JsonValue, Submitter } from '../audit/types.js'
import type { CaptureTap } from '../capture/tap.js'
import { generateSocketId, namespacedClientId, noClientId } from './client-ids.js'
import {
  clientViewRoute,
  historyEntries,
  jobListLookups,
  rewriteHistoryAnswer,
  rewriteJobAnswer,
  rewriteJobListAnswer,
  rewriteQueueAnswer,
  type ClientViewRoute,
} from './client-view.js'
import {
  forwardRequestHeaders,
  forwardResponseHeaders,
  isLoopbackHost,
  originMatchesHost,
} from './forward-headers.js'
import { preparePrompt, rewriteStringMember } from './prompt-request.js'
import { SocketHub, type ClientIdState } from './socket-hub.js'
import type { ReconnectOptions } from './upstream-socket.js'
import type { RequestGuard } from './request-guard.js'

export type { Admission, RequestGuard } from './request-guard.js'
export type { ClientIdState } from './socket-hub.js'
export type { ReconnectOptions } from './upstream-socket.js'

/** A request the gateway refused by itself (see {@link GatewayOptions.onRefused}). */
export interface GatewayRefusal {
  readonly status: number
  readonly reason: string
  readonly method: string
  /** The path as sent (before any `?`, at most 256 characters): for a bad target it is the evidence. */
  readonly path: string
  readonly transport: 'http' | 'websocket'
  readonly client_address: string | null
  readonly user_agent: string | null
}

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  /** ComfyUI's base URL (`http://127.0.0.1:8188`); a path prefix is kept. */
  readonly upstreamUrl: string
  /** Address to listen on (default `127.0.0.1`). */
  readonly host?: string
  /** Port to listen on (default 8189; 0 picks a free one). */
  readonly port?: number
  /** Where proxied traffic is reported. Called synchronously; never awaited. */
  readonly tap: CaptureTap
  /** Who sent a request (default: user `local`, auth method `none`, the client address and user agent). */
  readonly identify?: (req: IncomingMessage) => Submitter | Promise<Submitter>
  /**
   * Admission control run first for every request and upgrade (authentication, roles, CSRF, limits); its
   * submitter replaces `identify`. See src/identity/access-guard.ts.
   */
  readonly guard?: RequestGuard
  /** Largest WebSocket message a downstream client may send, bytes (default 100 MiB, as `ws`). */
  readonly maxClientFrameBytes?: number
  /** Serves `/_audit/*`; returning false answers 404. */
  readonly auditHandler?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>
  /** Persisted namespaced client ids, re-attached at start. */
  readonly state?: ClientIdState
  /**
   * Claims a client-chosen prompt_id: false when it is already known (recorded, running, queued or just
   * submitted), and the gateway then answers 400 itself; true when it was free and is now reserved. Called
   * synchronously, before anything is awaited, so two requests with one id cannot both pass; it must never
   * wait on a store (the proxy path does not wait for disk).
   */
  readonly claimPromptId?: (promptId: string) => boolean
  /**
   * Told of the requests the gateway itself refuses before (or without) the guard: a request target that
   * cannot be canonicalised (400), a WebSocket whose Origin does not match its loopback Host (403). The guard
   * reports its own refusals. Must not throw.
   */
  readonly onRefused?: (refusal: GatewayRefusal) => void
  /**
   * The gateway's sealed attribution of a prompt (JSON text, see capture/submission-seal.ts), forwarded as
   * `extra_data.comfy_audit` so a crash before `prompt.submitted` is committed loses nothing ComfyUI keeps.
   * Synchronous and CPU-only: the proxy path never waits for disk. Absent: prompts go unsealed.
   */
  readonly sealSubmission?: (e: {
    promptId: string
    submitter: Submitter
    upstreamClientId: string
    prompt: JsonValue | undefined
    /** Size of the request body (a large graph may go undigested: see the composition root). */
    bodyBytes: number
    timeMs: number
  }) => string | null
  /** Epoch ms clock (default `Date.now`). */
  readonly now?: () => number
  /** [0, 1) randomness for reconnect jitter (default `Math.random`). */
  readonly random?: () => number
  /** Makes prompt ids (default `crypto.randomUUID`, as ComfyUI does). */
  readonly newPromptId?: () => string
  readonly logger?: Logger
  /** Longest wait for ComfyUI's response headers or WebSocket handshake, ms (default 60 000). */
  readonly upstreamTimeoutMs?: number
  /** Backoff of upstream socket reconnects (default 250 ms doubling to 10 s, 50 % jitter). */
  readonly reconnect?: ReconnectOptions
  /** How long an id with no prompt in flight and no downstream socket keeps its upstream socket (default 10 000 ms). */
  readonly idleCloseMs?: number
  /** Bytes queued for one downstream socket beyond which it is dropped (default 16 MiB). */
  readonly downstreamHighWaterMarkBytes?: number
  /** Largest POST /prompt body the gateway buffers (default 256 MiB); larger ones get 413. */
  /**
   * Fail-closed check of every POST /prompt, before anything is forwarded: a reason string refuses the prompt
   * with 503 (e.g. the audit store's spool is full, so the run would go unrecorded). Must answer synchronously:
   * the proxy path never waits for the store.
   */
  readonly refusePrompt?: () => string | null
  readonly maxPromptBytes?: number
  /** Largest request body of a tapped action (uploads) handed to the tap (default 256 MiB); the stream is not limited. */
  readonly maxTapBodyBytes?: number
  /**
   * Largest `/history`, `/queue` or jobs answer the gateway buffers to show the client its own client id
   * (default 64 MiB); a larger one is streamed unchanged, with a warning.
   */
  readonly maxRewriteBytes?: number
  /** Called when a request's response is done (metrics): method, a low-cardinality route label, status, seconds. */
  readonly onRequestDone?: (e: { method: string; route: string; status: number; seconds: number }) => void
  /**
   * Longest a client may take to send a request's headers, ms (default 20 000): then 408 and the connection
   * is closed, so a slowloris client cannot hold connections open (issue 9 class 5).
   */
  readonly headersTimeoutMs?: number
  /** Longest a client may take to send a whole request, body included, ms (default 300 000; 0 = no limit). */
  readonly requestTimeoutMs?: number
  /**
   * How long a connection on which no request has been admitted may stay idle, ms (default 30 000): a
   * connection that sent nothing, or only requests the guard refused, is closed then.
   */
  readonly unauthenticatedIdleMs?: number
  /** Refuse downstream `/ws` connects whose Origin does not match Host on a loopback Host, as ComfyUI does (default true). */
  readonly checkWebSocketOrigin?: boolean
}

/** ComfyUI's routes by their first path segment(s): a small, fixed label set for metrics. */
const ROUTE_LABELS = new Set([
  '/prompt',
  '/queue',
  '/history',
  '/interrupt',
  '/free',
  '/view',
  '/view_metadata',
  '/upload',
  '/object_info',
  '/system_stats',
  '/models',
  '/embeddings',
  '/extensions',
  '/features',
  '/settings',
  '/userdata',
  '/users',
  '/internal',
  '/jobs',
  '/ws',
  '/i18n',
  '/workflow_templates',
  '/global_subgraphs',
  '/manager',
  '/_audit',
])

/** `/api/history/abc` → `/history`; unknown paths → `other` (so labels never carry ids). */
export function routeLabel(pathname: string): string {
  const parts = pathname.split('/').filter(Boolean)
  while (parts[0] === 'api') parts.shift()
  const first = parts.length ? `/${parts[0]}` : '/'
  if (first === '/') return '/'
  return ROUTE_LABELS.has(first) ? first : 'other'
}

/** A running gateway. */
export interface Gateway {
  /** `http://host:port` the gateway listens on. */
  readonly url: string
  readonly port: number
  /** Whether ComfyUI's WebSocket endpoint is reachable right now. */
  readonly upstreamHealthy: boolean
  /** The namespaced client ids the gateway holds upstream sockets for. */
  readonly upstreamClientIds: string[]
  /** The id of the gateway's observer socket (its frames reach the tap as well). */
  readonly observerClientId: string
  /** Listens for upstream health changes; returns a function that removes the listener. */
  on(event: 'upstream', listener: (e: { healthy: boolean }) => void): () => void
  /** Stops listening, closes sockets, waits up to `drainMs` (default 5000) for requests in progress. */
  close(opts?: { drainMs?: number }): Promise<void>
}

const PROMPT_PATHS = new Set(['/prompt', '/api/prompt'])
const WS_PATHS = new Set(['/ws', '/api/ws'])
const ACTION_ROUTES = new Map<string, 'interrupt' | 'queue' | 'history' | 'upload' | 'free'>([
  ['/interrupt', 'interrupt'],
  ['/queue', 'queue'],
  ['/history', 'history'],
  ['/free', 'free'],
  ['/upload/image', 'upload'],
  ['/upload/mask', 'upload'],
])
const MAX_TAPPED_RESPONSE_BYTES = 1 << 20
/** Longest a prompt waits for its new upstream socket before it is forwarded anyway. */
const SOCKET_READY_WAIT_MS = 10_000
/** Up to this many `/api/jobs` items are looked up one by one in ComfyUI's history; beyond, all of it at once. */
const MAX_SINGLE_LOOKUPS = 50
const LOOKUP_CONCURRENCY = 8
const EMPTY = Buffer.alloc(0)
const JSON_TYPE = 'application/json; charset=utf-8'

function isAuditPath(pathname: string): boolean {
  return pathname === '/_audit' || pathname.startsWith('/_audit/')
}

function defaultIdentify(req: IncomingMessage): Submitter {
  return {
    user: 'local',
    auth_method: 'none',
    client_address: req.socket.remoteAddress ?? null,
    user_agent: req.headers['user-agent'] ?? null,
    client_id: null,
  }
}

function pyQuote(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
  )
}

function errorBody(type: string, message: string, details: string): string {
  return `{"error": {"type": ${pyQuote(type)}, "message": ${pyQuote(message)}, "details": ${pyQuote(details)}, "extra_info": {}}, "node_errors": {}}`
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const buf = Buffer.from(body, 'utf8')
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': String(buf.length), ...extra })
  res.end(buf)
}

interface ForwardOptions {
  /** Send this body instead of streaming the request's. */
  readonly body?: Buffer
  /** Keep up to this many request bytes (as they stream past) for the tap. */
  readonly collectRequestBytes?: number
  /** Keep up to this many response bytes for the tap. */
  readonly collectResponseBytes?: number
  /** Buffer a 200 answer of up to `limit` bytes and send what `apply` makes of it instead. */
  readonly rewrite?: { readonly limit: number; readonly apply: (body: Buffer) => Promise<Buffer> }
}

interface ForwardResult {
  /** ComfyUI's status, or the gateway's (503/504) when ComfyUI could not answer. */
  readonly status: number
  /** The request body as collected (null when over the limit). */
  readonly requestBody: Buffer | null
  /** The response body as collected (null when over the limit or not collected). */
  readonly responseBody: Buffer | null
  /** Why ComfyUI gave no answer. */
  readonly error?: string
}

/** Collects chunks up to a limit; past it, gives up and reports null. */
class Collector {
  readonly #limit: number
  #chunks: Buffer[] | null = []
  #size = 0
  constructor(limit: number) {
    this.#limit = limit
  }
  push(c: Buffer): void {
    if (this.#chunks === null) return
    this.#size += c.length
    if (this.#size > this.#limit) this.#chunks = null
    else this.#chunks.push(c)
  }
  result(): Buffer | null {
    return this.#chunks === null ? null : Buffer.concat(this.#chunks, this.#size)
  }
}

/**
 * Starts the gateway: an HTTP + WebSocket reverse proxy in front of ComfyUI that forwards every route,
 * streams bodies both ways, and reports prompts, actions and every upstream WebSocket frame to `tap`.
 *
 * @example
 * const gw = await createGateway({ upstreamUrl: 'http://127.0.0.1:8188', port: 8189, tap })
 * // point browsers and API clients at gw.url
 * await gw.close()
 */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const upstream = new URL(options.upstreamUrl)
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') {
    throw new Error(`createGateway: upstreamUrl must be http(s), got ${options.upstreamUrl}`)
  }
  const secure = upstream.protocol === 'https:'
  const transport = secure ? https : http
  const agent = new transport.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 })
  const upstreamPrefix = upstream.pathname.replace(/\/+$/, '')
  const upstreamHost = upstream.host
  const upstreamOrigin = upstream.origin
  const wsUrl = `${secure ? 'wss' : 'ws'}://${upstream.host}${upstreamPrefix}/ws`

  const tap = options.tap
  const now = options.now ?? Date.now
  const logger = options.logger ?? silentLogger
  const identify = options.identify ?? defaultIdentify
  const newPromptId = options.newPromptId ?? randomUUID
  const timeoutMs = options.upstreamTimeoutMs ?? 60_000
  const maxPromptBytes = options.maxPromptBytes ?? 256 * 1024 * 1024
  const maxTapBodyBytes = options.maxTapBodyBytes ?? 256 * 1024 * 1024
  const checkOrigin = options.checkWebSocketOrigin ?? true
  const maxRewriteBytes = options.maxRewriteBytes ?? 64 * 1024 * 1024
  const listeners = new Set<(e: { healthy: boolean }) => void>()

  const safeTap = (what: string, call: () => void): void => {
    try {
      call()
    } catch (error) {
      logger.error(`gateway: capture tap threw in ${what}`, { error: String(error) })
    }
  }

  /** One GET to ComfyUI (features, queue, history), bounded by the upstream timeout and `limitBytes`. */
  const getUpstream = (path: string, limitBytes = Infinity): Promise<Buffer | null> =>
    new Promise((resolve) => {
      const req = transport.request(
        { host: upstream.hostname, port: upstream.port, path: upstreamPrefix + path, agent, method: 'GET' },
        (res) => {
          const chunks = new Collector(limitBytes)
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve(res.statusCode === 200 ? chunks.result() : null))
          res.on('error', () => resolve(null))
        },
      )
      req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')))
      req.on('error', () => resolve(null))
      req.end()
    })

  const hub = new SocketHub({
    wsUrl,
    tap,
    now,
    logger,
    random: options.random ?? Math.random,
    reconnect: options.reconnect ?? {},
    handshakeTimeoutMs: timeoutMs,
    idleCloseMs: options.idleCloseMs ?? 10_000,
    highWaterMarkBytes: options.downstreamHighWaterMarkBytes ?? 16 * 1024 * 1024,
    fetchFeatures: async () => {
      const body = await getUpstream('/features')
      return body === null ? null : body.toString('utf8').trim()
    },
    fetchQueue: () => getUpstream('/queue'),
    state: options.state,
    onHealth: (healthy) => {
      for (const l of listeners) {
        try {
          l({ healthy })
        } catch (error) {
          logger.error('gateway: upstream listener threw', { error: String(error) })
        }
      }
    },
  })

  /** Proxies one request to ComfyUI and streams the answer back. Never rejects. */
  const forward = (req: IncomingMessage, res: ServerResponse, opts: ForwardOptions): Promise<ForwardResult> =>
    new Promise((resolve) => {
      const reqCollector =
        opts.collectRequestBytes !== undefined ? new Collector(opts.collectRequestBytes) : null
      const resCollector =
        opts.collectResponseBytes !== undefined ? new Collector(opts.collectResponseBytes) : null
      const headers = forwardRequestHeaders(req, {
        upstreamHost,
        upstreamOrigin,
        contentLength: opts.body?.length,
      })
      let settled = false
      const finish = (r: ForwardResult): void => {
        if (settled) return
        settled = true
        resolve(r)
      }
      const upReq = transport.request({
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: upstreamPrefix + (req.url ?? '/'),
        headers,
        agent,
      })
      const headerTimer = setTimeout(
        () => upReq.destroy(new Error('ComfyUI did not answer in time')),
        timeoutMs,
      )
      headerTimer.unref()
      let gotResponse = false
      upReq.on('response', (upRes) => {
        gotResponse = true
        clearTimeout(headerTimer)
        const status = upRes.statusCode ?? 502
        const encoding = upRes.headers['content-encoding']
        if (opts.rewrite && status === 200 && (encoding === undefined || encoding === 'identity')) {
          bufferAndRewrite(upRes, res, opts.rewrite, finish, req.url)
          return
        }
        if (!res.headersSent)
          res.writeHead(status, upRes.statusMessage, forwardResponseHeaders(upRes.rawHeaders))
        if (resCollector) upRes.on('data', (c: Buffer) => resCollector.push(c))
        upRes.pipe(res)
        upRes.on('end', () =>
          finish({
            status,
            requestBody: reqCollector?.result() ?? opts.body ?? null,
            responseBody: resCollector?.result() ?? null,
          }),
        )
        // Aborted mid-body (client or ComfyUI went away): settle anyway so the tap still hears of it.
        upRes.on('close', () =>
          finish({
            status,
            requestBody: reqCollector?.result() ?? null,
            responseBody: null,
            error: 'response aborted',
          }),
        )
        upRes.on('error', (error) => {
          res.destroy()
          finish({
            status,
            requestBody: reqCollector?.result() ?? null,
            responseBody: null,
            error: error.message,
          })
        })
      })
      upReq.on('error', (error) => {
        clearTimeout(headerTimer)
        if (res.destroyed) {
          // The client went away first and its exchange with ComfyUI was cut (499, as nginx says).
          finish({
            status: 499,
            requestBody: reqCollector?.result() ?? null,
            responseBody: null,
            error: 'client went away',
          })
          return
        }
        const timedOut = error.message === 'ComfyUI did not answer in time'
        const status = timedOut ? 504 : 503
        if (!res.headersSent) {
          sendJson(
            res,
            status,
            errorBody(
              timedOut ? 'upstream_timeout' : 'upstream_unavailable',
              timedOut
                ? 'ComfyUI did not answer in time (comfy-audit gateway)'
                : 'ComfyUI is not reachable (comfy-audit gateway)',
              error.message,
            ),
            { 'Retry-After': '1' },
          )
        } else {
          res.destroy()
        }
        finish({
          status,
          requestBody: reqCollector?.result() ?? null,
          responseBody: null,
          error: error.message,
        })
      })
      upReq.on('close', () => {
        if (!gotResponse)
          finish({
            status: 499,
            requestBody: reqCollector?.result() ?? null,
            responseBody: null,
            error: 'client went away',
          })
      })
      // A client that goes away mid-exchange takes the upstream exchange with it.
      res.on('close', () => {
        if (!res.writableFinished) upReq.destroy()
      })
      if (opts.body !== undefined) {
        upReq.end(opts.body)
      } else {
        if (reqCollector) req.on('data', (c: Buffer) => reqCollector.push(c))
        req.pipe(upReq)
        req.on('error', () => upReq.destroy())
      }
    })

  /**
   * Sends the rewritten answer with a fresh Content-Length and ComfyUI's other headers; an answer over the
   * limit goes out unchanged as it streams.
   */
  const bufferAndRewrite = (
    upRes: IncomingMessage,
    res: ServerResponse,
    rewrite: NonNullable<ForwardOptions['rewrite']>,
    finish: (r: ForwardResult) => void,
    url: string | undefined,
  ): void => {
    const status = upRes.statusCode ?? 200
    const headers = forwardResponseHeaders(upRes.rawHeaders)
    const chunks: Buffer[] = []
    let size = 0
    let ended = false
    const done = (error?: string): void =>
      finish({ status, requestBody: null, responseBody: null, ...(error !== undefined ? { error } : {}) })
    const onData = (c: Buffer): void => {
      size += c.length
      if (size <= rewrite.limit) {
        chunks.push(c)
        return
      }
      logger.warn('gateway: answer too large to rewrite, passed on unchanged', {
        path: stripUrlCredentials(url ?? ''),
        limit: rewrite.limit,
      })
      upRes.off('data', onData)
      if (!res.headersSent) res.writeHead(status, upRes.statusMessage, headers)
      for (const b of chunks) res.write(b)
      res.write(c)
      chunks.length = 0
      upRes.pipe(res)
    }
    upRes.on('data', onData)
    upRes.on('end', () => {
      ended = true
      if (res.headersSent) {
        done()
        return
      }
      const body = Buffer.concat(chunks, size)
      void rewrite
        .apply(body)
        .catch((error: unknown) => {
          logger.error('gateway: rewriting an answer failed, passed on unchanged', {
            path: stripUrlCredentials(url ?? ''),
            error: String(error),
          })
          return body
        })
        .then((out) => {
          if (res.destroyed) return done('client went away')
          const kept: string[] = []
          for (let i = 0; i < headers.length; i += 2)
            if (headers[i]!.toLowerCase() !== 'content-length') kept.push(headers[i]!, headers[i + 1]!)
          kept.push('Content-Length', String(out.length))
          res.writeHead(status, upRes.statusMessage, kept)
          res.end(out)
          done()
        })
        .catch((error: unknown) => {
          logger.error('gateway: sending a rewritten answer failed', {
            path: stripUrlCredentials(url ?? ''),
            error: String(error),
          })
          res.destroy()
          done(String(error))
        })
    })
    upRes.on('close', () => {
      if (ended) return
      res.destroy()
      done('response aborted')
    })
    upRes.on('error', (error) => {
      res.destroy()
      done(error.message)
    })
  }

  /** ComfyUI's history entries for `ids` (text, by prompt id): one by one for a few, all of history for many. */
  const lookUpHistory = async (ids: readonly string[]): Promise<Map<string, string>> => {
    if (ids.length > MAX_SINGLE_LOOKUPS) {
      const all = await getUpstream('/history', maxRewriteBytes)
      if (all === null) logger.warn('gateway: could not read ComfyUI history to adjust /api/jobs')
      return all === null ? new Map() : historyEntries(all)
    }
    const entries = new Map<string, string>()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < ids.length) {
        const id = ids[next++]!
        const body = await getUpstream(`/history/${encodeURIComponent(id)}`, maxRewriteBytes)
        const entry = body === null ? undefined : historyEntries(body).get(id)
        if (entry !== undefined) entries.set(id, entry)
      }
    }
    await Promise.all(Array.from({ length: Math.min(LOOKUP_CONCURRENCY, ids.length) }, worker))
    return entries
  }

  const rewriters: Record<ClientViewRoute, (body: Buffer) => Promise<Buffer>> = {
    history: (body) => Promise.resolve(rewriteHistoryAnswer(body)),
    queue: (body) => Promise.resolve(rewriteQueueAnswer(body)),
    job: (body) => Promise.resolve(rewriteJobAnswer(body)),
    jobs: async (body) => {
      const ids = jobListLookups(body)
      return ids.length === 0 ? body : rewriteJobListAnswer(body, await lookUpHistory(ids))
    },
  }

  const handlePrompt = async (
    req: IncomingMessage,
    res: ServerResponse,
    submitter0: Submitter,
  ): Promise<void> => {
    const refused = options.refusePrompt?.() ?? null
    if (refused !== null) {
      // Refused before it reaches ComfyUI, so no run exists that the audit trail would miss.
      req.resume()
      sendJson(
        res,
        503,
        errorBody('audit_unavailable', 'The audit trail cannot record prompts now', refused),
        {
          'Retry-After': '5',
        },
      )
      return
    }
    let body: Buffer
    try {
      body = await readBody(req, maxPromptBytes)
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error
      const promptId = newPromptId()
      const answer = errorBody('request_too_large', 'Prompt body too large', error.message)
      const t = now()
      safeTap('promptSubmitted', () =>
        tap.promptSubmitted({
          promptId,
          upstreamClientId: noClientId(submitter0.user),
          clientId: null,
          body: EMPTY,
          forwardedBody: EMPTY,
          submitter: submitter0,
          timeMs: t,
        }),
      )
      sendJson(res, 413, answer, { Connection: 'close' })
      safeTap('promptAnswered', () =>
        tap.promptAnswered({
          promptId,
          status: 413,
          body: Buffer.from(answer),
          timeMs: now(),
          refusedBy: 'gateway',
        }),
      )
      return
    }
    const user = submitter0.user
    // One time for the seal and the session's queued_at, so a rebuilt prompt.submitted equals the original.
    const submittedAt = now()
    const upstreamOf = (cid: string | null): string =>
      cid === null ? noClientId(user) : namespacedClientId(user, cid)
    const sealSubmission = options.sealSubmission
    const prepared = preparePrompt(body, {
      upstreamClientId: upstreamOf,
      newPromptId,
      ...(sealSubmission
        ? {
            seal: ({ promptId: id, clientId, prompt }) =>
              sealSubmission({
                promptId: id,
                submitter: { ...submitter0, client_id: clientId },
                upstreamClientId: upstreamOf(clientId),
                prompt,
                bodyBytes: body.length,
                timeMs: submittedAt,
              }),
          }
        : {}),
    })
    const { promptId, upstreamClientId } = prepared
    if (prepared.refused !== undefined) {
      // Not JSON by rules as strict as Python's: refused, never relayed unchecked (issue 9 class 2). The body
      // is not handed to the tap: it could not be parsed, so its secrets could not be redacted.
      const answer = errorBody('invalid_json', 'Prompt body is not valid JSON', prepared.refused)
      safeTap('promptSubmitted', () =>
        tap.promptSubmitted({
          promptId,
          upstreamClientId,
          clientId: null,
          body: EMPTY,
          forwardedBody: EMPTY,
          submitter: submitter0,
          timeMs: now(),
        }),
      )
      sendJson(res, 400, answer)
      safeTap('promptAnswered', () =>
        tap.promptAnswered({
          promptId,
          status: 400,
          body: Buffer.from(answer),
          timeMs: now(),
          refusedBy: 'gateway',
        }),
      )
      return
    }
    const submitter: Submitter = { ...submitter0, client_id: prepared.clientId }
    const submitted = {
      promptId,
      upstreamClientId,
      clientId: prepared.clientId,
      body,
      forwardedBody: prepared.forwardedBody,
      submitter,
    }
    if (prepared.promptIdFromClient) {
      const taken = hub.hasInflightPrompt(promptId) || (options.claimPromptId?.(promptId) ?? true) === false
      if (taken) {
        const answer = Buffer.from(
          errorBody(
            'invalid_prompt',
            'Prompt id already used',
            `prompt_id ${pyQuote(promptId)} was already submitted; send the prompt without prompt_id or with a new one`,
          ),
        )
        sendJson(res, 400, answer.toString())
        // Not promptSubmitted/promptAnswered: those are about the session of this id, which is someone else's.
        safeTap('promptRefused', () =>
          tap.promptRefused({
            promptId,
            clientId: prepared.clientId,
            body,
            submitter,
            status: 400,
            answer,
            reason: 'prompt_id_taken',
            timeMs: now(),
          }),
        )
        return
      }
    }
    if (prepared.parsed) {
      // The upstream socket must be registered before ComfyUI can send the prompt's first event.
      const ready = await hub.preparePrompt(
        upstreamClientId,
        promptId,
        Math.min(timeoutMs, SOCKET_READY_WAIT_MS),
      )
      if (!ready && hub.healthy)
        logger.warn('gateway: forwarding a prompt before its upstream socket is ready', { promptId })
    }
    safeTap('promptSubmitted', () => tap.promptSubmitted({ ...submitted, timeMs: submittedAt }))
    const result = await forward(req, res, { body: prepared.forwardedBody, collectResponseBytes: Infinity })
    if (prepared.parsed)
      hub.promptAnswered(upstreamClientId, promptId, result.error !== undefined ? 0 : result.status)
    safeTap('promptAnswered', () =>
      tap.promptAnswered({
        promptId,
        status: result.status,
        body: result.responseBody ?? EMPTY,
        timeMs: now(),
        ...(result.error !== undefined ? { error: result.error } : {}),
      }),
    )
  }

  const handleRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (options.onRequestDone) {
      const started = process.hrtime.bigint()
      const done = options.onRequestDone
      res.once('close', () => {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9
        try {
          done({
            method: req.method ?? 'GET',
            route: routeLabel(pathOf(req.url)),
            status: res.statusCode,
            seconds,
          })
        } catch {
          // Metrics must never break a request.
        }
      })
    }
    // One reading of the target for everything below, and the one forwarded (issue 9 class 1).
    const target = canonicalTarget(req.url)
    if (!target.ok) {
      refused(req, 'http', 400, `bad request target: ${target.reason}`)
      sendJson(res, 400, errorBody('invalid_request_target', 'Bad request target', target.reason), {
        Connection: 'close',
      })
      return
    }
    req.url = target.url
    const admission = options.guard ? await options.guard.admitRequest(req, res) : undefined
    if (admission === null) return
    admitted(req.socket)
    const who = async (): Promise<Submitter> => admission?.submitter ?? (await identify(req))
    const pathname = pathOf(req.url)
    if (isAuditPath(pathname)) {
      const handled = options.auditHandler ? await options.auditHandler(req, res) : false
      if (!handled && !res.headersSent) sendJson(res, 404, '{"error": "not found"}')
      return
    }
    if (closing) {
      sendJson(res, 503, errorBody('gateway_closing', 'The comfy-audit gateway is shutting down', ''), {
        Connection: 'close',
      })
      return
    }
    const method = req.method ?? 'GET'
    if (method === 'POST' && PROMPT_PATHS.has(pathname)) {
      await handlePrompt(req, res, await who())
      return
    }
    const view = clientViewRoute(method, pathname)
    if (view !== null) {
      // ComfyUI shows the ids the gateway gave it: show the client what ComfyUI would have shown it.
      const filter = admission?.filterAnswer
      const apply = filter
        ? async (body: Buffer) => rewriters[view](await filter(view, body))
        : rewriters[view]
      await forward(req, res, { rewrite: { limit: maxRewriteBytes, apply } })
      return
    }
    if (method === 'PATCH' && pathname === '/internal/logs/subscribe') {
      // ComfyUI sends `logs` events to the id in the body: make it the namespaced id the client's socket has.
      const submitter = await who()
      const body = rewriteStringMember(admission?.body ?? (await readBody(req, 1 << 20)), 'clientId', (id) =>
        namespacedClientId(submitter.user, id),
      )
      await forward(req, res, { body })
      return
    }
    const kind =
      method === 'POST'
        ? ACTION_ROUTES.get(pathname.startsWith('/api/') ? pathname.slice(4) : pathname)
        : undefined
    if (kind === undefined) {
      await forward(req, res, admission?.body !== undefined ? { body: admission.body } : {})
      return
    }
    const submitter = await who()
    const r = await forward(req, res, {
      ...(admission?.body !== undefined
        ? { body: admission.body }
        : { collectRequestBytes: maxTapBodyBytes }),
      collectResponseBytes: MAX_TAPPED_RESPONSE_BYTES,
    })
    if (r.requestBody === null) logger.warn('gateway: action body too large for the tap', { path: pathname })
    safeTap('action', () =>
      tap.action({
        kind,
        method,
        path: pathname,
        body: r.requestBody ?? EMPTY,
        status: r.status,
        responseBody: r.responseBody,
        submitter,
        timeMs: now(),
      }),
    )
  }

  const headersTimeoutMs = options.headersTimeoutMs ?? 20_000
  const requestTimeoutMs = options.requestTimeoutMs ?? 300_000
  const unauthenticatedIdleMs = options.unauthenticatedIdleMs ?? 30_000
  if (requestTimeoutMs > 0 && headersTimeoutMs > requestTimeoutMs) {
    throw new Error(
      `createGateway: headersTimeoutMs (${headersTimeoutMs}) must not exceed requestTimeoutMs (${requestTimeoutMs})`,
    )
  }
  /** Sockets on which a request was admitted: their idleness is the keep-alive timeout's business. */
  const trusted = new WeakSet<Duplex>()
  const admitted = (socket: Duplex): void => {
    if (trusted.has(socket)) return
    trusted.add(socket)
    ;(socket as Socket).setTimeout(0)
  }

  const activeResponses = new Set<ServerResponse>()
  let drained: (() => void) | null = null
  const server = http.createServer(
    {
      // Both are enforced by Node's connection check, which runs every connectionsCheckingInterval: make it
      // fine enough for the timeout to mean what it says.
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeoutMs / 4))),
    },
    (req, res) => {
      activeResponses.add(res)
      res.on('close', () => {
        activeResponses.delete(res)
        if (activeResponses.size === 0) drained?.()
      })
      handleRequest(req, res).catch((error: unknown) => {
        if (error instanceof BodyTooLarge) {
          sendJson(res, 413, errorBody('request_too_large', 'Request body too large', error.message), {
            Connection: 'close',
          })
          return
        }
        logger.error('gateway: request failed', {
          path: stripUrlCredentials(req.url ?? ''),
          error: String(error),
        })
        sendJson(
          res,
          500,
          errorBody('gateway_error', 'The comfy-audit gateway failed on this request', String(error)),
        )
      })
    },
  )
  server.on('connection', (socket: Socket) => {
    // Until a request on it is admitted, an idle connection is closed: a client that opens connections and
    // sends nothing, or only refused requests, cannot hold them (issue 9 class 5).
    socket.setTimeout(unauthenticatedIdleMs, () => {
      if (!trusted.has(socket)) socket.destroy()
    })
  })

  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: options.maxClientFrameBytes ?? 100 * 1024 * 1024,
  })
  const tunnels = new Set<Duplex>()

  const rejectUpgrade = (socket: Duplex, status: number, reason: string): void => {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  }

  /** Any other upgrade (a custom node's own WebSocket): a byte tunnel to ComfyUI. */
  const tunnel = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const upReq = transport.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: upstreamPrefix + (req.url ?? '/'),
      headers: forwardRequestHeaders(req, { upstreamHost, upstreamOrigin, keepUpgrade: true }),
    })
    upReq.setTimeout(timeoutMs, () => upReq.destroy(new Error('timeout')))
    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      upReq.setTimeout(0)
      let head101 = `HTTP/1.1 ${upRes.statusCode ?? 101} ${upRes.statusMessage ?? 'Switching Protocols'}\r\n`
      for (let i = 0; i < upRes.rawHeaders.length; i += 2)
        head101 += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`
      socket.write(head101 + '\r\n')
      if (upHead.length > 0) socket.write(upHead)
      if (head.length > 0) upSocket.write(head)
      tunnels.add(socket)
      socket.on('close', () => tunnels.delete(socket))
      upSocket.on('error', () => socket.destroy())
      socket.on('error', () => upSocket.destroy())
      upSocket.pipe(socket).pipe(upSocket)
    })
    upReq.on('response', (upRes) => {
      // ComfyUI refused the upgrade: pass its answer on.
      let text = `HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}\r\n`
      const hs = forwardResponseHeaders(upRes.rawHeaders)
      for (let i = 0; i < hs.length; i += 2) text += `${hs[i]}: ${hs[i + 1]}\r\n`
      socket.write(text + 'Connection: close\r\n\r\n')
      upRes.pipe(socket)
    })
    upReq.on('error', () => rejectUpgrade(socket, 503, 'Service Unavailable'))
    upReq.end()
  }

  const refused = (
    req: IncomingMessage,
    transport: GatewayRefusal['transport'],
    status: number,
    reason: string,
  ): void => {
    if (!options.onRefused) return
    const raw = req.url ?? '/'
    const q = raw.indexOf('?')
    const ua = req.headers['user-agent']
    try {
      options.onRefused({
        status,
        reason,
        method: (req.method ?? 'GET').toUpperCase(),
        path: (q < 0 ? raw : raw.slice(0, q)).slice(0, 256),
        transport,
        client_address: req.socket.remoteAddress ?? null,
        user_agent: typeof ua === 'string' ? ua : null,
      })
    } catch (err) {
      logger.warn('gateway: refusal not recorded', { error: String(err) })
    }
  }

  const handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const target = canonicalTarget(req.url)
    if (!target.ok) {
      refused(req, 'websocket', 400, `bad request target: ${target.reason}`)
      return rejectUpgrade(socket, 400, 'Bad Request')
    }
    req.url = target.url
    const pathname = target.path
    if (isAuditPath(pathname)) return rejectUpgrade(socket, 404, 'Not Found')
    if (closing) return rejectUpgrade(socket, 503, 'Service Unavailable')
    const admission = options.guard ? await options.guard.admitUpgrade(req, socket) : undefined
    if (admission === null) return
    admitted(socket)
    if (!WS_PATHS.has(pathname)) return tunnel(req, socket, head)
    const host = req.headers.host
    const origin = req.headers.origin
    if (checkOrigin && host && origin && isLoopbackHost(host) && !originMatchesHost(host, origin)) {
      logger.warn('gateway: refused a WebSocket whose Origin does not match Host', {
        host,
        origin: stripUrlCredentials(origin),
      })
      refused(req, 'websocket', 403, 'cross-site WebSocket refused (Origin does not match Host)')
      return rejectUpgrade(socket, 403, 'Forbidden')
    }
    // A direct client cannot connect while ComfyUI is down either; it will retry.
    if (!hub.healthy) return rejectUpgrade(socket, 503, 'Service Unavailable')
    const submitter = admission?.submitter ?? (await identify(req))
    const clientId =
      new URL(req.url ?? '/', 'http://gateway').searchParams.get('clientId') || generateSocketId()
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing) {
        ws.close(1001, 'gateway shutting down')
        return
      }
      hub.attachDownstream(ws, clientId, submitter.user)
    })
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    handleUpgrade(req, socket, head).catch((error: unknown) => {
      logger.error('gateway: upgrade failed', {
        path: stripUrlCredentials(req.url ?? ''),
        error: String(error),
      })
      rejectUpgrade(socket, 500, 'Internal Server Error')
    })
  })

  let closing = false
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 8189, options.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  await hub.restore()

  const address = server.address() as AddressInfo
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closePromise: Promise<void> | null = null

  return {
    url: `http://${hostForUrl}:${address.port}`,
    port: address.port,
    get upstreamHealthy() {
      return hub.healthy
    },
    get upstreamClientIds() {
      return hub.clientIds
    },
    get observerClientId() {
      return hub.observerClientId
    },
    on(_event: 'upstream', listener: (e: { healthy: boolean }) => void) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    close(opts?: { drainMs?: number }) {
      closePromise ??= (async () => {
        closing = true
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        await hub.close()
        if (activeResponses.size > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, opts?.drainMs ?? 5000)
            timer.unref()
            drained = () => {
              clearTimeout(timer)
              resolve()
            }
          })
        }
        for (const ws of wss.clients) ws.terminate()
        for (const s of tunnels) s.destroy()
        server.closeAllConnections()
        wss.close()
        agent.destroy()
        await serverClosed
      })()
      return closePromise
    },
  }
}

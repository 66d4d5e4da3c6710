/**
 * The proxy exchange: one request to ComfyUI, its answer streamed back, with the bytes the taps need
 * collected on the way. Modelled on Hono's `helper/proxy`: a small helper that knows only how to forward,
 * and routes (prompt, client view, actions) composed around it.
 */
import http from 'node:http'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../audit/report-error.js'
import { stripUrlCredentials } from '../capture/url-credentials.js'
import { comfyErrorBody } from '../comfyui/py-json.js'
import { sendJson } from '../comfyui/send-json.js'
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js'

/** Where ComfyUI is, read once from its base URL. */
export interface UpstreamTarget {
  readonly transport: typeof http | typeof https
  readonly agent: http.Agent
  readonly hostname: string
  readonly port: string
  /** The base URL's path without a trailing slash (`''` or `/comfy`). */
  readonly prefix: string
  /** `host:port`, for the forwarded `Host`. */
  readonly host: string
  /** `http://host:port`, for the forwarded `Origin`. */
  readonly origin: string
  /** ComfyUI's WebSocket endpoint, prefix included. */
  readonly wsUrl: string
  /** The base URL, prefix kept. */
  readonly baseUrl: string
}

/** How long a kept-alive socket to ComfyUI may stay idle before the gateway closes it. */
const IDLE_UPSTREAM_SOCKET_MILLIS = 4000

/** Reads `upstreamUrl`; throws (bad startup config) when it is not http(s). */
export function upstreamTarget(upstreamUrl: string): UpstreamTarget {
  const upstream = new URL(upstreamUrl)
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') {
    throw new Error(`createGateway: upstreamUrl must be http(s), got ${upstreamUrl}`)
  }
  const secure = upstream.protocol === 'https:'
  const transport = secure ? https : http
  const prefix = upstream.pathname.replace(/\/+$/, '')
  return {
    transport,
    // `timeout` closes an idle kept-alive socket before ComfyUI does (aiohttp after 75 s; a Node server after
    // the `Keep-Alive: timeout=` it announces, which Node's agent honours only when `timeout` is set). Without
    // it a request sent on a socket the server is closing fails with "socket hang up" and the client gets 503.
    agent: new transport.Agent({
      keepAlive: true,
      maxSockets: 256,
      maxFreeSockets: 64,
      timeout: IDLE_UPSTREAM_SOCKET_MILLIS,
    }),
    hostname: upstream.hostname,
    port: upstream.port,
    prefix,
    host: upstream.host,
    origin: upstream.origin,
    wsUrl: `${secure ? 'wss' : 'ws'}://${upstream.host}${prefix}/ws`,
    baseUrl: `${upstream.origin}${prefix}`,
  }
}

/** Options of one {@link Forward} call. */
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

/** How one exchange went. */
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

/** Proxies one request to ComfyUI and streams the answer back. Never rejects. */
export type Forward = (
  req: IncomingMessage,
  res: ServerResponse,
  opts: ForwardOptions,
) => Promise<ForwardResult>

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

const NO_ANSWER_IN_TIME = 'ComfyUI did not answer in time'

/** The gateway's own answer when ComfyUI gave none (504 on timeout, else 503). */
function answerUnreachable(res: ServerResponse, error: Error): number {
  const timedOut = error.message === NO_ANSWER_IN_TIME
  const status = timedOut ? 504 : 503
  if (!res.headersSent) {
    sendJson(
      res,
      status,
      comfyErrorBody(
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
  return status
}

/**
 * Makes the forwarder for `target`: headers fixed up (forward-headers.ts), a deadline for ComfyUI's
 * response headers of `timeoutMs`, and a client that goes away taking the upstream exchange with it.
 */
export function createForward(target: UpstreamTarget, timeoutMs: number, logger: Logger): Forward {
  return (req, res, opts) =>
    new Promise((resolve) => {
      const reqCollector =
        opts.collectRequestBytes !== undefined ? new Collector(opts.collectRequestBytes) : null
      const resCollector =
        opts.collectResponseBytes !== undefined ? new Collector(opts.collectResponseBytes) : null
      const headers = forwardRequestHeaders(req, {
        upstreamHost: target.host,
        upstreamOrigin: target.origin,
        contentLength: opts.body?.length,
      })
      let settled = false
      const finish = (r: ForwardResult): void => {
        if (settled) return
        settled = true
        resolve(r)
      }
      const failed = (status: number, error: string): ForwardResult => ({
        status,
        requestBody: reqCollector?.result() ?? null,
        responseBody: null,
        error,
      })
      const upReq = target.transport.request({
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: target.prefix + (req.url ?? '/'),
        headers,
        agent: target.agent,
      })
      const headerTimer = setTimeout(() => upReq.destroy(new Error(NO_ANSWER_IN_TIME)), timeoutMs)
      headerTimer.unref()
      let gotResponse = false
      upReq.on('response', (upRes) => {
        gotResponse = true
        clearTimeout(headerTimer)
        const status = upRes.statusCode ?? 502
        const encoding = upRes.headers['content-encoding']
        if (opts.rewrite && status === 200 && (encoding === undefined || encoding === 'identity')) {
          bufferAndRewrite(upRes, res, opts.rewrite, finish, req.url, logger)
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
        upRes.on('close', () => finish(failed(status, 'response aborted')))
        upRes.on('error', (error) => {
          res.destroy()
          finish(failed(status, error.message))
        })
      })
      upReq.on('error', (error) => {
        clearTimeout(headerTimer)
        // The client went away first and its exchange with ComfyUI was cut (499, as nginx says).
        if (res.destroyed) finish(failed(499, 'client went away'))
        else finish(failed(answerUnreachable(res, error), error.message))
      })
      upReq.on('close', () => {
        if (!gotResponse) finish(failed(499, 'client went away'))
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
}

/**
 * Sends the rewritten answer with a fresh Content-Length and ComfyUI's other headers; an answer over the
 * limit goes out unchanged as it streams.
 */
function bufferAndRewrite(
  upRes: IncomingMessage,
  res: ServerResponse,
  rewrite: NonNullable<ForwardOptions['rewrite']>,
  finish: (r: ForwardResult) => void,
  url: string | undefined,
  logger: Logger,
): void {
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

/**
 * The one HTTP client for ComfyUI's own GETs (features, queue, history, system stats, object info, files).
 * Every path is resolved under the configured base URL, path prefix included, so a ComfyUI mounted at
 * `http://host/comfy/` is asked at `/comfy/queue`, never at `/queue`. Failures (refused connection, timeout,
 * a non-2xx status, a body over the limit, JSON that does not parse or fit the schema) are values, never
 * throws: an audit gateway must keep proxying when ComfyUI answers badly.
 */
import http from 'node:http'
import https from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { z } from 'zod'
import { parseWith } from './schemas.js'

/** What a GET gave: the value, or why there is none (with ComfyUI's status when it answered). */
type ComfyResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: string; readonly status?: number }

/** An answer whose body is read by the caller (`/view`). */
interface ComfyStream {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  /** The body; it errors if the deadline passes before it ends. */
  readonly body: IncomingMessage
}

/** Per-request options. */
interface ComfyRequestOptions {
  /** Deadline for the whole exchange, body included, ms (default: the client's). */
  readonly timeoutMillis?: number
  /** Largest body read into memory, bytes (default unlimited); a larger one is a failure. */
  readonly limitBytes?: number
}

/** Options of {@link createComfyClient}. */
interface ComfyClientOptions {
  /** ComfyUI's base URL, `http(s)://host:port` with an optional path prefix (`/comfy/`). */
  readonly baseUrl: string
  /** Default deadline of one exchange, ms (default 60 000). */
  readonly timeoutMillis?: number
  /** Connection pool to use (default Node's global agent of the URL's protocol). */
  readonly agent?: http.Agent
}

/** See the module comment. */
export interface ComfyClient {
  /** The base URL without a trailing slash, prefix kept. */
  readonly baseUrl: string
  /** The full URL of `path` (which starts with `/` and may carry a query). */
  url(path: string): string
  /** The body of a 2xx answer to `GET path`. */
  get(path: string, options?: ComfyRequestOptions): Promise<ComfyResult<Buffer>>
  /** A 2xx answer read with the lossless JSON parser and checked against `schema`. */
  getJson<T>(schema: z.ZodType<T>, path: string, options?: ComfyRequestOptions): Promise<ComfyResult<T>>
  /** A 2xx answer whose body the caller streams; `limitBytes` does not apply. */
  stream(path: string, options?: ComfyRequestOptions): Promise<ComfyResult<ComfyStream>>
}

/**
 * Makes a client for the ComfyUI at `baseUrl`. Throws (bad startup config) when it is not an http(s) URL.
 *
 * @example
 * const comfy = createComfyClient({ baseUrl: 'http://127.0.0.1:8188/comfy/' })
 * const stats = await comfy.getJson(zSystemStats, '/system_stats', { timeoutMillis: 2000 })
 * if (stats.ok) console.log(stats.value.system.comfyui_version)
 */
export function createComfyClient(options: ComfyClientOptions): ComfyClient {
  const base = new URL(options.baseUrl)
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new Error(`createComfyClient: baseUrl must be http(s), got ${base.protocol}`)
  const transport = base.protocol === 'https:' ? https : http
  const prefix = base.pathname.replace(/\/+$/, '')
  const hostname = base.hostname.replace(/^\[|\]$/g, '')
  const defaultTimeout = options.timeoutMillis ?? 60_000
  const baseUrl = `${base.origin}${prefix}`

  const open = (path: string, timeoutMillis: number): Promise<ComfyResult<ComfyStream>> =>
    new Promise((resolve) => {
      let settled = false
      const settle = (r: ComfyResult<ComfyStream>): void => {
        if (settled) return
        settled = true
        resolve(r)
      }
      const req = transport.request({
        host: hostname,
        port: base.port,
        path: prefix + path,
        method: 'GET',
        ...(options.agent ? { agent: options.agent } : {}),
      })
      const timer = setTimeout(
        () => req.destroy(new Error(`ComfyUI did not answer GET ${path} in ${timeoutMillis} ms`)),
        timeoutMillis,
      )
      timer.unref()
      req.on('error', (error) => {
        clearTimeout(timer)
        settle({ ok: false, reason: error.message })
      })
      req.on('response', (res) => {
        res.once('close', () => clearTimeout(timer))
        const status = res.statusCode ?? 0
        if (status < 200 || status > 299) {
          res.resume()
          settle({ ok: false, status, reason: `GET ${path} answered ${status}` })
          return
        }
        settle({ ok: true, value: { status, headers: res.headers, body: res } })
      })
      req.end()
    })

  const get = async (path: string, opts: ComfyRequestOptions = {}): Promise<ComfyResult<Buffer>> => {
    const opened = await open(path, opts.timeoutMillis ?? defaultTimeout)
    if (!opened.ok) return opened
    const limit = opts.limitBytes ?? Infinity
    const body = opened.value.body
    return new Promise((resolve) => {
      const chunks: Buffer[] = []
      let size = 0
      body.on('data', (c: Buffer) => {
        size += c.length
        if (size > limit) {
          body.destroy()
          resolve({ ok: false, reason: `GET ${path}: answer larger than ${limit} bytes` })
        } else chunks.push(c)
      })
      body.on('end', () => resolve({ ok: true, value: Buffer.concat(chunks, size) }))
      body.on('error', (error) => resolve({ ok: false, reason: error.message }))
      body.on('close', () => resolve({ ok: false, reason: `GET ${path}: answer cut short` }))
    })
  }

  return {
    baseUrl,
    url: (path) => baseUrl + path,
    get,
    async getJson(schema, path, opts) {
      const body = await get(path, opts)
      if (!body.ok) return body
      const parsed = parseWith(schema, body.value)
      return parsed.ok ? parsed : { ok: false, reason: `GET ${path}: ${parsed.reason}` }
    },
    stream: (path, opts) => open(path, opts?.timeoutMillis ?? defaultTimeout),
  }
}

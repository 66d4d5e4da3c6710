/**
 * Retries for HTTP sinks, in one place: exponential backoff with jitter, `Retry-After`, an overall deadline.
 * Only 429, 5xx and network errors are retried; any other answer is final. What is still failing at the
 * deadline goes back to the caller as `retryable`, and the batch processor keeps (spools) the batch, so a
 * receiver that is down for an hour loses nothing.
 */
import type { Logger } from '../audit/report-error.js'

/** An HTTP answer as the transport needs it; header names lower-case. */
export interface TransportResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly body: string
}

/** Sends one request body; throws only for network errors (or when `signal` aborts). */
type SendFunction = (body: string, signal: AbortSignal) => Promise<TransportResponse>

/** Outcome of {@link RetryingTransport.send}. */
type TransportResult =
  | { readonly status: 'success'; readonly response: TransportResponse; readonly attempts: number }
  | {
      readonly status: 'retryable'
      readonly error: Error
      readonly retryInMillis?: number
      readonly response?: TransportResponse
      readonly attempts: number
    }
  | {
      readonly status: 'failure'
      readonly error: Error
      readonly response: TransportResponse
      readonly attempts: number
    }

/** Options of {@link createRetryingTransport}. */
interface RetryingTransportOptions {
  readonly send: SendFunction
  /** Attempts per call, first included (default 5). */
  readonly maxAttempts?: number
  /** Backoff before the second attempt (default 1000 ms); doubles each time. */
  readonly initialBackoffMillis?: number
  /** Longest backoff (default 30 000 ms). */
  readonly maxBackoffMillis?: number
  /** Overall time for one call, attempts and waits included (default 60 000 ms). */
  readonly deadlineMillis?: number
  /** Uniform random in [0, 1) for jitter (default Math.random); tests fix it. */
  readonly random?: () => number
  /** Waits (default: an unref'd timer); rejects or resolves early when `signal` aborts. Tests advance a clock. */
  readonly sleep?: (millis: number, signal: AbortSignal) => Promise<void>
  /** Epoch milliseconds (default Date.now). */
  readonly now?: () => number
}

/** A send function wrapped with retries. */
interface RetryingTransport {
  /** Sends `body` until it succeeds, fails for good, or the deadline / attempts run out. Never throws. */
  send(body: string, signal: AbortSignal): Promise<TransportResult>
}

/** Waits `millis` on an unref'd timer, ending early (resolved) when `signal` aborts. */
function defaultSleep(millis: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const onAbort = (): void => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, millis)
    timer.unref()
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Milliseconds a `Retry-After` value asks to wait (RFC 9110 §10.2.3: delay-seconds or an HTTP-date),
 * or undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, nowMillis: number): number | undefined {
  if (value === undefined) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - nowMillis)
}

/** Whether an HTTP status is worth retrying: 429 Too Many Requests and every 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599)
}

function positive(name: string, value: number, integer = false): number {
  if (!(value > 0) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new RangeError(
      `createRetryingTransport: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${value}`,
    )
  }
  return value
}

/**
 * Wraps a send function with retries.
 * @example
 * const transport = createRetryingTransport({ send: createFetchSend({ url }), deadlineMillis: 30_000 })
 * const result = await transport.send(JSON.stringify(body), signal)
 */
export function createRetryingTransport(options: RetryingTransportOptions): RetryingTransport {
  const maxAttempts = positive('maxAttempts', options.maxAttempts ?? 5, true)
  const initial = positive('initialBackoffMillis', options.initialBackoffMillis ?? 1000)
  const maxBackoff = positive('maxBackoffMillis', options.maxBackoffMillis ?? 30_000)
  const deadlineMillis = positive('deadlineMillis', options.deadlineMillis ?? 60_000)
  const random = options.random ?? Math.random
  const sleep = options.sleep ?? defaultSleep
  const now = options.now ?? Date.now

  // "Equal jitter": half the backoff fixed, half random, so waits spread out but never collapse to zero.
  const backoff = (attempt: number): number => {
    const ceiling = Math.min(maxBackoff, initial * 2 ** (attempt - 1))
    return ceiling / 2 + random() * (ceiling / 2)
  }

  return {
    async send(body, signal) {
      const deadline = now() + deadlineMillis
      let attempt = 0
      for (;;) {
        attempt++
        let response: TransportResponse | undefined
        let error: Error
        try {
          response = await options.send(body, signal)
          const message = `HTTP ${response.status}${response.body ? `: ${response.body.slice(0, 200)}` : ''}`
          error = new Error(message)
        } catch (cause) {
          // Network errors (refused, reset, DNS) and aborts: worth another try.
          response = undefined
          error = cause instanceof Error ? cause : new Error(String(cause))
        }
        if (response !== undefined) {
          if (response.status >= 200 && response.status <= 299)
            return { status: 'success', response, attempts: attempt }
          if (!isRetryableStatus(response.status))
            return { status: 'failure', error, response, attempts: attempt }
        }
        const retryAfter = response ? parseRetryAfter(response.headers['retry-after'], now()) : undefined
        const wait = retryAfter ?? backoff(attempt)
        if (signal.aborted || attempt >= maxAttempts || now() + wait > deadline) {
          return { status: 'retryable', error, retryInMillis: wait, response, attempts: attempt }
        }
        await sleep(wait, signal)
        if (signal.aborted)
          return { status: 'retryable', error, retryInMillis: wait, response, attempts: attempt }
      }
    },
  }
}

/** Options of {@link createFetchSend}. */
interface FetchSendOptions {
  readonly url: string
  /** Default POST. */
  readonly method?: string
  /** Sent with every request (content-type included). */
  readonly headers?: Readonly<Record<string, string>>
  /** Headers computed per attempt (e.g. a signature with a fresh timestamp). */
  readonly headersFor?: (body: string) => Record<string, string>
  /** Replaces the global fetch (tests, or a custom dispatcher). */
  readonly fetch?: typeof globalThis.fetch
}

/**
 * A {@link SendFunction} over Node's built-in fetch (undici). Network errors throw (the transport retries
 * them); every HTTP answer, whatever its status, resolves.
 */
function createFetchSend(options: FetchSendOptions): SendFunction {
  return async (body, signal) => {
    const doFetch = options.fetch ?? globalThis.fetch
    const res = await doFetch(options.url, {
      method: options.method ?? 'POST',
      headers: { ...options.headers, ...options.headersFor?.(body) },
      body,
      signal,
    })
    const headers: Record<string, string> = {}
    res.headers.forEach((value, key) => {
      headers[key] = value
    })
    return { status: res.status, headers, body: await res.text() }
  }
}

/** Credentials for an HTTP sink. */
type HttpAuth =
  | { readonly bearer: string }
  | { readonly basic: { readonly username: string; readonly password: string } }
  | { readonly apiKey: string; readonly header?: string }

/** Headers that carry the credentials (`Authorization` unless `header` names another). */
function authHeaders(auth: HttpAuth | undefined): Record<string, string> {
  if (auth === undefined) return {}
  if ('bearer' in auth) return { authorization: `Bearer ${auth.bearer}` }
  if ('basic' in auth) {
    const token = Buffer.from(`${auth.basic.username}:${auth.basic.password}`).toString('base64')
    return { authorization: `Basic ${token}` }
  }
  // Elasticsearch's convention; other receivers name their header.
  return auth.header
    ? { [auth.header.toLowerCase()]: auth.apiKey }
    : { authorization: `ApiKey ${auth.apiKey}` }
}

/** What every HTTP sink's config has in common. */
export interface HttpSinkConfig {
  /** Full URL to POST to. */
  readonly url: string
  /** Extra headers (e.g. `X-Scope-OrgID`); never logged. */
  readonly headers?: Readonly<Record<string, string>>
  readonly auth?: HttpAuth
  /** Retry policy of the transport. */
  readonly retry?: Omit<RetryingTransportOptions, 'send' | 'random' | 'sleep' | 'now'>
  /** Batch options for the processor the composition root puts in front of the sink. */
  readonly batch?: {
    readonly maxQueueSize?: number
    readonly maxExportBatchSize?: number
    readonly scheduledDelayMillis?: number
    readonly exportTimeoutMillis?: number
    /** Spool quota in bytes (the spool lives under `<data>/spool/<sink name>`). */
    readonly spoolMaxBytes?: number
  }
}

/** What tests (and the composition root) may inject into an HTTP sink. */
export interface HttpSinkOptions {
  /** Replaces the global fetch. */
  readonly fetch?: typeof globalThis.fetch
  readonly random?: () => number
  readonly sleep?: (millis: number, signal: AbortSignal) => Promise<void>
  readonly now?: () => number
  /** Host name reported to receivers (default os.hostname()). */
  readonly hostName?: string
  readonly logger?: Logger
}

/** Builds the transport of an HTTP sink from its config and injected options. */
export function createSinkTransport(
  config: HttpSinkConfig,
  options: HttpSinkOptions,
  fetchOptions: Omit<FetchSendOptions, 'url' | 'headers'> & { contentType: string },
): RetryingTransport {
  const headers = { 'content-type': fetchOptions.contentType, ...config.headers, ...authHeaders(config.auth) }
  const send = createFetchSend({
    url: config.url,
    headers,
    method: fetchOptions.method,
    headersFor: fetchOptions.headersFor,
    fetch: options.fetch,
  })
  return createRetryingTransport({
    ...config.retry,
    send,
    random: options.random,
    sleep: options.sleep,
    now: options.now,
  })
}

/**
 * Every refused request becomes audit evidence (issue 10 item 6), but a flood of refusals must not fill the
 * disk: each (person or client address, reason) has a token bucket. While it has tokens a refusal is recorded
 * on its own (`access.refused`); past that the refusals are counted, and every `summaryIntervalMillis` one
 * `access.refused.summary` per key carries the count, the first and last time and one sample refusal. The
 * number of keys is bounded too: past `maxKeys` new keys share one overflow key, so a flood from many
 * addresses costs memory for at most `maxKeys` of them.
 */
import type { JsonObject } from '../audit/types.js'

/** One refused request or WebSocket upgrade, as the access guard saw it. */
export interface Refusal {
  /** The status answered: 400, 401, 403, 404, 413 or 429. */
  readonly status: number
  /** Why, as answered to the client. */
  readonly reason: string
  readonly method: string
  /** The path only: the query string may carry credentials or a person's file names. */
  readonly path: string
  readonly transport: 'http' | 'websocket'
  /** The authenticated person, when the refusal came after authentication; null otherwise. */
  readonly user: string | null
  readonly role: string | null
  readonly client_address: string | null
  readonly user_agent: string | null
}

/** Options of {@link createRefusalLog}. */
interface RefusalLogOptions {
  /** Appends one gateway event; never throws. */
  readonly record: (kind: 'access.refused' | 'access.refused.summary', payload: JsonObject) => void
  /** Refusals recorded one by one per key before counting starts (default 20). */
  readonly burst?: number
  /** Refill of each key's bucket, refusals per minute (default 6). */
  readonly perMinute?: number
  /** How often counted refusals are summarised, ms (default 60 s; 0: only at {@link RefusalLog.flush}). */
  readonly summaryIntervalMillis?: number
  /** Most keys tracked at once (default 10,000); past it new keys share one overflow key. */
  readonly maxKeys?: number
  /** Epoch ms clock (default `Date.now`). */
  readonly now?: () => number
}

/** See the module comment. */
export interface RefusalLog {
  /** Records or counts one refusal; synchronous, never throws. */
  refused(refusal: Refusal): void
  /** Writes the summaries of everything counted and not yet summarised. */
  flush(): void
  /** Flushes and stops the timer. Idempotent. */
  close(): void
}

interface Bucket {
  tokens: number
  atMs: number
  /** Refusals counted since the last summary. */
  suppressed: number
  firstMs: number
  lastMs: number
  sample: Refusal | null
}

const OVERFLOW_KEY = '\u0000overflow'

function refusalJson(r: Refusal): JsonObject {
  return {
    status: r.status,
    reason: r.reason,
    method: r.method,
    path: r.path,
    transport: r.transport,
    user: r.user,
    role: r.role,
    client_address: r.client_address,
    user_agent: r.user_agent,
  }
}

/** Creates the rate-limited recorder of refusals described in the module comment. */
export function createRefusalLog(options: RefusalLogOptions): RefusalLog {
  const burst = options.burst ?? 20
  const perMinute = options.perMinute ?? 6
  const maxKeys = options.maxKeys ?? 10_000
  const now = options.now ?? Date.now
  const buckets = new Map<string, Bucket>()
  let closed = false

  const refill = (b: Bucket, t: number): void => {
    b.tokens = Math.min(burst, b.tokens + ((t - b.atMs) / 60_000) * perMinute)
    b.atMs = t
  }

  const flush = (): void => {
    const t = now()
    for (const [key, b] of buckets) {
      if (b.suppressed > 0 && b.sample) {
        options.record('access.refused.summary', {
          count: b.suppressed,
          first_at: new Date(b.firstMs).toISOString(),
          last_at: new Date(b.lastMs).toISOString(),
          // The key the refusals were counted under; the overflow key mixes people and reasons.
          user: key === OVERFLOW_KEY ? null : b.sample.user,
          client_address: key === OVERFLOW_KEY ? null : b.sample.client_address,
          reason: key === OVERFLOW_KEY ? null : b.sample.reason,
          overflow: key === OVERFLOW_KEY,
          sample: refusalJson(b.sample),
        })
        b.suppressed = 0
        b.sample = null
      }
      refill(b, t)
      // A full bucket with nothing counted holds no information: forget it, so keys stay bounded over time.
      if (b.tokens >= burst) buckets.delete(key)
    }
  }

  const interval = options.summaryIntervalMillis ?? 60_000
  const timer = interval > 0 ? setInterval(flush, interval) : null
  timer?.unref()

  return {
    refused(refusal) {
      if (closed) return
      const t = now()
      let key = `${refusal.user ?? ''}\u0000${refusal.user === null ? (refusal.client_address ?? '') : ''}\u0000${refusal.reason}`
      if (!buckets.has(key) && buckets.size >= maxKeys) key = OVERFLOW_KEY
      let b = buckets.get(key)
      if (!b) {
        b = { tokens: burst, atMs: t, suppressed: 0, firstMs: t, lastMs: t, sample: null }
        buckets.set(key, b)
      }
      refill(b, t)
      if (b.tokens >= 1 && key !== OVERFLOW_KEY) {
        b.tokens -= 1
        options.record('access.refused', refusalJson(refusal))
        return
      }
      if (b.suppressed === 0) {
        b.firstMs = t
        b.sample = refusal
      }
      b.suppressed++
      b.lastMs = t
    },
    flush,
    close() {
      if (closed) return
      flush()
      closed = true
      if (timer) clearInterval(timer)
    },
  }
}

/**
 * The guard's own reads from ComfyUI, in one place behind a narrow interface, so that the access guard does
 * not know how ComfyUI is reached (a shared ComfyUI client can take this over without touching the guard).
 *
 * Both reads fail soft: the guard must decide even when ComfyUI is slow or down, and an empty queue or
 * history only makes it stricter (nobody is known to own anything).
 */
import { parseJson } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import { isJsonObject } from './comfy-items.js'

/** ComfyUI's `/queue`, as raw items (`[number, prompt_id, prompt, extra_data, outputs]`). */
interface QueueSnapshot {
  readonly running: JsonValue[]
  readonly pending: JsonValue[]
}

/** What the access guard reads from ComfyUI to decide visibility and ownership. */
export interface UpstreamLookups {
  /** `GET /queue`; both lists empty when ComfyUI cannot be read or answers something else. */
  queue(): Promise<QueueSnapshot>
  /**
   * `GET /history` (every entry, by prompt id). Null when ComfyUI could not be reached at all, so the caller
   * keeps what it knew; an error status or an answer that is not an object reads as an empty history.
   */
  history(): Promise<JsonObject | null>
}

/** Options of {@link createUpstreamLookups}. */
interface UpstreamLookupsOptions {
  /** ComfyUI's base URL, path prefix included. */
  readonly upstreamUrl: string
  /** Timeout of each read, ms. */
  readonly timeoutMillis: number
}

/** Reads ComfyUI over `fetch`, with ComfyUI's tolerant JSON (NaN and Infinity allowed). */
export function createUpstreamLookups(options: UpstreamLookupsOptions): UpstreamLookups {
  const upstream = options.upstreamUrl.replace(/\/+$/, '')
  const get = (path: string): Promise<Response> =>
    fetch(`${upstream}${path}`, { signal: AbortSignal.timeout(options.timeoutMillis) })

  return {
    async queue() {
      try {
        const res = await get('/queue')
        if (!res.ok) return { running: [], pending: [] }
        const parsed = parseJson(Buffer.from(await res.arrayBuffer()))
        if (!parsed.ok || !isJsonObject(parsed.value)) return { running: [], pending: [] }
        const q = parsed.value
        return {
          running: Array.isArray(q.queue_running) ? q.queue_running : [],
          pending: Array.isArray(q.queue_pending) ? q.queue_pending : [],
        }
      } catch {
        return { running: [], pending: [] }
      }
    },

    async history() {
      try {
        const res = await get('/history')
        const parsed = res.ok ? parseJson(Buffer.from(await res.arrayBuffer())) : null
        return parsed?.ok && isJsonObject(parsed.value) ? parsed.value : {}
      } catch {
        return null
      }
    },
  }
}

/**
 * The few reads of ComfyUI the root's modules make besides the proxied traffic (history and queue for
 * reconciliation, system stats for the environment, folder paths for model hashing), behind one port.
 */
import { parseJson } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'

/** Reads one JSON answer of ComfyUI. */
export interface ComfyReader {
  /**
   * GETs `path` (below the base URL, its path prefix kept) and parses the body losslessly; null when ComfyUI
   * did not answer 2xx with JSON within `timeoutMillis`. Never throws.
   */
  getJson(path: string, timeoutMillis: number): Promise<JsonValue | null>
}

/** A {@link ComfyReader} over `fetch`; `baseUrl` without a trailing slash. */
export function createComfyReader(baseUrl: string): ComfyReader {
  return {
    async getJson(path, timeoutMillis) {
      try {
        const res = await fetch(`${baseUrl}${path}`, { signal: AbortSignal.timeout(timeoutMillis) })
        if (!res.ok) return null
        const parsed = parseJson(Buffer.from(await res.arrayBuffer()))
        return parsed.ok ? parsed.value : null
      } catch {
        return null
      }
    },
  }
}

/**
 * The few reads of ComfyUI the root's modules make besides the proxied traffic (history and queue for
 * reconciliation, system stats for the environment, folder paths for model hashing), behind one port.
 */
import type { JsonValue } from '../audit/types.js'
import { createComfyClient } from '../comfyui/comfy-client.js'
import { zJsonValue } from '../comfyui/schemas.js'

/** Reads one JSON answer of ComfyUI. */
export interface ComfyReader {
  /**
   * GETs `path` (below the base URL, its path prefix kept) and parses the body losslessly; null when ComfyUI
   * did not answer 2xx with JSON within `timeoutMillis`. Never throws.
   */
  getJson(path: string, timeoutMillis: number): Promise<JsonValue | null>
}

/** A {@link ComfyReader} over the one ComfyUI client; `baseUrl` without a trailing slash. */
export function createComfyReader(baseUrl: string): ComfyReader {
  const client = createComfyClient({ baseUrl })
  return {
    async getJson(path, timeoutMillis) {
      const r = await client.getJson(zJsonValue, path, { timeoutMillis })
      return r.ok ? r.value : null
    },
  }
}

import type { Logger } from '../audit/report-error.js'
import type { ComfyClient } from '../comfyui/comfy-client.js'
import {
  historyEntries,
  jobListLookups,
  rewriteHistoryAnswer,
  rewriteJobAnswer,
  rewriteJobListAnswer,
  rewriteQueueAnswer,
  type ClientViewRoute,
} from './client-view.js'

/** Up to this many `/api/jobs` items are looked up one by one in ComfyUI's history; beyond, all of it at once. */
const MAX_SINGLE_LOOKUPS = 50
const LOOKUP_CONCURRENCY = 8

/** Rewrites one answer of a client-view route (see client-view.ts) into what the client would have seen. */
export type ClientViewRewriters = Record<ClientViewRoute, (body: Buffer) => Promise<Buffer>>

/**
 * The rewriters of the client-view routes. A job list needs the history entries of its items (to drop the
 * outputs the client may not see from its summary), read from ComfyUI with bodies of at most `limitBytes`.
 */
export function createClientViewRewriters(
  comfy: ComfyClient,
  limitBytes: number,
  logger: Logger,
): ClientViewRewriters {
  /** ComfyUI's history entries for `ids` (text, by prompt id): one by one for a few, all of history for many. */
  const lookUpHistory = async (ids: readonly string[]): Promise<Map<string, string>> => {
    if (ids.length > MAX_SINGLE_LOOKUPS) {
      const all = await comfy.get('/history', { limitBytes })
      if (!all.ok) logger.warn('gateway: could not read ComfyUI history to adjust /api/jobs')
      return all.ok ? historyEntries(all.value) : new Map()
    }
    const entries = new Map<string, string>()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < ids.length) {
        const id = ids[next++]!
        const body = await comfy.get(`/history/${encodeURIComponent(id)}`, { limitBytes })
        const entry = body.ok ? historyEntries(body.value).get(id) : undefined
        if (entry !== undefined) entries.set(id, entry)
      }
    }
    await Promise.all(Array.from({ length: Math.min(LOOKUP_CONCURRENCY, ids.length) }, worker))
    return entries
  }

  return {
    history: (body) => Promise.resolve(rewriteHistoryAnswer(body)),
    queue: (body) => Promise.resolve(rewriteQueueAnswer(body)),
    job: (body) => Promise.resolve(rewriteJobAnswer(body)),
    jobs: async (body) => {
      const ids = jobListLookups(body)
      return ids.length === 0 ? body : rewriteJobListAnswer(body, await lookUpHistory(ids))
    },
  }
}

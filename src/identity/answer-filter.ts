/**
 * Narrows ComfyUI's `/history`, `/queue` and jobs answers to one person's own prompts (`visibility: own`).
 * History and queue items carry the client id, which names the person; jobs carry only the prompt id, so
 * their owner comes from the store.
 */
import { parseJson, stringifyJson } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import type { ClientViewRoute } from '../gateway/client-view.js'
import { isJsonObject, itemClientId, ownsClientId } from './comfy-items.js'

/** Narrows one buffered answer; an answer it cannot read passes unchanged. */
type AnswerFilter = (route: ClientViewRoute, body: Buffer) => Promise<Buffer>

/** The filter for `user`; `promptOwner` is the recorded submitter of a prompt id (null when unknown). */
export function ownAnswerFilter(
  user: string,
  promptOwner: (promptId: string) => Promise<string | null>,
): AnswerFilter {
  return async (route, body) => {
    const parsed = parseJson(body)
    if (!parsed.ok || !isJsonObject(parsed.value)) return body
    const v = parsed.value
    if (route === 'history') {
      const out: JsonObject = {}
      for (const [id, entry] of Object.entries(v)) {
        if (isJsonObject(entry) && ownsClientId(itemClientId(entry.prompt), user)) out[id] = entry
      }
      return Buffer.from(stringifyJson(out))
    }
    if (route === 'queue') {
      const mine = (list: JsonValue | undefined): JsonValue[] =>
        Array.isArray(list) ? list.filter((item) => ownsClientId(itemClientId(item), user)) : []
      return Buffer.from(
        stringifyJson({ ...v, queue_running: mine(v.queue_running), queue_pending: mine(v.queue_pending) }),
      )
    }
    if (route === 'jobs' && Array.isArray(v.jobs)) {
      const kept: JsonValue[] = []
      for (const job of v.jobs) {
        if (isJsonObject(job) && typeof job.id === 'string' && (await promptOwner(job.id)) === user)
          kept.push(job)
      }
      const out: JsonObject = { ...v, jobs: kept }
      if (isJsonObject(v.pagination))
        out.pagination = { ...v.pagination, total: kept.length, has_more: false }
      return Buffer.from(stringifyJson(out))
    }
    return body
  }
}

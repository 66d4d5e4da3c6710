/**
 * Reading who a ComfyUI queue or history item belongs to. ComfyUI stores no submitter, only the client id the
 * prompt was sent with, and the gateway namespaces client ids per person (see gateway/client-ids.ts): so the
 * id alone tells whose an item is.
 */
import type { JsonObject, JsonValue } from '../audit/types.js'
import { namespacedClientId, noClientId } from '../gateway/client-ids.js'

/** True for a JSON object (not null, not an array). */
export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v)
}

/** The client id in a ComfyUI queue or history item (`[number, id, prompt, extra_data, outputs]`). */
export function itemClientId(item: JsonValue | undefined): string | null {
  if (!Array.isArray(item)) return null
  const extra = item[3]
  return isJsonObject(extra) && typeof extra.client_id === 'string' ? extra.client_id : null
}

/** Whether `clientId` is one the gateway gave `user` (a namespaced id, or the id it injects for none). */
export function ownsClientId(clientId: string | null, user: string): boolean {
  return (
    clientId !== null && (clientId.startsWith(namespacedClientId(user, '')) || clientId === noClientId(user))
  )
}

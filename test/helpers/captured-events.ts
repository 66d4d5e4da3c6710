/** Reading capture's emitted events the way the store's projection would, for the capture tests. */
import type { AuditEventInput, JsonObject, JsonValue } from '../../src/audit/types.js'
import { isJsonObject } from '../../src/comfyui/schemas.js'

/** The session row the projection would build: patches folded in log order. */
export function session(events: readonly AuditEventInput[], id: string): JsonObject {
  const row: JsonObject = {}
  for (const e of events) {
    if (e.session_id === id && isJsonObject(e.payload.session)) Object.assign(row, e.payload.session)
  }
  return row
}

/** Node runs of a session, the last record per node id (the projection's upsert). */
export function nodeRuns(events: readonly AuditEventInput[], id: string): Map<string, JsonObject> {
  const runs = new Map<string, JsonObject>()
  for (const e of events) {
    const run = e.payload.node_run
    if (e.session_id === id && isJsonObject(run)) runs.set(run.node_id as string, run)
  }
  return runs
}

/** Each node's status, by node id. */
export function statuses(runs: Map<string, JsonObject>): Record<string, JsonValue> {
  return Object.fromEntries([...runs].map(([id, r]) => [id, r.status ?? null]))
}

/**
 * Migration 10, the same in both dialects: the indexes the audit API's lookups need at a million sessions
 * (issue 14 item 4), and the prompt-graph hash a re-encoded PNG is traced by.
 *
 * - Listing by person, by status or by time only reads `(column, queued_at IS NULL, queued_at DESC, origin,
 *   session_id)`: the rows come out of the index already in the listing's order (newest first, sessions
 *   without a queue time last), so a page reads its own rows and sorts nothing.
 * - `show ID` without the origin reads `(session_id, origin)`, whose order is the answer's (first origin).
 * - Tracing a PNG by its `prompt` chunk looks up `prompt_sha256` (the chunk is the submitted prompt) or
 *   `prompt_graph_sha256`, the hash of the prompt without `is_changed` (the front end may add it to either
 *   copy; it does not change what runs), instead of comparing every stored prompt.
 */
import { canonicalJson, sha256Hex } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import type { RollupPlan } from './daily-rollups.js'
import { SESSION_PROMPT_GRAPH_COLUMN, decodeColumn } from './derived-columns.js'
import type { Migration } from './migrations.js'

export const QUERY_INDEXES_VERSION = 10

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The graph without `is_changed` (the front end may add it; it does not change what runs). */
function withoutIsChanged(prompt: JsonValue): JsonValue {
  if (!isObject(prompt)) return prompt
  const out: JsonObject = {}
  for (const [id, node] of Object.entries(prompt)) {
    if (isObject(node)) {
      const copy: JsonObject = { ...node }
      delete copy.is_changed
      out[id] = copy
    } else out[id] = node
  }
  return out
}

/** SHA-256 of the canonical JSON of the prompt without `is_changed`; null without a prompt. */
export function promptGraphSha256(prompt: JsonValue | null): string | null {
  return prompt === null ? null : sha256Hex(canonicalJson(withoutIsChanged(prompt)))
}

/** The sessions listing's order: newest first, sessions without a queue time last, ties by key. */
export const SESSION_LIST_ORDER = '(queued_at IS NULL), queued_at DESC, origin, session_id'

export const QUERY_INDEXES_MIGRATION: Migration = {
  version: QUERY_INDEXES_VERSION,
  name: 'query indexes',
  statements: [
    `ALTER TABLE sessions ADD COLUMN ${SESSION_PROMPT_GRAPH_COLUMN} TEXT`,
    `CREATE INDEX sessions_prompt_sha256 ON sessions (prompt_sha256)`,
    `CREATE INDEX sessions_prompt_graph_sha256 ON sessions (${SESSION_PROMPT_GRAPH_COLUMN})`,
    // The single-column person and status indexes are prefixes of these.
    `DROP INDEX sessions_submitter_user`,
    `CREATE INDEX sessions_user_time ON sessions (submitter_user, ${SESSION_LIST_ORDER})`,
    `DROP INDEX sessions_status`,
    `CREATE INDEX sessions_status_time ON sessions (status, ${SESSION_LIST_ORDER})`,
    `CREATE INDEX sessions_time ON sessions (${SESSION_LIST_ORDER})`,
    `DROP INDEX sessions_session_id`,
    `CREATE INDEX sessions_session_id_origin ON sessions (session_id, origin)`,
  ],
}

/**
 * Fills `prompt_graph_sha256` of the sessions stored before migration 10 (the hash is computed here, not in
 * SQL: it is the canonical JSON of audit/json.ts). Pages by key, so it holds one page of prompts at a time.
 */
export function* backfillPromptGraphHashes(): RollupPlan<void> {
  let after: [string, string] = ['', '']
  const page = 500
  for (;;) {
    const rows = yield {
      sql:
        'SELECT origin, session_id, prompt FROM sessions WHERE (origin, session_id) > (?, ?) AND prompt IS NOT NULL' +
        ` ORDER BY origin, session_id LIMIT ${page}`,
      params: after,
    }
    for (const row of rows) {
      const where = `sessions(${String(row.origin)}, ${String(row.session_id)}).prompt`
      const hash = promptGraphSha256(decodeColumn('json', row.prompt, where))
      yield {
        sql: `UPDATE sessions SET ${SESSION_PROMPT_GRAPH_COLUMN} = ? WHERE origin = ? AND session_id = ?`,
        params: [hash, String(row.origin), String(row.session_id)],
      }
    }
    if (rows.length < page) return
    const last = rows[rows.length - 1]!
    after = [String(last.origin), String(last.session_id)]
  }
}

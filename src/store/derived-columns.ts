/**
 * Column lists of the derived tables, shared by every dialect so both store the same fields under the
 * records' own names, and the conversions between a record field and its column value.
 * JSON fields are stored as standard JSON text that reads back exactly, SQL NULL for `null`: integers of any
 * size as plain digits, numbers as ComfyUI spelled them (`1.0`), NaN/Infinity/-Infinity as `{"$float": "NaN"}`
 * (and an object that would read as such a tag wrapped in `{"$escape": …}`), so any SQLite's `json_extract`
 * and PostgreSQL's `::json` read every column. Rows written before this form (bare `NaN` tokens) are still
 * read; `comfy-audit rebuild` rewrites them.
 */
import { parseJson, stringifyJson } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'

/** How a field is stored: `text` and `number` as native columns, `json` as standard JSON text. */
export type ColumnKind = 'text' | 'number' | 'json'

/** A value as the database drivers take and return it. */
export type ColumnValue = string | number | bigint | null

/** SessionRecord fields besides the key (origin, session_id), in column order. */
export const SESSION_COLUMNS = [
  ['status', 'text'],
  ['http_status', 'number'],
  ['number', 'number'],
  ['client_id', 'text'],
  ['submitter', 'json'],
  ['prompt', 'json'],
  ['workflow', 'json'],
  ['prompt_sha256', 'text'],
  ['workflow_sha256', 'text'],
  ['extra_data', 'json'],
  ['validation', 'json'],
  ['queued_at', 'text'],
  ['started_at', 'text'],
  ['ended_at', 'text'],
  ['duration_ms', 'number'],
  ['environment', 'json'],
  ['models', 'json'],
  ['seeds', 'json'],
  ['outputs', 'json'],
  ['error', 'json'],
  ['status_reason', 'text'],
  ['flags', 'json'],
] as const satisfies readonly (readonly [string, ColumnKind])[]

/**
 * Extra session column, not a record field: `submitter.user`, copied out so sessions filter by person
 * with an index. (`user` itself is reserved in PostgreSQL.)
 */
export const SESSION_USER_COLUMN = 'submitter_user'

/**
 * Extra session column, not a record field: the UI workflow's `id` (a string in `workflow.id`), copied out so
 * the analysis `--workflow` filter and `diff --workflow W --last N` read an index instead of every session.
 */
export const SESSION_WORKFLOW_COLUMN = 'workflow_id'

/**
 * Extra session column, not a record field: the hash of the prompt without `is_changed`
 * (query-indexes.ts `promptGraphSha256`), so a re-encoded PNG's prompt chunk is traced through an index.
 */
export const SESSION_PROMPT_GRAPH_COLUMN = 'prompt_graph_sha256'

/** NodeRunRecord fields besides the key (origin, session_id, node_id), in column order. */
export const NODE_RUN_COLUMNS = [
  ['node_type', 'text'],
  ['timestamp_start', 'text'],
  ['timestamp_end', 'text'],
  ['duration_ms', 'number'],
  ['inputs', 'json'],
  ['outputs', 'json'],
  ['status', 'text'],
  ['error_message', 'text'],
  ['exception_type', 'text'],
  ['traceback', 'json'],
  ['gpu_memory_used', 'number'],
  ['gpu_memory_torch', 'number'],
  ['display_node', 'text'],
  ['real_node_id', 'text'],
  ['parent_node_id', 'text'],
  ['progress', 'json'],
  ['previews', 'number'],
] as const satisfies readonly (readonly [string, ColumnKind])[]

/** OutputRecord key columns (the upsert key) in order, then the other fields. */
export const OUTPUT_KEY_COLUMNS = [
  'origin',
  'session_id',
  'node_id',
  'type',
  'subfolder',
  'filename',
] as const
export const OUTPUT_COLUMNS = [
  ['sha256', 'text'],
  ['bytes', 'number'],
  ['width', 'number'],
  ['height', 'number'],
  ['time', 'text'],
] as const satisfies readonly (readonly [string, ColumnKind])[]

/** Turns a record field into its column value. */
export function encodeColumn(kind: ColumnKind, value: JsonValue | undefined): ColumnValue {
  if (value === null || value === undefined) return null
  if (kind === 'json') return stringifyJson(value, { tagged: true })
  if (kind === 'number') return typeof value === 'number' ? value : Number(value)
  return typeof value === 'string' ? value : String(value)
}

/**
 * Turns a column value back into the record field. `where` names the row for the error thrown when
 * stored JSON text does not parse (a corrupted or hand-edited database).
 */
export function decodeColumn(kind: ColumnKind, value: unknown, where: string): JsonValue {
  if (value === null || value === undefined) return null
  if (kind === 'json') {
    const parsed = parseJson(String(value), { tagged: true })
    if (!parsed.ok) throw new Error(`stored JSON at ${where} does not parse: ${parsed.reason}`)
    return parsed.value
  }
  // PostgreSQL returns int8 as a string; derived numbers are all safe integers or doubles.
  if (kind === 'number') return typeof value === 'number' ? value : Number(value)
  return String(value)
}

/** Compares strings by their UTF-8 bytes, the order of SQLite's BINARY and PostgreSQL's "C" collation. */
function compareUtf8(a: string, b: string): number {
  if (a === b) return 0
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/** Compares key tuples element by element with `compareUtf8`. */
export function compareKeys(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareUtf8(a[i] ?? '', b[i] ?? '')
    if (c !== 0) return c
  }
  return a.length - b.length
}

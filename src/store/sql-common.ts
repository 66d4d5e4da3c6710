/**
 * SQL both dialects share: SQLite (3.24+) and PostgreSQL accept the same `INSERT … ON CONFLICT … DO UPDATE`
 * and row-value comparisons, so the statements are written once with `?` placeholders (PostgreSQL's driver
 * renumbers them) and rows are converted to and from records here.
 */
import { parseJson, stringifyJson } from '../audit/json.js'
import { asJsonObject } from '../audit/json-value.js'
import type { AuditEvent, AuditEventKind, JsonValue, OutputRecord, SessionRecord } from '../audit/types.js'
import {
  NODE_RUN_COLUMNS,
  OUTPUT_COLUMNS,
  OUTPUT_KEY_COLUMNS,
  SESSION_COLUMNS,
  SESSION_USER_COLUMN,
  SESSION_WORKFLOW_COLUMN,
  SESSION_PROMPT_GRAPH_COLUMN,
  decodeColumn,
  encodeColumn,
  type ColumnValue,
} from './derived-columns.js'
import type { NodeRunRow, StoredCheckpoint, StoredEventRow } from './store.js'
import type { Migration } from './migrations.js'
import { promptGraphSha256 } from './query-indexes.js'
import { parseStoredPayload } from './store.js'

/** A statement and its parameters, `?` placeholders. */
export interface SqlQuery {
  readonly sql: string
  readonly params: ColumnValue[]
}

/** A row as a driver returns it. */
export type SqlRow = Record<string, unknown>

/** Rows read per page when streaming events; keyset pagination keeps no cursor open between pages. */
export const EVENT_PAGE_SIZE = 500

/** Columns an append writes; the leaf hash comes from the runtime store's batch, the same for every dialect. */
const EVENT_COLUMNS = [
  'origin',
  'seq',
  'kind',
  'time',
  'session_id',
  'payload',
  'leaf_hash',
  'payload_format',
] as const

/**
 * How `events.payload` is written: 1 = standard JSON with NaN/Infinity tagged (`{"$float": "NaN"}`, see
 * audit/json.ts), so any SQLite's json_extract and PostgreSQL's ::json read it; 0 = rows written before
 * migration 8, lossless JSON that may hold bare NaN, read as it was written.
 */
const EVENT_PAYLOAD_FORMAT = 1

/** Migration 8, the same in both dialects. */
export const EVENT_PAYLOAD_FORMAT_MIGRATION: Migration = {
  version: 8,
  name: 'event payloads as standard JSON',
  // Rows written before keep 0: their text may hold bare NaN, and an object of theirs that looks like a tag is
  // data, not a tag. Rows written from now on are standard JSON with NaN tagged (see parseStoredPayload).
  statements: ['ALTER TABLE events ADD COLUMN payload_format INTEGER NOT NULL DEFAULT 0'],
}

/** Columns read back: the written ones plus the prune mark. */
export const EVENT_READ_COLUMNS = [...EVENT_COLUMNS, 'pruned'] as const

/** Parameters per appended event row. */
export const EVENT_PARAM_COUNT = EVENT_COLUMNS.length

export const INSERT_EVENT_SQL = `INSERT INTO events (${EVENT_COLUMNS.join(', ')}) VALUES (${EVENT_COLUMNS.map(() => '?').join(', ')})`

/** Stores a checkpoint once per (origin, size). */
export const INSERT_CHECKPOINT_SQL =
  'INSERT INTO checkpoints (origin, size, root_hash, note, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin, size) DO NOTHING'
export const SELECT_CHECKPOINTS_SQL =
  'SELECT origin, size, root_hash, note, created_at FROM checkpoints WHERE origin = ? ORDER BY size'
/** Removes one range's payloads, keeping kind, time, session and leaf hash. */
export const PRUNE_RANGE_SQL =
  "UPDATE events SET payload = '{}', pruned = ? WHERE origin = ? AND seq >= ? AND seq <= ? AND pruned IS NULL"

const sessionColumns = [
  'origin',
  'session_id',
  ...SESSION_COLUMNS.map(([c]) => c),
  SESSION_USER_COLUMN,
  SESSION_WORKFLOW_COLUMN,
  SESSION_PROMPT_GRAPH_COLUMN,
]
const nodeRunColumns = ['origin', 'session_id', 'node_id', ...NODE_RUN_COLUMNS.map(([c]) => c)]
const outputColumns = [...OUTPUT_KEY_COLUMNS, ...OUTPUT_COLUMNS.map(([c]) => c)]

/** Columns and key length of a derived table, for building its upsert. */
export interface UpsertSpec {
  readonly table: string
  readonly columns: readonly string[]
  /** The first `keyCount` columns are the conflict key. */
  readonly keyCount: number
}

export const SESSION_UPSERT: UpsertSpec = { table: 'sessions', columns: sessionColumns, keyCount: 2 }
export const NODE_RUN_UPSERT: UpsertSpec = { table: 'node_runs', columns: nodeRunColumns, keyCount: 3 }
export const OUTPUT_UPSERT: UpsertSpec = {
  table: 'outputs',
  columns: outputColumns,
  keyCount: OUTPUT_KEY_COLUMNS.length,
}

/** `INSERT … VALUES (…)×rows ON CONFLICT (key) DO UPDATE SET` every other column. Keys must be distinct. */
export function upsertSql(spec: UpsertSpec, rows = 1): string {
  const keys = spec.columns.slice(0, spec.keyCount)
  const rest = spec.columns.slice(spec.keyCount)
  const tuple = `(${spec.columns.map(() => '?').join(', ')})`
  return (
    `INSERT INTO ${spec.table} (${spec.columns.join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')} ` +
    `ON CONFLICT (${keys.join(', ')}) DO UPDATE SET ${rest.map((c) => `${c} = excluded.${c}`).join(', ')}`
  )
}

/** Multi-row `INSERT INTO events`. */
export function insertEventsSql(rows: number): string {
  const tuple = `(${EVENT_COLUMNS.map(() => '?').join(', ')})`
  return `INSERT INTO events (${EVENT_COLUMNS.join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')}`
}

export const UPSERT_SESSION_SQL = upsertSql(SESSION_UPSERT)
export const UPSERT_NODE_RUN_SQL = upsertSql(NODE_RUN_UPSERT)
export const UPSERT_OUTPUT_SQL = upsertSql(OUTPUT_UPSERT)
export const SELECT_SESSION_SQL = `SELECT * FROM sessions WHERE origin = ? AND session_id = ?`
export const SELECT_OUTPUT_SQL = `SELECT * FROM outputs WHERE ${OUTPUT_KEY_COLUMNS.map((c) => `${c} = ?`).join(' AND ')}`
export const DERIVED_TABLES = ['sessions', 'node_runs', 'outputs'] as const
export const SELECT_DERIVED_SQL = {
  sessions: 'SELECT * FROM sessions',
  node_runs: 'SELECT * FROM node_runs',
  outputs: 'SELECT * FROM outputs',
} as const
export const ORDER_DERIVED_SQL = {
  sessions: 'ORDER BY origin, session_id',
  node_runs: 'ORDER BY origin, session_id, node_id',
  outputs: `ORDER BY ${OUTPUT_KEY_COLUMNS.join(', ')}`,
} as const

/** The query of {@link StoreDriver.session}: without `origin`, the first match in origin order. */
export function sessionQuery(sessionId: string, origin?: string): SqlQuery {
  return origin === undefined
    ? { sql: 'SELECT * FROM sessions WHERE session_id = ? ORDER BY origin LIMIT 1', params: [sessionId] }
    : { sql: SELECT_SESSION_SQL, params: [origin, sessionId] }
}

/** The query of one derived table's rows as stored (all origins, or one), in key order. */
export function derivedTableQuery(table: (typeof DERIVED_TABLES)[number], origin?: string): SqlQuery {
  return {
    sql: `${SELECT_DERIVED_SQL[table]}${origin === undefined ? '' : ' WHERE origin = ?'} ${ORDER_DERIVED_SQL[table]}`,
    params: origin === undefined ? [] : [origin],
  }
}

/** Parameters of INSERT_EVENT_SQL; the payload as lossless JSON text, and the event's leaf hash (hex). */
export function eventParams(event: AuditEvent, leafHash: string): ColumnValue[] {
  return [
    event.origin,
    event.seq,
    event.kind,
    event.time,
    event.session_id,
    stringifyJson(event.payload, { tagged: true }),
    leafHash,
    EVENT_PAYLOAD_FORMAT,
  ]
}

/** A checkpoints row as a StoredCheckpoint. */
export function rowToCheckpoint(row: SqlRow): StoredCheckpoint {
  return {
    origin: String(row.origin),
    size: Number(row.size),
    root_hash: String(row.root_hash),
    note: String(row.note),
    created_at: String(row.created_at),
  }
}

/** Parameters of INSERT_CHECKPOINT_SQL. */
export function checkpointParams(cp: StoredCheckpoint): ColumnValue[] {
  return [cp.origin, cp.size, cp.root_hash, cp.note, cp.created_at]
}

/** The UI workflow's id of a session (`workflow.id` when it is a string), or null. */
export function sessionWorkflowId(session: Pick<SessionRecord, 'workflow'>): string | null {
  const w = session.workflow
  if (typeof w !== 'object' || w === null || Array.isArray(w)) return null
  const id = (w as Readonly<Record<string, JsonValue>>).id
  return typeof id === 'string' ? id : null
}

/** Parameters of UPSERT_SESSION_SQL. */
export function sessionParams(session: SessionRecord): ColumnValue[] {
  const fields = asJsonObject(session)
  const user = session.submitter && typeof session.submitter.user === 'string' ? session.submitter.user : null
  return [
    session.origin,
    session.session_id,
    ...SESSION_COLUMNS.map(([c, kind]) => encodeColumn(kind, fields[c])),
    user,
    sessionWorkflowId(session),
    promptGraphSha256(session.prompt),
  ]
}

/** Parameters of UPSERT_NODE_RUN_SQL. */
export function nodeRunParams(run: NodeRunRow): ColumnValue[] {
  const fields = asJsonObject(run)
  return [
    run.origin,
    run.session_id,
    run.node_id,
    ...NODE_RUN_COLUMNS.map(([c, kind]) => encodeColumn(kind, fields[c])),
  ]
}

/** Parameters of UPSERT_OUTPUT_SQL (and, the first six, of SELECT_OUTPUT_SQL). */
export function outputParams(output: OutputRecord): ColumnValue[] {
  const fields: Readonly<Record<string, JsonValue | undefined>> = asJsonObject(output)
  return [
    ...OUTPUT_KEY_COLUMNS.map((c) => encodeColumn('text', fields[c])),
    ...OUTPUT_COLUMNS.map(([c, kind]) => encodeColumn(kind, fields[c])),
  ]
}

/** A sessions row as a SessionRecord. */
export function rowToSession(row: SqlRow): SessionRecord {
  const where = `sessions(${String(row.origin)}, ${String(row.session_id)})`
  const record: Record<string, JsonValue> = { origin: String(row.origin), session_id: String(row.session_id) }
  for (const [c, kind] of SESSION_COLUMNS) record[c] = decodeColumn(kind, row[c], `${where}.${c}`)
  // Built column by column from the schema SessionRecord is stored under; not checked further, since
  // `verify` must read a tampered row back to report it.
  // cast-allowed: a stored row, read back unchecked so that verify can report a tampered one
  return record as unknown as SessionRecord
}

/** A node_runs row as a NodeRunRow. */
export function rowToNodeRun(row: SqlRow): NodeRunRow {
  const where = `node_runs(${String(row.origin)}, ${String(row.session_id)}, ${String(row.node_id)})`
  const record: Record<string, JsonValue> = {
    origin: String(row.origin),
    session_id: String(row.session_id),
    node_id: String(row.node_id),
  }
  for (const [c, kind] of NODE_RUN_COLUMNS) record[c] = decodeColumn(kind, row[c], `${where}.${c}`)
  // cast-allowed: a stored row, read back unchecked so that verify can report a tampered one
  return record as unknown as NodeRunRow
}

/** An outputs row as an OutputRecord. */
export function rowToOutput(row: SqlRow): OutputRecord {
  const record: Record<string, JsonValue> = {}
  for (const c of OUTPUT_KEY_COLUMNS) record[c] = String(row[c])
  for (const [c, kind] of OUTPUT_COLUMNS) record[c] = decodeColumn(kind, row[c], `outputs.${c}`)
  // cast-allowed: a stored row, read back unchecked so that verify can report a tampered one
  return record as unknown as OutputRecord
}

/** An events row exactly as stored. */
export function rowToStoredEvent(row: SqlRow): StoredEventRow {
  return {
    origin: String(row.origin),
    seq: Number(row.seq),
    kind: String(row.kind),
    time: String(row.time),
    session_id: row.session_id === null || row.session_id === undefined ? null : String(row.session_id),
    payload: String(row.payload),
    leaf_hash: row.leaf_hash === null || row.leaf_hash === undefined ? null : String(row.leaf_hash),
    pruned: row.pruned === null || row.pruned === undefined ? null : Number(row.pruned),
    payload_format:
      row.payload_format === null || row.payload_format === undefined ? 0 : Number(row.payload_format),
  }
}

/** A stored events row as an AuditEvent; throws, naming origin and seq, when its payload does not parse. */
export function storedToEvent(row: StoredEventRow): AuditEvent {
  const parsed = parseStoredPayload(row)
  if (!parsed.ok)
    throw new Error(`stored payload of event ${row.origin}#${row.seq} does not parse: ${parsed.reason}`)
  const payload = parsed.value
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new Error(`stored payload of event ${row.origin}#${row.seq} is not an object`)
  }
  return {
    origin: row.origin,
    seq: row.seq,
    // The events table only holds kinds the runtime store accepted; `verify` reads raw rows for the rest.
    kind: row.kind as AuditEventKind,
    time: row.time,
    session_id: row.session_id,
    payload,
  }
}

/** Rows of the state table carry standard JSON text that reads back exactly (see derived-columns.ts). */
export function encodeState(value: JsonValue): string {
  return stringifyJson(value, { tagged: true })
}

/** Parses a stored state value (either form, see derived-columns.ts); throws naming the key when it does not parse. */
export function decodeState(key: string, text: unknown): JsonValue {
  const parsed = parseJson(String(text), { tagged: true })
  if (!parsed.ok) throw new Error(`stored state ${key} does not parse: ${parsed.reason}`)
  return parsed.value
}

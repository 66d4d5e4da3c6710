/**
 * The sink contract and the records sinks receive.
 *
 * A processor decides *when* to send; a sink only sends one batch and reports how it went (as in
 * OpenTelemetry's exporters). Sinks never retry by themselves: HTTP sinks go through
 * `createRetryingTransport()`, and a batch the transport gives up on goes back to the processor, which keeps it.
 */
import { decodeEvent } from '../audit/decode-event.js'
import { isSubmitter } from '../audit/event-schemas.js'
import { parseJson, stringifyJson } from '../audit/json.js'
import { asJsonObject } from '../audit/json-value.js'
import {
  RECORD_SCHEMA_VERSION,
  type AuditEvent,
  type AuditEventKind,
  type JsonObject,
  type JsonValue,
  type NodeRunRecord,
  type SessionRecord,
  type SessionStatus,
  type Submitter,
} from '../audit/types.js'

/**
 * How one export went.
 * - `success`: the receiver has the batch.
 * - `retryable`: try again later (the receiver was down, throttled, or timed out). `retryInMillis` is a hint
 *   (e.g. from `Retry-After`). `records`, when present, are the only records of the batch still to deliver
 *   (the rest were accepted, e.g. per-item results of an Elasticsearch `_bulk`).
 * - `failure`: the receiver refused the batch for good (a 4xx other than 429); the processor drops it and counts it.
 *
 * `dropped` (on success or retryable) counts records the receiver refused for good one by one (the sink has
 * logged them); the processor adds them to its drop count.
 */
export type ExportResult =
  | { readonly status: 'success'; readonly dropped?: number }
  | {
      readonly status: 'retryable'
      readonly error: Error
      readonly retryInMillis?: number
      readonly records?: readonly SinkRecord[]
      readonly dropped?: number
    }
  | { readonly status: 'failure'; readonly error: Error }

/**
 * A destination for audit records.
 * @example
 * const sink: AuditSink = {
 *   name: 'stdout',
 *   async export(batch) { for (const r of batch) out.write(JSON.stringify(r) + '\n'); return { status: 'success' } },
 *   async forceFlush() {},
 *   async shutdown() {},
 * }
 */
export interface AuditSink {
  /** Short name for health, metrics and logs (`jsonl`, `otlp`, ...). */
  readonly name: string
  /**
   * Sends one batch. Never throws for expected failures (returns them); `signal` aborts when the processor's
   * export timeout passes or it shuts down.
   */
  export(batch: readonly SinkRecord[], signal: AbortSignal): Promise<ExportResult>
  /** Makes whatever the sink buffered durable (e.g. fsync a file). */
  forceFlush(): Promise<void>
  /**
   * Optional, for a sink that can read back what its destination durably holds (a file): the id and seq of
   * the last record stored, or null when none. Called once at start, before any export; the pipeline moves
   * the sink's cursor up to it, so a crash between the write and the cursor's update sends nothing twice.
   */
  lastStored?(): Promise<Pick<SinkRecordBase, 'id' | 'seq'> | null>
  /** Releases resources; idempotent. */
  shutdown(): Promise<void>
}

/** What every sink record carries. */
interface SinkRecordBase {
  /**
   * De-duplication id: `${origin}:${seq}` of the ledger event the record came from. An event that yields
   * several records (rare: a node run and a session change in one event) numbers the later ones
   * `${origin}:${seq}.1`, `.2`, ... in the fixed order node_run, action, session, so ids are stable across retries
   * and restarts.
   */
  readonly id: string
  /** The log (gateway) the event belongs to. */
  readonly origin: string
  /** Position of the event in the origin's log. */
  readonly seq: number
  /** Kind of the event the record came from. */
  readonly kind: AuditEventKind
  /** When the event happened (ISO 8601 UTC, ms). */
  readonly time: string
  /** Version of the record format ({@link RECORD_SCHEMA_VERSION}; schemas under `schemas/`). */
  readonly schema_version: number
}

/** One node execution (or cache hit): the NodeRunRecord with exactly the seed's field names. */
interface NodeRunSinkRecord extends SinkRecordBase, NodeRunRecord {
  readonly record_type: 'node_run'
}

/** A user action on ComfyUI (`action.*`): who did it and the redacted request details. */
interface ActionSinkRecord extends SinkRecordBase {
  readonly record_type: 'action'
  /** The action without its `action.` prefix (`interrupt`, `queue_delete`, ...). */
  readonly action: string
  readonly session_id: string | null
  /** `submitter.user` of the payload, when it names one. */
  readonly user: string | null
  readonly submitter: Submitter | null
  /** The event's payload as stored (already redacted). */
  readonly details: JsonObject
}

/**
 * A session that changed status (opened, started, closed). With a {@link SessionMerger} it is the whole
 * SessionRecord merged from every patch seen so far for the session; without one it holds only the fields of
 * this event's patch. Either way `session_id` and `status` are set.
 */
interface SessionSinkRecord
  extends SinkRecordBase, Partial<Omit<SessionRecord, 'origin' | 'session_id' | 'status'>> {
  readonly record_type: 'session'
  readonly session_id: string
  readonly status: SessionStatus
}

/** What sinks receive. */
export type SinkRecord = NodeRunSinkRecord | ActionSinkRecord | SessionSinkRecord

/** Keeps the merged session fields per session (bounded, least recently used first out). */
export interface SessionMerger {
  /** Merges the event's `session` patch into what is known of its session and returns the merged fields. */
  merge(
    origin: string,
    sessionId: string,
    patch: JsonObject,
  ): Partial<Omit<SessionRecord, 'origin' | 'session_id'>>
  /** True when the merger holds the session (it saw a patch of it and has not forgotten it since). */
  has(origin: string, sessionId: string): boolean
  /** Number of sessions held. */
  readonly size: number
}

/** Options of {@link createSessionMerger}. */
interface SessionMergerOptions {
  /** Sessions kept in memory (default 10 000); the least recently touched is forgotten first. */
  readonly maxSessions?: number
}

/**
 * Creates the state that turns session patches into whole session records. A session forgotten (evicted or
 * after a restart) starts again from the next patch, so a record may then carry only part of the fields.
 */
export function createSessionMerger(options: SessionMergerOptions = {}): SessionMerger {
  const maxSessions = options.maxSessions ?? 10_000
  if (!Number.isInteger(maxSessions) || maxSessions < 1) {
    throw new RangeError(
      `createSessionMerger: maxSessions must be a positive integer, got ${String(maxSessions)}`,
    )
  }
  // A Map iterates in insertion order; deleting and re-inserting on each touch makes it an LRU.
  const sessions = new Map<string, Record<string, unknown>>()
  return {
    merge(origin, sessionId, patch) {
      const key = `${origin}\u0000${sessionId}`
      const merged = { ...(sessions.get(key) ?? {}), ...patch }
      sessions.delete(key)
      sessions.set(key, merged)
      if (sessions.size > maxSessions) {
        const oldest = sessions.keys().next().value
        if (oldest !== undefined) sessions.delete(oldest)
      }
      return merged as Partial<Omit<SessionRecord, 'origin' | 'session_id'>>
    },
    has: (origin, sessionId) => sessions.has(`${origin}\u0000${sessionId}`),
    get size() {
      return sessions.size
    },
  }
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function asSubmitter(value: JsonValue | undefined): Submitter | null {
  return isSubmitter(value) ? value : null
}

/**
 * Turns one stored audit event into the records sinks receive (often none):
 * - `node.finished` with a `node_run` payload: a node-run record;
 * - `action.*`: an action record;
 * - any event whose `session` patch sets `status` (a session opened, started or closed): a session record,
 *   merged from every patch of the session when `sessions` is given, else the patch alone.
 *
 * Pass the same merger for every event, in log order, to get whole session records.
 */
export function toSinkRecords(event: AuditEvent, sessions?: SessionMerger): SinkRecord[] {
  const out: SinkRecord[] = []
  const baseId = `${event.origin}:${event.seq}`
  const base = (): SinkRecordBase => ({
    id: out.length === 0 ? baseId : `${baseId}.${out.length}`,
    origin: event.origin,
    seq: event.seq,
    kind: event.kind,
    time: event.time,
    schema_version: RECORD_SCHEMA_VERSION,
  })
  const payload = event.payload
  const decoded = decodeEvent(event)
  if (decoded.ok && decoded.event.kind === 'node.finished') {
    const run: NodeRunRecord = decoded.event.payload.node_run
    out.push({ ...base(), record_type: 'node_run', ...run })
  }
  if (event.kind.startsWith('action.')) {
    const submitter = asSubmitter(payload.submitter)
    out.push({
      ...base(),
      record_type: 'action',
      action: event.kind.slice('action.'.length),
      session_id: event.session_id,
      user: submitter?.user ?? null,
      submitter,
      details: payload,
    })
  }
  const patch = payload.session
  if (event.session_id !== null && isObject(patch) && typeof patch.status === 'string') {
    const fields = sessions ? sessions.merge(event.origin, event.session_id, patch) : patch
    out.push({
      ...(fields as Omit<SessionSinkRecord, keyof SinkRecordBase | 'record_type' | 'session_id'>),
      ...base(),
      record_type: 'session',
      session_id: event.session_id,
      status: patch.status as SessionStatus,
    })
  } else if (sessions && event.session_id !== null) {
    // Patches without a status (environment, models hashed later) still feed the merged record.
    const known = isObject(patch) ? sessions.merge(event.origin, event.session_id, patch) : undefined
    // Provenance arriving after the run is part of the record (issue 10 item 10): output SHA-256s (`outputs`
    // rows of output.hashed) and model hashes (models.hashed) ship the merged session again, hashes included.
    const rows = event.kind === 'output.hashed' && Array.isArray(payload.outputs) ? payload.outputs : []
    if (rows.length > 0 || (event.kind === 'models.hashed' && known)) {
      const current = known ?? sessions.merge(event.origin, event.session_id, {})
      const fields =
        rows.length > 0
          ? sessions.merge(event.origin, event.session_id, {
              outputs: mergeOutputs(current.outputs, rows),
            })
          : current
      // A session the merger no longer knows (evicted, or seen before a restart) has no status to ship.
      if (typeof fields.status === 'string') {
        out.push({
          ...(fields as Omit<SessionSinkRecord, keyof SinkRecordBase | 'record_type' | 'session_id'>),
          ...base(),
          record_type: 'session',
          session_id: event.session_id,
          status: fields.status,
        })
      }
    }
  }
  return out
}

/** Output rows by file: hashed rows replace the un-hashed ones of the same file, new files are appended. */
function mergeOutputs(previous: unknown, rows: readonly JsonValue[]): JsonObject[] {
  const key = (o: JsonObject): string =>
    [o.node_id, o.type, o.subfolder, o.filename].map((v) => (typeof v === 'string' ? v : '')).join('\u0000')
  const merged = new Map<string, JsonObject>()
  for (const o of Array.isArray(previous) ? (previous as JsonValue[]) : [])
    if (isObject(o)) merged.set(key(o), o)
  for (const row of rows) {
    if (!isObject(row)) continue
    const k = key(row)
    merged.set(k, { ...(merged.get(k) ?? {}), ...row })
  }
  return [...merged.values()]
}

/** The error message, type and stack of a failed node run or session, when there is one. */
export function recordError(
  record: SinkRecord,
): { message: string; type: string | null; stacktrace: string | null } | null {
  if (record.record_type === 'node_run') {
    if (record.status !== 'error' && record.error_message === null) return null
    return {
      message: record.error_message ?? 'node failed',
      type: record.exception_type,
      stacktrace: record.traceback ? record.traceback.join('') : null,
    }
  }
  if (record.record_type === 'session') {
    if (record.status !== 'error' && record.status !== 'rejected' && record.status !== 'lost') return null
    const err = record.error as JsonValue | undefined
    if (isObject(err)) {
      const message = err.exception_message ?? err.message ?? record.status_reason ?? record.status
      const traceback = err.traceback
      return {
        message: typeof message === 'string' ? message : stringifyJson(message, { strict: true }),
        type: typeof err.exception_type === 'string' ? err.exception_type : null,
        stacktrace: Array.isArray(traceback) ? traceback.map(String).join('') : null,
      }
    }
    return { message: record.status_reason ?? `session ${record.status}`, type: null, stacktrace: null }
  }
  return null
}

/** The record as a JSON value (its fields are all JSON already; interfaces just lack an index signature). */
export function recordToJson(record: SinkRecord): JsonObject {
  return asJsonObject(record)
}

/**
 * One record as one line of standard JSON (no newline), the record format of the JSON Schemas: integers beyond
 * 2^53 as plain digits, numbers as ComfyUI spelled them, NaN/Infinity as `{"$float": "NaN"}`, so any JSON
 * reader accepts it, seeds keep every digit and {@link parseRecord} reads back exactly what was sent.
 */
export function serializeRecord(record: SinkRecord): string {
  return stringifyJson(recordToJson(record), { tagged: true })
}

/** Reads back a line written by {@link serializeRecord}; a value that is not a record is refused. */
export function parseRecord(line: string): { ok: true; value: SinkRecord } | { ok: false; reason: string } {
  const parsed = parseJson(line, { tagged: true })
  if (!parsed.ok) return parsed
  const v = parsed.value
  if (!isSinkRecordShape(v)) {
    return { ok: false, reason: 'not a sink record' }
  }
  return { ok: true, value: v }
}

/** Epoch nanoseconds of an ISO 8601 time, as a decimal string (exact: ms × 10^6 in bigint). */
export function isoToUnixNanos(iso: string): string {
  const ms = Date.parse(iso)
  if (Number.isNaN(ms)) throw new RangeError(`isoToUnixNanos: not an ISO 8601 time: ${iso}`)
  return (BigInt(ms) * 1_000_000n).toString()
}

/** The fields every sink record has, checked on a line read back (the rest is as the writer serialized it). */
function isSinkRecordShape(v: JsonValue): v is JsonObject & SinkRecord {
  return (
    isObject(v) &&
    typeof v.id === 'string' &&
    typeof v.origin === 'string' &&
    typeof v.seq === 'number' &&
    (v.record_type === 'node_run' || v.record_type === 'action' || v.record_type === 'session')
  )
}

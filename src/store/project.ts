/**
 * The projection from audit events to derived rows (sessions, node runs, outputs), following the
 * `ProjectedPayload` convention. It is pure, so every dialect applies the same changes and the derived
 * tables can be rebuilt from the log (and compared with it by `verify`).
 */
import {
  NODE_RUN_STATUSES,
  SESSION_STATUSES,
  type AuditEvent,
  type JsonObject,
  type JsonValue,
  type OutputRecord,
  type SessionRecord,
} from '../audit/types.js'
import { isNodeRunRecord } from '../audit/event-schemas.js'
import {
  NODE_RUN_COLUMNS,
  OUTPUT_COLUMNS,
  SESSION_COLUMNS,
  compareKeys,
  type ColumnKind,
} from './derived-columns.js'
import type { DerivedRows, NodeRunRow } from './store.js'

/** Session fields an event sets; keys present overwrite the stored row. */
type SessionPatch = Partial<Omit<SessionRecord, 'origin' | 'session_id'>>

/** Output fields an event sets besides the key; keys present overwrite the stored row. */
type OutputPatch = Partial<Pick<OutputRecord, 'sha256' | 'bytes' | 'width' | 'height'>>

/** A change to one session row: the patches of one or more events, folded in log order. */
interface SessionChange {
  readonly origin: string
  readonly session_id: string
  readonly patch: SessionPatch
}

/** A change to one output row, keyed by (origin, session_id, node_id, type, subfolder, filename). */
interface OutputChange {
  readonly origin: string
  readonly session_id: string
  readonly node_id: string
  readonly type: string
  readonly subfolder: string
  readonly filename: string
  readonly patch: OutputPatch
  /** Time of the first event that named the output; a stored row keeps its own. */
  readonly time: string
}

/** What a run of events does to the derived tables: at most one change per row key. */
export interface DerivedChanges {
  readonly sessions: SessionChange[]
  /** Complete rows: the last event's record replaces the stored one. */
  readonly nodeRuns: NodeRunRow[]
  readonly outputs: OutputChange[]
  /** Projected fields that did not fit the convention and were skipped, naming origin, seq and field. */
  readonly problems: string[]
}

const SESSION_KINDS: ReadonlyMap<string, ColumnKind> = new Map(SESSION_COLUMNS)
const NODE_RUN_KINDS: ReadonlyMap<string, ColumnKind> = new Map(NODE_RUN_COLUMNS)
/** JSON shapes the record types promise, per table (other JSON fields take any value). */
interface Shapes {
  readonly arrays: ReadonlySet<string>
  readonly arraysOrNull: ReadonlySet<string>
  readonly objectsOrNull: ReadonlySet<string>
}
const SESSION_SHAPES: Shapes = {
  arrays: new Set(['models', 'seeds', 'outputs', 'flags']),
  arraysOrNull: new Set(),
  objectsOrNull: new Set(['submitter', 'environment']),
}
const NODE_RUN_SHAPES: Shapes = {
  arrays: new Set(),
  arraysOrNull: new Set(['traceback']),
  objectsOrNull: new Set(['outputs', 'progress']),
}
const NO_SHAPES: Shapes = { arrays: new Set(), arraysOrNull: new Set(), objectsOrNull: new Set() }

/** Session row key. */
export function sessionKey(origin: string, sessionId: string): string {
  return JSON.stringify([origin, sessionId])
}

/** Node run row key. */
function nodeRunKey(origin: string, sessionId: string, nodeId: string): string {
  return JSON.stringify([origin, sessionId, nodeId])
}

/** Output row key. */
function outputKey(o: Omit<OutputChange, 'patch' | 'time'> | OutputRecord): string {
  return JSON.stringify([o.origin, o.session_id, o.node_id, o.type, o.subfolder, o.filename])
}

/** The derived changes of events in log order, folded so each row key appears once. */
export function projectEvents(events: Iterable<AuditEvent>): DerivedChanges {
  const sessions = new Map<string, SessionChange>()
  const nodeRuns = new Map<string, NodeRunRow>()
  const outputs = new Map<string, OutputChange>()
  const problems: string[] = []
  for (const event of events) {
    const at = `${event.origin}#${event.seq}`
    const payload = event.payload
    if (payload.session !== undefined) {
      const patch = validSessionPatch(payload.session, at, problems)
      if (patch && event.session_id === null) problems.push(`${at}: payload.session without a session_id`)
      else if (patch) {
        const key = sessionKey(event.origin, event.session_id as string)
        const before = sessions.get(key)
        sessions.set(key, {
          origin: event.origin,
          session_id: event.session_id as string,
          patch: { ...before?.patch, ...patch },
        })
      }
    }
    if (payload.node_run !== undefined) {
      const row = validNodeRun(payload.node_run, event.origin, at, problems)
      if (row) nodeRuns.set(nodeRunKey(row.origin, row.session_id, row.node_id), row)
    }
    if (payload.outputs !== undefined) {
      if (!Array.isArray(payload.outputs)) problems.push(`${at}: payload.outputs is not an array`)
      else if (event.session_id === null) problems.push(`${at}: payload.outputs without a session_id`)
      else {
        payload.outputs.forEach((value, i) => {
          const change = validOutput(value, event, `${at}: payload.outputs[${i}]`, problems)
          if (!change) return
          const key = outputKey(change)
          const before = outputs.get(key)
          outputs.set(key, before ? { ...before, patch: { ...before.patch, ...change.patch } } : change)
        })
      }
    }
  }
  return {
    sessions: [...sessions.values()],
    nodeRuns: [...nodeRuns.values()],
    outputs: [...outputs.values()],
    problems,
  }
}

/** A session row nobody has described yet: queued, with empty lists. */
export function emptySession(origin: string, sessionId: string): SessionRecord {
  return {
    origin,
    session_id: sessionId,
    status: 'queued',
    http_status: null,
    number: null,
    client_id: null,
    submitter: null,
    prompt: null,
    workflow: null,
    prompt_sha256: null,
    workflow_sha256: null,
    extra_data: null,
    validation: null,
    queued_at: null,
    started_at: null,
    ended_at: null,
    duration_ms: null,
    environment: null,
    models: [],
    seeds: [],
    outputs: [],
    error: null,
    status_reason: null,
    flags: [],
  }
}

/** The session row after a change: keys present in the patch overwrite. */
export function applySessionChange(
  existing: SessionRecord | undefined,
  change: SessionChange,
): SessionRecord {
  return { ...(existing ?? emptySession(change.origin, change.session_id)), ...change.patch }
}

/** The output row after a change: keys present overwrite; the row keeps the time it was first seen. */
export function applyOutputChange(existing: OutputRecord | undefined, change: OutputChange): OutputRecord {
  const base: OutputRecord = existing ?? {
    origin: change.origin,
    session_id: change.session_id,
    node_id: change.node_id,
    type: change.type,
    subfolder: change.subfolder,
    filename: change.filename,
    sha256: null,
    bytes: null,
    width: null,
    height: null,
    time: change.time,
  }
  return { ...base, ...change.patch }
}

/** A replay of a log fed in chunks: it holds the derived rows, never the events. */
interface DerivedReplay {
  /** Folds the next events (in log order) into the rows, as an append of them would. */
  add(events: Iterable<AuditEvent>): void
  /** The rows so far, in the order `derivedRows()` returns them, and the projection problems met. */
  result(): DerivedRows & { problems: string[] }
}

/** Starts an empty {@link DerivedReplay}. */
export function createDerivedReplay(): DerivedReplay {
  const sessions = new Map<string, SessionRecord>()
  const nodeRuns = new Map<string, NodeRunRow>()
  const outputs = new Map<string, OutputRecord>()
  const problems: string[] = []
  return {
    add(events) {
      const changes = projectEvents(events)
      for (const c of changes.sessions) {
        const key = sessionKey(c.origin, c.session_id)
        sessions.set(key, applySessionChange(sessions.get(key), c))
      }
      for (const row of changes.nodeRuns)
        nodeRuns.set(nodeRunKey(row.origin, row.session_id, row.node_id), row)
      for (const c of changes.outputs) {
        const key = outputKey(c)
        outputs.set(key, applyOutputChange(outputs.get(key), c))
      }
      problems.push(...changes.problems)
    },
    result() {
      return {
        sessions: [...sessions.values()].sort((a, b) =>
          compareKeys([a.origin, a.session_id], [b.origin, b.session_id]),
        ),
        nodeRuns: [...nodeRuns.values()].sort((a, b) =>
          compareKeys([a.origin, a.session_id, a.node_id], [b.origin, b.session_id, b.node_id]),
        ),
        outputs: [...outputs.values()].sort((a, b) =>
          compareKeys(
            [a.origin, a.session_id, a.node_id, a.type, a.subfolder, a.filename],
            [b.origin, b.session_id, b.node_id, b.type, b.subfolder, b.filename],
          ),
        ),
        problems: [...problems],
      }
    },
  }
}

/**
 * The derived rows of a whole log, computed in memory in the same order `derivedRows()` returns them.
 * `verify` compares this with the stored rows; the contract tests compare it with incremental writes.
 */
export function replayDerived(events: Iterable<AuditEvent>): DerivedRows & { problems: string[] } {
  const replay = createDerivedReplay()
  replay.add(events)
  return replay.result()
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Checks one field against its column; returns an error text, or undefined when it fits. */
function fieldProblem(field: string, kind: ColumnKind, value: JsonValue, shapes: Shapes): string | undefined {
  if (field === 'status' && kind === 'text') return undefined // checked by the caller's vocabulary
  if (kind === 'text')
    return value === null || typeof value === 'string' ? undefined : 'expected a string or null'
  if (kind === 'number') {
    // SQLite stores NaN as NULL and the column types hold doubles: keep derived numbers finite.
    return value === null || (typeof value === 'number' && Number.isFinite(value))
      ? undefined
      : 'expected a finite number or null'
  }
  if (shapes.arrays.has(field)) return Array.isArray(value) ? undefined : 'expected an array'
  if (shapes.arraysOrNull.has(field))
    return value === null || Array.isArray(value) ? undefined : 'expected an array or null'
  if (shapes.objectsOrNull.has(field))
    return value === null || isObject(value) ? undefined : 'expected an object or null'
  return undefined
}

function validSessionPatch(value: JsonValue, at: string, problems: string[]): SessionPatch | undefined {
  if (!isObject(value)) {
    problems.push(`${at}: payload.session is not an object`)
    return undefined
  }
  const patch: Record<string, JsonValue> = {}
  for (const [field, fieldValue] of Object.entries(value)) {
    const kind = SESSION_KINDS.get(field)
    if (kind === undefined) {
      problems.push(`${at}: payload.session.${field} is not a session field`)
      continue
    }
    const problem =
      field === 'status'
        ? (SESSION_STATUSES as readonly JsonValue[]).includes(fieldValue)
          ? undefined
          : `expected one of ${SESSION_STATUSES.join(', ')}`
        : fieldProblem(field, kind, fieldValue, SESSION_SHAPES)
    if (problem) problems.push(`${at}: payload.session.${field}: ${problem}`)
    else patch[field] = fieldValue
  }
  // Validated field by field above against SessionRecord's columns.
  return patch as SessionPatch
}

function validNodeRun(
  value: JsonValue,
  origin: string,
  at: string,
  problems: string[],
): NodeRunRow | undefined {
  const where = `${at}: payload.node_run`
  if (!isObject(value)) {
    problems.push(`${where} is not an object`)
    return undefined
  }
  const required = ['session_id', 'node_id', 'timestamp_start'] as const
  for (const field of required) {
    if (typeof value[field] !== 'string') {
      problems.push(`${where}.${field}: expected a string`)
      return undefined
    }
  }
  if (!(NODE_RUN_STATUSES as readonly JsonValue[]).includes(value.status ?? null)) {
    problems.push(`${where}.status: expected one of ${NODE_RUN_STATUSES.join(', ')}`)
    return undefined
  }
  const row: Record<string, JsonValue> = {
    origin,
    session_id: value.session_id as string,
    node_id: value.node_id as string,
  }
  for (const [field, kind] of NODE_RUN_KINDS) {
    const fieldValue = value[field] ?? (field === 'inputs' ? {} : null)
    const problem =
      field === 'inputs' && !isObject(fieldValue)
        ? 'expected an object'
        : fieldProblem(field, kind, fieldValue, NODE_RUN_SHAPES)
    if (problem) {
      problems.push(`${where}.${field}: ${problem}`)
      return undefined
    }
    row[field] = fieldValue
  }
  for (const field of Object.keys(value)) {
    if (!NODE_RUN_KINDS.has(field) && field !== 'session_id' && field !== 'node_id') {
      problems.push(`${where}.${field} is not a node run field`)
    }
  }
  // The column checks above leave the element types of `traceback` and `progress` open; the record's
  // schema closes them, so the row is a NodeRunRecord by check rather than by assertion.
  if (!isNodeRunRecord(row)) {
    problems.push(`${where}: traceback or progress does not fit a node run record`)
    return undefined
  }
  return { ...row, origin }
}

function validOutput(
  value: JsonValue,
  event: AuditEvent,
  where: string,
  problems: string[],
): OutputChange | undefined {
  if (!isObject(value)) {
    problems.push(`${where} is not an object`)
    return undefined
  }
  for (const field of ['node_id', 'type', 'subfolder', 'filename'] as const) {
    if (typeof value[field] !== 'string') {
      problems.push(`${where}.${field}: expected a string`)
      return undefined
    }
  }
  const patch: Record<string, JsonValue> = {}
  for (const [field, kind] of OUTPUT_COLUMNS) {
    if (field === 'time' || value[field] === undefined) continue
    const problem = fieldProblem(field, kind, value[field], NO_SHAPES)
    if (problem) problems.push(`${where}.${field}: ${problem}`)
    else patch[field] = value[field]
  }
  return {
    origin: event.origin,
    session_id: event.session_id as string,
    node_id: value.node_id as string,
    type: value.type as string,
    subfolder: value.subfolder as string,
    filename: value.filename as string,
    patch: patch as OutputPatch,
    time: event.time,
  }
}

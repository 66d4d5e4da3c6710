/**
 * The store contract: a dialect is a small factory for a driver, and `createRuntimeStore()` wraps whatever
 * driver it creates (init-once, closed checks, sequence numbers, group commits, write mutex, timing).
 * Drivers stay small: they only translate these calls to their database.
 */
import type {
  AuditEvent,
  AuditEventKind,
  JsonValue,
  NodeRunRecord,
  OutputRecord,
  SessionRecord,
  SessionStatus,
} from '../audit/types.js'
import { parseJson, type ParseResult } from '../audit/json.js'
import type { AppendBatch } from './append-batch.js'
import type { AnalysisRollupFilter, UsageRollupRow, WorkflowRollupRow } from './analysis-rollups.js'
import type { RollupFilter, RollupRow } from './rollups.js'

/** What a dialect's database can do; the runtime store branches on these, never on the dialect's name. */
export interface StoreCapabilities {
  /** True when writes are atomic transactions (every dialect we ship). */
  readonly transactions: boolean
  /**
   * True when several writers may run transactions at once (PostgreSQL). False (SQLite) makes the
   * runtime store serialize every write through one mutex, because the database has a single writer.
   */
  readonly concurrentWriters: boolean
}

/**
 * A store backend: a name, what it can do, and a factory for its driver.
 * @example
 * const store = createRuntimeStore(createSqliteDialect({ path: './data/audit.db' }), { origin: 'comfy-audit/host-a' })
 */
export interface StoreDialect {
  /** Short name for logs and errors (`sqlite`, `postgres`); never branched on. */
  readonly name: string
  readonly capabilities: StoreCapabilities
  /** Creates an unopened driver; `init()` opens it. */
  createDriver(): StoreDriver
}

/** Which events to read. `since` is inclusive and `until` exclusive (ISO 8601 strings, compared as text). */
export interface EventFilter {
  readonly origin?: string
  /** Inclusive. */
  readonly fromSeq?: number
  /** Inclusive. */
  readonly toSeq?: number
  readonly sessionId?: string
  readonly kinds?: readonly AuditEventKind[]
  readonly since?: string
  readonly until?: string
  readonly limit?: number
}

/** Which sessions to read; `since`/`until` apply to `queued_at` (inclusive / exclusive). */
export interface SessionFilter {
  readonly origin?: string
  readonly since?: string
  readonly until?: string
  readonly status?: readonly SessionStatus[]
  /** `submitter.user`. */
  readonly user?: string
  /** The UI workflow's `id` (`workflow.id`); read through an index. */
  readonly workflow?: string
  /** Only these session ids (with `origin`, the primary key serves the lookup). */
  readonly sessionIds?: readonly string[]
  /**
   * Sessions whose prompt has this SHA-256 (`prompt_sha256`) or whose prompt without `is_changed` has this
   * graph hash (query-indexes.ts `promptGraphSha256`); read through an index.
   */
  readonly prompt?: { readonly sha256: string; readonly graphSha256: string }
  /**
   * Keyset paging: only the sessions after this one in the listing's order (it has a queue time; sessions
   * without one are not reached this way). The seek replaces `offset`, which reads every skipped row.
   */
  readonly after?: SessionCursor
  readonly limit?: number
  readonly offset?: number
}

/** Where a page of sessions ended: its last row's queue time and key. */
export interface SessionCursor {
  readonly queued_at: string
  readonly origin: string
  readonly session_id: string
}

/** Which node runs to read; `since`/`until` apply to `timestamp_start` (inclusive / exclusive). */
export interface NodeRunFilter {
  readonly sessionId?: string
  readonly origin?: string
  readonly nodeType?: string
  readonly since?: string
  readonly until?: string
  /** Runs of sessions of this UI workflow id (see {@link SessionFilter.workflow}). */
  readonly workflow?: string
  /** Only runs of these session ids (with `origin`, the primary key serves the lookup). */
  readonly sessionIds?: readonly string[]
  readonly limit?: number
  /**
   * Only the columns sums and sketches need (key, node_type, timestamps, duration_ms, status,
   * gpu_memory_used); the others read back null. Decoding the JSON columns is most of a read's cost, and
   * analysis reads thousands of rows at a window's edges only to count and sketch them.
   */
  readonly lean?: boolean
}

/** A node run as stored: the record plus the log it came from (node ids repeat across origins). */
export interface NodeRunRow extends NodeRunRecord {
  readonly origin: string
}

/** One row of the events table exactly as stored, for `verify`: the payload is the stored text, unparsed. */
export interface StoredEventRow {
  readonly origin: string
  readonly seq: number
  readonly kind: string
  readonly time: string
  readonly session_id: string | null
  readonly payload: string
  /** RFC 9162 leaf hash (lower-case hex) written with the event; null on rows written before it existed. */
  readonly leaf_hash: string | null
  /** Seq of the `audit.pruned`/`audit.erased` event that removed this row's payload, or null. */
  readonly pruned: number | null
  /** How `payload` is written (see EVENT_PAYLOAD_FORMAT in sql-common.ts); absent or 0: before migration 8. */
  readonly payload_format?: number
}

/** Reads a stored row's payload text as it was written (tagged standard JSON, or the older lossless form). */
export function parseStoredPayload(
  row: Pick<StoredEventRow, 'payload' | 'payload_format'>,
): ParseResult<JsonValue> {
  return parseJson(row.payload, { tagged: row.payload_format === 1 })
}

/** A signed checkpoint as stored (see src/ledger/checkpoint.ts). */
export interface StoredCheckpoint {
  readonly origin: string
  /** Tree size: the checkpoint covers seq 0 .. size-1. */
  readonly size: number
  /** Root hash, standard base64 (as in the note). */
  readonly root_hash: string
  /** The complete signed note. */
  readonly note: string
  /** ISO 8601 UTC time it was signed. */
  readonly created_at: string
}

/** Which payloads {@link StoreDriver.prunePayloads} removes. */
export interface PruneRequest {
  readonly origin: string
  /** Inclusive seq ranges `[from, to]`. */
  readonly ranges: readonly (readonly [number, number])[]
  /** Seq of the event that records the prune; stored in each pruned row. */
  readonly prunedBy: number
}

/** How many sessions one origin holds in one status (see {@link StoreDriver.sessionCounts}). */
export interface SessionCount {
  readonly origin: string
  readonly status: SessionStatus
  readonly count: number
}

/** Every derived row, as stored, in a deterministic order (by key). */
export interface DerivedRows {
  readonly sessions: SessionRecord[]
  readonly nodeRuns: NodeRunRow[]
  readonly outputs: OutputRecord[]
}

/** What an append or a rebuild did besides writing: projected fields skipped as malformed (see project.ts). */
export interface ProjectionOutcome {
  readonly problems: readonly string[]
}

/** What `rebuildDerived` did. */
export interface RebuildOutcome extends ProjectionOutcome {
  /** Events replayed. */
  readonly events: number
}

/**
 * The calls a dialect implements. Callers go through the runtime store, which guarantees that `init()` ran
 * once before anything else, that nothing runs after `close()`, and that appends of one origin never overlap.
 */
export interface StoreDriver {
  /** Opens the database and runs pending migrations (PostgreSQL under an advisory lock). */
  init(signal?: AbortSignal): Promise<void>
  /**
   * Writes the batch's events (origin and seq already assigned, leaf hashes beside them) and applies its
   * derived changes in ONE transaction: after a failure nothing of the call is stored.
   */
  append(batch: AppendBatch): Promise<ProjectionOutcome>
  /** Highest stored seq of the origin, or -1 when it has none. */
  lastSeq(origin: string): Promise<number>
  /** Origins present in the events table, sorted. */
  origins(): Promise<string[]>
  /**
   * Every session id the origin's log ever named, including sessions whose payloads were pruned or erased
   * (their rows keep the id), so an id once used is never taken for a new or a bypass session.
   */
  sessionIds(origin: string): Promise<string[]>
  /** Events in (origin, seq) order. Throws (naming origin and seq) on a stored payload that does not parse. */
  events(filter: EventFilter): AsyncIterable<AuditEvent>
  /** Events rows exactly as stored, in (origin, seq) order; `kinds` filters on the stored text. */
  rawEvents(filter: EventFilter): AsyncIterable<StoredEventRow>
  /** Sessions, newest first by `queued_at` (sessions without one last). */
  sessions(filter: SessionFilter): Promise<SessionRecord[]>
  /** One session; without `origin`, the first match in origin order. */
  session(sessionId: string, origin?: string): Promise<SessionRecord | undefined>
  /** Node runs by `timestamp_start`, then origin, session and node id. */
  nodeRuns(filter: NodeRunFilter): Promise<NodeRunRow[]>
  /** Rollup buckets (per origin, node type and hour) by hour; see rollups.ts. */
  rollups(filter: RollupFilter): Promise<RollupRow[]>
  /** Successful-run buckets per origin, node type, UI workflow and hour, by hour; see analysis-rollups.ts. */
  workflowRollups(filter: AnalysisRollupFilter): Promise<WorkflowRollupRow[]>
  /** Usage buckets per origin, person and hour of queue time, by hour; see analysis-rollups.ts. */
  usageRollups(filter: AnalysisRollupFilter): Promise<UsageRollupRow[]>
  /** Every stored output with this SHA-256 (lowercase hex), across origins. */
  outputsBySha256(sha256: string): Promise<OutputRecord[]>
  /** Derived rows as stored (all origins, or one), for `verify` to compare with a replay of the log. */
  derivedRows(origin?: string): Promise<DerivedRows>
  /** Sessions counted per origin and status (one row per pair present), by origin then status. */
  sessionCounts(): Promise<SessionCount[]>
  /**
   * Deletes the derived rows (of one origin, or all) and recomputes them from the log, in one transaction.
   */
  rebuildDerived(origin?: string): Promise<RebuildOutcome>
  /** Stores a signed checkpoint; a second one of the same (origin, size) is ignored. */
  addCheckpoint(checkpoint: StoredCheckpoint): Promise<void>
  /** Checkpoints of an origin by ascending size. */
  checkpoints(origin: string): Promise<StoredCheckpoint[]>
  /**
   * Replaces the payloads of the events in the ranges (not yet pruned) by `{}`, marks them with `prunedBy`,
   * keeps their leaf hashes, and rebuilds the origin's derived rows, in one transaction. Returns how many
   * rows it pruned.
   */
  prunePayloads(request: PruneRequest): Promise<number>
  /** A value of the gateway's key-value state, or undefined. */
  getState(key: string): Promise<JsonValue | undefined>
  /** Sets (or replaces) a state value; stored losslessly. */
  setState(key: string, value: JsonValue): Promise<void>
  /** Closes connections; idempotent. */
  close(): Promise<void>
}

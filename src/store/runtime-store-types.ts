/**
 * The runtime store's public types: its options, its health and statistics, and the store interface itself.
 * runtime-store.ts re-exports them; the modules of the write path (write-queue.ts, group-commit.ts) and of
 * the driver calls (store-reads.ts) take them from here.
 */
import type { AnalysisRollupFilter, UsageRollupRow, WorkflowRollupRow } from './analysis-rollups.js'
import type { RollupFilter, RollupRow } from './rollups.js'
import type { AuditEvent, AuditEventInput, JsonValue, OutputRecord, SessionRecord } from '../audit/types.js'
import type {
  DerivedRows,
  EventFilter,
  NodeRunFilter,
  NodeRunRow,
  PruneRequest,
  RebuildOutcome,
  SessionCount,
  SessionFilter,
  StoreCapabilities,
  StoredCheckpoint,
  StoredEventRow,
} from './store.js'
import type { EventSpool } from './event-spool.js'

/** Options of {@link createRuntimeStore}. */
export interface RuntimeStoreOptions {
  /** This gateway's log (e.g. `comfy-audit/host-a`); appends get this origin and its next seq numbers. */
  readonly origin: string
  /** Receives problems nobody awaits: malformed projected fields (the event itself is stored). */
  readonly onError?: (error: unknown, context: string) => void
  /** How long an idle store waits for more appends before committing, in ms (default 2). */
  readonly groupCommitDelayMillis?: number
  /** Most events per transaction (default 1000); a single larger append still commits whole. */
  readonly maxGroupEvents?: number
  /** Called after every commit attempt, e.g. to feed a histogram. */
  readonly onCommit?: (info: CommitInfo) => void
  /** What appends do while the database refuses commits (busy past busy_timeout, restarting, disk full). */
  readonly outage?: StoreOutageOptions
  /** Called when {@link StoreHealth.state} changes (the gateway logs it loudly); must not throw. */
  readonly onHealthChange?: (health: StoreHealth) => void
}

/**
 * Outage handling. A commit that fails for a reason that passes (isTransientStoreError, group-commit.ts)
 * is retried with backoff, its appends neither rejected nor reordered; appends meanwhile wait in memory up
 * to `maxQueuedEvents`, then in the write-ahead `spool` on disk, and everything commits in order once the
 * database is back. Past the spool's quota the store reports `over-quota` (the gateway then refuses new
 * prompts) and keeps what still arrives in memory rather than drop it.
 */
export interface StoreOutageOptions {
  /** Events held in memory while the database is failing before spilling to the spool (default 10 000). */
  readonly maxQueuedEvents?: number
  /** The write-ahead spool (see event-spool.ts); without one, past `maxQueuedEvents` is over quota. */
  readonly spool?: EventSpool
  /** First retry delay, ms (default 50); doubles per failure up to `retryMaxMillis` (default 2000). */
  readonly retryMinMillis?: number
  readonly retryMaxMillis?: number
  /** How long close() keeps retrying before spooling what is left for the next start (default 5000 ms). */
  readonly closeGraceMillis?: number
}

/** States of the store's write path: committing normally, retrying a failing database, or past the spool's quota. */
export const STORE_HEALTH_STATES = ['ok', 'retrying', 'over-quota'] as const
export type StoreHealthState = (typeof STORE_HEALTH_STATES)[number]

/** The write path's health, answered synchronously (for the POST /prompt check, `/_audit/health`, metrics). */
export interface StoreHealth {
  readonly state: StoreHealthState
  /** ISO time of the first failed commit of the current outage, or null. */
  readonly failingSince: string | null
  /** The last commit error's message, or null. */
  readonly lastError: string | null
  /** Events acknowledged to capture and waiting in memory. */
  readonly queuedEvents: number
  /** Events waiting in the write-ahead spool written by this process (plus segments of an earlier one). */
  readonly spooledEvents: number
  readonly spooledBytes: number
  /** Failed commit attempts since start. */
  readonly failedCommits: number
}

/** One transaction of the group committer. */
export interface CommitInfo {
  readonly events: number
  /** How many `append()` calls shared the transaction. */
  readonly appends: number
  readonly durationMillis: number
  readonly ok: boolean
}

/** Running totals since the store was created. */
export interface StoreStats {
  readonly commits: number
  readonly failedCommits: number
  readonly events: number
  readonly totalCommitMillis: number
  readonly maxCommitMillis: number
}

/** A store ready for the gateway: any dialect, with the runtime guarantees described in this module. */
export interface RuntimeStore {
  readonly origin: string
  /** The dialect's name, for logs. */
  readonly dialect: string
  readonly capabilities: StoreCapabilities
  /** Opens the store and runs migrations; called implicitly by every other method; runs once. */
  init(signal?: AbortSignal): Promise<void>
  /**
   * Appends events to this origin's log; resolves with the stored events (origin and seq assigned) once they
   * are durably committed together with their derived rows. On failure it rejects, nothing of the call is
   * stored (unless the database committed and only the acknowledgement was lost), and no seq is consumed.
   */
  append(inputs: readonly AuditEventInput[]): Promise<AuditEvent[]>
  /** Resolves once everything appended before the call is committed (or failed). */
  flush(): Promise<void>
  /** Highest seq of an origin (default: this one), or -1. */
  lastSeq(origin?: string): Promise<number>
  origins(): Promise<string[]>
  /** Every session id the origin's log ever named (default: this store's origin), pruned and erased ones too. */
  sessionIds(origin?: string): Promise<string[]>
  events(filter?: EventFilter): AsyncIterable<AuditEvent>
  rawEvents(filter?: EventFilter): AsyncIterable<StoredEventRow>
  sessions(filter?: SessionFilter): Promise<SessionRecord[]>
  session(sessionId: string, origin?: string): Promise<SessionRecord | undefined>
  nodeRuns(filter?: NodeRunFilter): Promise<NodeRunRow[]>
  /** Rollup buckets (origin × node type × hour) by hour. */
  rollups(filter?: RollupFilter): Promise<RollupRow[]>
  /** Successful-run buckets (origin × node type × UI workflow × hour) by hour. */
  workflowRollups(filter?: AnalysisRollupFilter): Promise<WorkflowRollupRow[]>
  /** Usage buckets (origin × person × hour of queue time) by hour. */
  usageRollups(filter?: AnalysisRollupFilter): Promise<UsageRollupRow[]>
  outputsBySha256(sha256: string): Promise<OutputRecord[]>
  derivedRows(origin?: string): Promise<DerivedRows>
  /** Sessions counted per origin and status by the database, by origin then status. */
  sessionCounts(): Promise<SessionCount[]>
  /** Recomputes the derived tables (of one origin, or all) from the log, in one transaction. */
  rebuildDerived(origin?: string): Promise<RebuildOutcome>
  getState(key: string): Promise<JsonValue | undefined>
  setState(key: string, value: JsonValue): Promise<void>
  /** Stores a signed checkpoint (ignored when one of that origin and size exists). */
  addCheckpoint(checkpoint: StoredCheckpoint): Promise<void>
  /** Checkpoints of an origin (default: this one) by ascending size. */
  checkpoints(origin?: string): Promise<StoredCheckpoint[]>
  /** Removes payloads in seq ranges, keeping leaf hashes, and rebuilds the derived rows (see StoreDriver). */
  prunePayloads(request: PruneRequest): Promise<number>
  /**
   * Calls `listener` after every successful commit of this store's appends with the committed events, in
   * seq order (commits never overlap). Returns a function that removes the listener. A throwing listener
   * is reported through `onError` and does not affect the append.
   */
  onCommitted(listener: (events: readonly AuditEvent[]) => void): () => void
  stats(): StoreStats
  /** The write path's health; synchronous and cheap (no database call). */
  health(): StoreHealth
  /** Commits what is queued, then closes the driver; idempotent. Later calls reject. */
  close(): Promise<void>
}

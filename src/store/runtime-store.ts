/**
 * The runtime store wraps any dialect's driver with what every driver needs and none should repeat:
 * init-once, closed checks, per-origin sequence numbers, small group commits, a write mutex for databases
 * with a single writer, and commit timing.
 *
 * Group commit: `append()` enqueues and resolves only once its events are committed. While a commit runs,
 * new appends queue up and go together in the next transaction; an idle store waits `groupCommitDelayMillis`
 * after the first append so that events arriving together share one transaction (one fsync).
 */
import type { AnalysisRollupFilter, UsageRollupRow, WorkflowRollupRow } from './analysis-rollups.js'
import type { RollupFilter, RollupRow } from './rollups.js'
import {
  AUDIT_EVENT_KINDS,
  type AuditEvent,
  type AuditEventInput,
  type JsonValue,
  type OutputRecord,
  type SessionRecord,
} from '../audit/types.js'
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
  StoreDialect,
  StoreDriver,
  StoredCheckpoint,
  StoredEventRow,
} from './store.js'
import type { EventSpool } from './event-spool.js'
import { prepareAppend } from './append-batch.js'

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
 * Outage handling. A commit that fails for a reason that passes (see {@link isTransientStoreError}) is
 * retried with backoff, its appends neither rejected nor reordered; appends meanwhile wait in memory up to
 * `maxQueuedEvents`, then in the write-ahead `spool` on disk, and everything commits in order once the
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

const KINDS: ReadonlySet<string> = new Set(AUDIT_EVENT_KINDS)
/** #commitGroup's answer when the database failed for a passing reason and a retry is scheduled. */
const RETRY = Symbol('retry')

interface Pending {
  readonly inputs: readonly AuditEventInput[]
  readonly resolve: (events: AuditEvent[]) => void
  readonly reject: (error: unknown) => void
}

/** An append whose inputs went to the spool: only its size and callbacks stay in memory. */
interface Spooled {
  readonly count: number
  readonly resolve: (events: AuditEvent[]) => void
  readonly reject: (error: unknown) => void
}

const TRANSIENT_CODES =
  /^(SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|PROTOCOL)|ENOSPC|EIO|EDQUOT|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|08...|53...|57P0[1-3]|40001|40P01|58030)/
const TRANSIENT_MESSAGES =
  /connection terminated|connection (is )?(closed|ended)|terminating connection|timeout exceeded when trying to connect|database is locked|database system is (starting up|shutting down)|disk (is )?full|no space left/i

/**
 * Whether a commit error is one that passes when the database is back (busy, locked, restarting, out of
 * disk, connection lost), so the commit is retried; any other error (a bad event, a bug) fails its append.
 */
export function isTransientStoreError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { code, message } = error as { code?: unknown; message?: unknown }
  if (typeof code === 'string' && TRANSIENT_CODES.test(code)) return true
  return typeof message === 'string' && TRANSIENT_MESSAGES.test(message)
}

/** Checks an input at append() time: a bad one is a bug in our capture code, refused at once. */
function validateInput(input: AuditEventInput): void {
  if (!KINDS.has(input.kind)) throw new TypeError(`unknown audit event kind ${JSON.stringify(input.kind)}`)
  if (typeof input.time !== 'string') throw new TypeError(`audit event ${input.kind}: time must be a string`)
  if (input.session_id !== null && typeof input.session_id !== 'string') {
    throw new TypeError(`audit event ${input.kind}: session_id must be a string or null`)
  }
  if (typeof input.payload !== 'object' || input.payload === null || Array.isArray(input.payload)) {
    throw new TypeError(`audit event ${input.kind}: payload must be an object`)
  }
}

/**
 * Wraps a dialect's driver.
 * @example
 * const store = createRuntimeStore(createSqliteDialect({ path: ':memory:' }), { origin: 'comfy-audit/test' })
 * const [event] = await store.append([{ kind: 'gateway.started', time: new Date().toISOString(), session_id: null, payload: {} }])
 */
export function createRuntimeStore(dialect: StoreDialect, options: RuntimeStoreOptions): RuntimeStore {
  return new DefaultRuntimeStore(dialect, options)
}

class DefaultRuntimeStore implements RuntimeStore {
  readonly origin: string
  readonly dialect: string
  readonly capabilities: StoreCapabilities
  readonly #driver: StoreDriver
  readonly #options: RuntimeStoreOptions
  readonly #delayMillis: number
  readonly #maxGroupEvents: number
  #initPromise: Promise<void> | undefined
  #closed = false
  #closePromise: Promise<void> | undefined
  /** Next seq for this origin; undefined until read from the database (again after a failed commit). */
  #nextSeq: number | undefined
  #queue: Pending[] = []
  #queuedEvents = 0
  /** Appends behind the spool (they arrived while it held segments): spooled next, or kept when it is full. */
  #tail: Pending[] = []
  #tailEvents = 0
  /** Appends whose inputs this process wrote to each spool segment, in order. */
  readonly #spooled = new Map<string, Spooled[]>()
  #spooledEvents = 0
  #spilling: Promise<void> | undefined
  /** The spool refused a write (quota or disk): appends stay in #tail, over quota. */
  #spoolRefused = false
  #failure: { since: string; error: string } | null = null
  #lastError: string | null = null
  #retryDelay = 0
  #retryTimer: NodeJS.Timeout | undefined
  /** A commit whose outcome is unknown (the connection dropped during it): checked before the next. */
  #inDoubt: { firstSeq: number; count: number } | undefined
  /** Set by close() after its grace period: no more commit attempts. */
  #stopped = false
  #lastHealthState: StoreHealthState = 'ok'
  #timer: NodeJS.Timeout | undefined
  #committing: Promise<void> | undefined
  #writeLock: Promise<void> = Promise.resolve()
  readonly #committedListeners = new Set<(events: readonly AuditEvent[]) => void>()
  #stats = { commits: 0, failedCommits: 0, events: 0, totalCommitMillis: 0, maxCommitMillis: 0 }

  constructor(dialect: StoreDialect, options: RuntimeStoreOptions) {
    if (typeof options.origin !== 'string' || options.origin === '') {
      throw new TypeError(`store origin must be a non-empty string, got ${JSON.stringify(options.origin)}`)
    }
    this.origin = options.origin
    this.dialect = dialect.name
    this.capabilities = dialect.capabilities
    this.#driver = dialect.createDriver()
    this.#options = options
    this.#delayMillis = Math.max(0, options.groupCommitDelayMillis ?? 2)
    this.#maxGroupEvents = Math.max(1, options.maxGroupEvents ?? 1000)
  }

  init(signal?: AbortSignal): Promise<void> {
    if (this.#closed) return Promise.reject(closedError())
    return this.#init(signal)
  }

  /** Init without the closed check: close() still commits what was queued before it. */
  #init(signal?: AbortSignal): Promise<void> {
    this.#initPromise ??= this.#driver.init(signal).then(
      () => {
        // Events an earlier process left in the write-ahead spool are committed first.
        if (this.#spooledSegments() > 0) this.#startCommitting()
      },
      (error: unknown) => {
        // Let a later call try again (the database may come up) instead of caching the failure forever.
        this.#initPromise = undefined
        throw error
      },
    )
    return this.#initPromise
  }

  append(inputs: readonly AuditEventInput[]): Promise<AuditEvent[]> {
    if (this.#closed) return Promise.reject(closedError())
    if (inputs.length === 0) return Promise.resolve([])
    try {
      for (const input of inputs) validateInput(input)
    } catch (error) {
      return Promise.reject(error)
    }
    return new Promise<AuditEvent[]>((resolve, reject) => {
      // A copy: the caller may reuse its array before the commit runs.
      const pending = { inputs: [...inputs], resolve, reject }
      const behindSpool = this.#tail.length > 0 || this.#spooledSegments() > 0 || this.#spilling !== undefined
      const memoryFull = this.#failure !== null && this.#queuedEvents + inputs.length > this.#maxQueued()
      if (behindSpool || memoryFull) {
        this.#tail.push(pending)
        this.#tailEvents += inputs.length
        this.#spill()
      } else {
        this.#queue.push(pending)
        this.#queuedEvents += inputs.length
      }
      this.#schedule()
      this.#healthChanged()
    })
  }

  async flush(): Promise<void> {
    while (!this.#stopped && (this.#committing || this.#retryTimer || this.#hasWork())) {
      if (this.#committing) await this.#committing
      else if (this.#retryTimer) await new Promise((resolve) => setTimeout(resolve, this.#retryDelay))
      else this.#startCommitting()
    }
  }

  health(): StoreHealth {
    return {
      state: this.#healthState(),
      failingSince: this.#failure?.since ?? null,
      lastError: this.#lastError,
      queuedEvents: this.#queuedEvents + this.#tailEvents,
      spooledEvents: this.#spooledEvents,
      spooledBytes: this.#outage.spool?.sizeBytes() ?? 0,
      failedCommits: this.#stats.failedCommits,
    }
  }

  get #outage(): StoreOutageOptions {
    return this.#options.outage ?? {}
  }

  #maxQueued(): number {
    return Math.max(1, this.#outage.maxQueuedEvents ?? 10_000)
  }

  #spooledSegments(): number {
    return this.#outage.spool?.segments().length ?? 0
  }

  #hasWork(): boolean {
    return this.#queue.length > 0 || this.#tail.length > 0 || this.#spooledSegments() > 0
  }

  #healthState(): StoreHealthState {
    // Without a spool, the memory queue is all there is: past its bound is over quota.
    const overQuota = this.#outage.spool ? this.#spoolRefused && this.#tail.length > 0 : this.#tail.length > 0
    if (overQuota) return 'over-quota'
    return this.#failure ? 'retrying' : 'ok'
  }

  #healthChanged(): void {
    const state = this.#healthState()
    if (state === this.#lastHealthState) return
    this.#lastHealthState = state
    try {
      this.#options.onHealthChange?.(this.health())
    } catch (error) {
      this.#options.onError?.(error, 'store.onHealthChange')
    }
  }

  /** Writes #tail to the spool, oldest first, one segment per round; stops when the spool refuses. */
  #spill(): void {
    const spool = this.#outage.spool
    if (!spool || this.#spilling || this.#tail.length === 0) return
    this.#spilling = (async () => {
      while (this.#tail.length > 0) {
        const chunk: Pending[] = []
        let count = 0
        while (this.#tail.length > 0 && (chunk.length === 0 || count < this.#maxGroupEvents)) {
          const next = this.#tail.shift() as Pending
          chunk.push(next)
          count += next.inputs.length
        }
        this.#tailEvents -= count
        let outcome: 'written' | 'full' | 'failed'
        try {
          outcome = await spool.write(chunk.flatMap((p) => p.inputs))
        } catch (error) {
          this.#options.onError?.(error, 'store.spool write')
          outcome = 'failed'
        }
        if (outcome !== 'written') {
          // Back to the front, in order: they stay in memory (never dropped) and the store says over quota.
          this.#tail.unshift(...chunk)
          this.#tailEvents += count
          this.#spoolRefused = true
          return
        }
        const name = spool.segments().at(-1) as string
        this.#spooled.set(
          name,
          chunk.map((p) => ({ count: p.inputs.length, resolve: p.resolve, reject: p.reject })),
        )
        this.#spooledEvents += count
        this.#spoolRefused = false
      }
    })().finally(() => {
      this.#spilling = undefined
      this.#healthChanged()
    })
  }

  async lastSeq(origin?: string): Promise<number> {
    await this.#ready()
    return this.#driver.lastSeq(origin ?? this.origin)
  }

  async origins(): Promise<string[]> {
    await this.#ready()
    return this.#driver.origins()
  }

  async sessionIds(origin?: string): Promise<string[]> {
    await this.#ready()
    return this.#driver.sessionIds(origin ?? this.origin)
  }

  async *events(filter: EventFilter = {}): AsyncGenerator<AuditEvent> {
    await this.#ready()
    yield* this.#driver.events(filter)
  }

  async *rawEvents(filter: EventFilter = {}): AsyncGenerator<StoredEventRow> {
    await this.#ready()
    yield* this.#driver.rawEvents(filter)
  }

  async sessions(filter: SessionFilter = {}): Promise<SessionRecord[]> {
    await this.#ready()
    return this.#driver.sessions(filter)
  }

  async session(sessionId: string, origin?: string): Promise<SessionRecord | undefined> {
    await this.#ready()
    return this.#driver.session(sessionId, origin)
  }

  async nodeRuns(filter: NodeRunFilter = {}): Promise<NodeRunRow[]> {
    await this.#ready()
    return this.#driver.nodeRuns(filter)
  }

  async rollups(filter: RollupFilter = {}): Promise<RollupRow[]> {
    await this.#ready()
    return this.#driver.rollups(filter)
  }

  async workflowRollups(filter: AnalysisRollupFilter = {}): Promise<WorkflowRollupRow[]> {
    await this.#ready()
    return this.#driver.workflowRollups(filter)
  }

  async usageRollups(filter: AnalysisRollupFilter = {}): Promise<UsageRollupRow[]> {
    await this.#ready()
    return this.#driver.usageRollups(filter)
  }

  async outputsBySha256(sha256: string): Promise<OutputRecord[]> {
    await this.#ready()
    return this.#driver.outputsBySha256(sha256)
  }

  async derivedRows(origin?: string): Promise<DerivedRows> {
    await this.#ready()
    return this.#driver.derivedRows(origin)
  }

  async sessionCounts(): Promise<SessionCount[]> {
    await this.#ready()
    return this.#driver.sessionCounts()
  }

  async rebuildDerived(origin?: string): Promise<RebuildOutcome> {
    await this.#ready()
    // Appends queued before the rebuild go first, so the rebuilt tables cover everything acknowledged so far.
    await this.flush()
    const outcome = await this.#write(() => this.#driver.rebuildDerived(origin))
    this.#reportProblems(outcome.problems)
    return outcome
  }

  async getState(key: string): Promise<JsonValue | undefined> {
    await this.#ready()
    return this.#driver.getState(key)
  }

  async setState(key: string, value: JsonValue): Promise<void> {
    await this.#ready()
    await this.#write(() => this.#driver.setState(key, value))
  }

  async addCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    await this.#ready()
    await this.#write(() => this.#driver.addCheckpoint(checkpoint))
  }

  async checkpoints(origin?: string): Promise<StoredCheckpoint[]> {
    await this.#ready()
    return this.#driver.checkpoints(origin ?? this.origin)
  }

  async prunePayloads(request: PruneRequest): Promise<number> {
    await this.#ready()
    await this.flush()
    return this.#write(() => this.#driver.prunePayloads(request))
  }

  onCommitted(listener: (events: readonly AuditEvent[]) => void): () => void {
    // Wrapped so that adding the same function twice still gives two independent registrations.
    const entry = (events: readonly AuditEvent[]): void => listener(events)
    this.#committedListeners.add(entry)
    return () => this.#committedListeners.delete(entry)
  }

  stats(): StoreStats {
    return { ...this.#stats }
  }

  close(): Promise<void> {
    this.#closePromise ??= (async () => {
      this.#closed = true
      try {
        // Acknowledge (or fail) everything already queued before the driver goes away; a database that stays
        // down gets a grace period, then what is left goes to the spool for the next start.
        let graceTimer: NodeJS.Timeout | undefined
        const grace = new Promise<void>((resolve) => {
          graceTimer = setTimeout(resolve, this.#outage.closeGraceMillis ?? 5000)
        })
        await Promise.race([this.flush(), grace])
        clearTimeout(graceTimer)
        if (this.#hasWork() || this.#retryTimer || this.#committing) await this.#stopAndSpool()
      } finally {
        await this.#driver.close()
      }
    })()
    return this.#closePromise
  }

  /** close() on a database still down: stop retrying and leave every unacknowledged event in the spool. */
  async #stopAndSpool(): Promise<void> {
    this.#stopped = true
    if (this.#retryTimer) clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    await this.#committing
    await this.#spilling
    const error = new Error(
      'store unavailable at close: events left in the write-ahead spool for the next start',
    )
    const rest = [...this.#queue, ...this.#tail]
    this.#queue = []
    this.#tail = []
    this.#queuedEvents = 0
    this.#tailEvents = 0
    const spool = this.#outage.spool
    let kept = false
    if (spool && rest.length > 0) {
      try {
        // Behind the segments already there, so the next start commits everything in order.
        kept = (await spool.write(rest.flatMap((p) => p.inputs))) === 'written'
      } catch (writeError) {
        this.#options.onError?.(writeError, 'store.spool write at close')
      }
    }
    const count = rest.reduce((n, p) => n + p.inputs.length, 0)
    if (rest.length > 0 && !kept) {
      this.#options.onError?.(
        new Error(`store unavailable at close: ${count} acknowledged events could not be kept and are lost`),
        'store.close',
      )
    }
    for (const p of rest) p.reject(kept ? error : new Error('store unavailable at close; events lost'))
    for (const waiters of this.#spooled.values()) for (const w of waiters) w.reject(error)
    this.#spooled.clear()
  }

  async #ready(): Promise<void> {
    if (this.#closed) throw closedError()
    await this.init()
  }

  /** Runs a write; with a single-writer database, one at a time across appends, state and rebuilds. */
  async #write<T>(fn: () => Promise<T>): Promise<T> {
    if (this.capabilities.concurrentWriters) return fn()
    const previous = this.#writeLock
    let release!: () => void
    this.#writeLock = new Promise<void>((resolve) => (release = resolve))
    await previous
    try {
      return await fn()
    } finally {
      release()
    }
  }

  #schedule(): void {
    if (this.#committing) return // the running loop takes the queue when its commit ends
    if (this.#retryTimer || this.#stopped) return // the database is failing: the retry timer restarts the loop
    if (this.#queuedEvents >= this.#maxGroupEvents || this.#delayMillis === 0 || this.#closed) {
      this.#startCommitting()
      return
    }
    // Not unref()ed: queued events are unacknowledged, and the process must not exit before they commit.
    this.#timer ??= setTimeout(() => this.#startCommitting(), this.#delayMillis)
  }

  #startCommitting(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#committing) return
    this.#committing = this.#commitLoop().finally(() => {
      this.#committing = undefined
      // An append may have arrived between the loop's last check and here.
      if (this.#queue.length > 0) this.#schedule()
    })
  }

  async #commitLoop(): Promise<void> {
    for (;;) {
      if (this.#stopped) return
      if (this.#queue.length === 0) {
        // Memory first, then the spool oldest first, then what arrived behind the spool: commit order is
        // append order.
        if (this.#spilling) await this.#spilling
        const segment = this.#outage.spool?.segments()[0]
        if (segment !== undefined) {
          if (!(await this.#commitSegment(segment))) return
          continue
        }
        if (this.#tail.length === 0) return
        this.#queue = this.#tail
        this.#queuedEvents = this.#tailEvents
        this.#tail = []
        this.#tailEvents = 0
        this.#spoolRefused = false
        this.#healthChanged()
      }
      const group: Pending[] = []
      let count = 0
      while (this.#queue.length > 0) {
        const next = this.#queue[0] as Pending
        // After a commit of unknown outcome, the same group again (see #commitGroup), not a larger one.
        if (group.length > 0 && count + next.inputs.length > (this.#inDoubt?.count ?? this.#maxGroupEvents))
          break
        group.push(next)
        count += next.inputs.length
        this.#queue.shift()
      }
      this.#queuedEvents -= count
      const failed = await this.#commitGroup(group)
      if (failed === RETRY) {
        // Back to the front, in order, and try again after the backoff.
        this.#queue.unshift(...group)
        this.#queuedEvents += count
        return
      }
      if (failed && group.length > 1) {
        // One bad append must not fail its neighbours: retry each alone, in order.
        for (let i = 0; i < group.length; i++) {
          if ((await this.#commitGroup([group[i] as Pending], failed)) === RETRY) {
            const rest = group.slice(i)
            this.#queue.unshift(...rest)
            this.#queuedEvents += rest.reduce((n, p) => n + p.inputs.length, 0)
            return
          }
        }
      }
    }
  }

  /** Commits one spool segment (whole); false when the database failed again (retry scheduled). */
  async #commitSegment(name: string): Promise<boolean> {
    const spool = this.#outage.spool as EventSpool
    const waiters = this.#spooled.get(name) ?? []
    let inputs: readonly AuditEventInput[]
    try {
      const segment = await spool.read(name)
      if (segment.unreadable > 0) {
        this.#options.onError?.(
          new Error(`store spool segment ${name}: ${segment.unreadable} unreadable lines not committed`),
          'store.spool read',
        )
      }
      inputs = segment.inputs
    } catch (error) {
      this.#options.onError?.(error, `store.spool read ${name}`)
      inputs = []
    }
    const outcome = await this.#commitGroup([
      {
        inputs,
        resolve: (events) => {
          let offset = 0
          for (const w of waiters) {
            w.resolve(events.slice(offset, offset + w.count))
            offset += w.count
          }
        },
        reject: (error) => {
          for (const w of waiters) w.reject(error)
        },
      },
    ])
    if (outcome === RETRY) return false
    // Committed, or refused for good (reported and its appends rejected): either way it leaves the spool.
    await spool.remove(name).catch((error: unknown) => this.#options.onError?.(error, 'store.spool remove'))
    this.#spooled.delete(name)
    this.#spooledEvents -= waiters.reduce((n, w) => n + w.count, 0)
    if (this.#spoolRefused) this.#spill()
    return true
  }

  #scheduleRetry(error: unknown): void {
    const min = Math.max(1, this.#outage.retryMinMillis ?? 50)
    const max = Math.max(min, this.#outage.retryMaxMillis ?? 2000)
    this.#retryDelay = this.#retryDelay === 0 ? min : Math.min(max, this.#retryDelay * 2)
    const message = error instanceof Error ? error.message : String(error)
    this.#lastError = message
    if (!this.#failure) {
      this.#failure = { since: new Date().toISOString(), error: message }
      this.#options.onError?.(
        new Error(
          `store: commit failed, retrying with backoff (events wait in memory, then on disk): ${message}`,
        ),
        'store.outage',
      )
    }
    // Not unref()ed: the waiting events are unacknowledged by the database.
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#startCommitting()
    }, this.#retryDelay)
    this.#healthChanged()
  }

  /**
   * Commits a group in one transaction and resolves its callers. On failure it returns the error, and
   * rejects the callers only when the group will not be retried (a single caller, or already a retry).
   */
  async #commitGroup(group: readonly Pending[], retryOf?: unknown): Promise<unknown> {
    const started = performance.now()
    let events: AuditEvent[] = []
    let attempted = false
    try {
      await this.#init()
      if (this.#nextSeq === undefined) {
        const last = await this.#driver.lastSeq(this.origin)
        const doubt = this.#inDoubt
        this.#inDoubt = undefined
        if (doubt && last === doubt.firstSeq + doubt.count - 1) {
          // The failed attempt had committed (only its answer was lost): it is this same group, which was
          // put back at the front. Acknowledge it with those seq numbers instead of appending it twice.
          let seq = doubt.firstSeq
          events = group.flatMap((p) => p.inputs.map((input) => this.#toEvent(input, seq++)))
          if (events.length === doubt.count) {
            this.#nextSeq = seq
            return this.#committed(group, events, started, { problems: [] })
          }
        }
        this.#nextSeq = last + 1
      }
      let seq = this.#nextSeq
      events = group.flatMap((p) => p.inputs.map((input) => this.#toEvent(input, seq++)))
      attempted = true
      const batch = prepareAppend(events)
      const outcome = await this.#write(() => this.#driver.append(batch))
      this.#nextSeq = seq
      return this.#committed(group, events, started, outcome)
    } catch (error) {
      // The seq numbers were not consumed; re-read the database's view before the next commit in case the
      // commit did land and only its acknowledgement was lost.
      if (attempted && events.length > 0 && this.#nextSeq !== undefined) {
        this.#inDoubt = { firstSeq: this.#nextSeq, count: events.length }
      }
      this.#nextSeq = undefined
      this.#recordCommit(group.length, events.length, performance.now() - started, false)
      if (isTransientStoreError(error)) {
        // After close() stopped retrying, the group goes back to the queue and from there to the spool.
        if (!this.#stopped) this.#scheduleRetry(error)
        return RETRY
      }
      this.#inDoubt = undefined
      this.#lastError = error instanceof Error ? error.message : String(error)
      if (group.length === 1 || retryOf !== undefined) for (const pending of group) pending.reject(error)
      return error
    }
  }

  #committed(
    group: readonly Pending[],
    events: AuditEvent[],
    started: number,
    outcome: { problems: readonly string[] },
  ): undefined {
    if (this.#failure) {
      this.#failure = null
      this.#retryDelay = 0
      this.#healthChanged()
    }
    this.#recordCommit(group.length, events.length, performance.now() - started, true)
    let offset = 0
    for (const pending of group) {
      pending.resolve(events.slice(offset, offset + pending.inputs.length))
      offset += pending.inputs.length
    }
    this.#reportProblems(outcome.problems)
    for (const listener of this.#committedListeners) {
      try {
        listener(events)
      } catch (error) {
        this.#options.onError?.(error, 'store.onCommitted')
      }
    }
    return undefined
  }

  #toEvent(input: AuditEventInput, seq: number): AuditEvent {
    // Inputs were checked by append() (validateInput); spooled ones were checked before they were written.
    return {
      origin: this.origin,
      seq,
      kind: input.kind,
      time: input.time,
      session_id: input.session_id,
      payload: input.payload,
    }
  }

  #recordCommit(appends: number, events: number, durationMillis: number, ok: boolean): void {
    if (ok) {
      this.#stats.commits++
      this.#stats.events += events
      this.#stats.totalCommitMillis += durationMillis
      this.#stats.maxCommitMillis = Math.max(this.#stats.maxCommitMillis, durationMillis)
    } else {
      this.#stats.failedCommits++
    }
    try {
      this.#options.onCommit?.({ events, appends, durationMillis, ok })
    } catch (error) {
      this.#options.onError?.(error, 'store.onCommit')
    }
  }

  #reportProblems(problems: readonly string[]): void {
    if (problems.length === 0) return
    this.#options.onError?.(
      new Error(`derived rows skipped malformed fields: ${problems.join('; ')}`),
      'store.projection',
    )
  }
}

function closedError(): Error {
  return new Error('store is closed')
}

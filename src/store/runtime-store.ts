/**
 * The runtime store wraps any dialect's driver with what every driver needs and none should repeat:
 * init-once, closed checks, per-origin sequence numbers, small group commits, a write mutex for databases
 * with a single writer, and commit timing.
 *
 * Group commit: `append()` enqueues and resolves only once its events are committed. While a commit runs,
 * new appends queue up and go together in the next transaction; an idle store waits `groupCommitDelayMillis`
 * after the first append so that events arriving together share one transaction (one fsync).
 */
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
  SessionFilter,
  StoreCapabilities,
  StoreDialect,
  StoreDriver,
  StoredCheckpoint,
  StoredEventRow,
} from './store.js'

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
  outputsBySha256(sha256: string): Promise<OutputRecord[]>
  derivedRows(origin?: string): Promise<DerivedRows>
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
  /** Commits what is queued, then closes the driver; idempotent. Later calls reject. */
  close(): Promise<void>
}

const KINDS: ReadonlySet<string> = new Set(AUDIT_EVENT_KINDS)

interface Pending {
  readonly inputs: readonly AuditEventInput[]
  readonly resolve: (events: AuditEvent[]) => void
  readonly reject: (error: unknown) => void
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
    this.#initPromise ??= this.#driver.init(signal).catch((error: unknown) => {
      // Let a later call try again (the database may come up) instead of caching the failure forever.
      this.#initPromise = undefined
      throw error
    })
    return this.#initPromise
  }

  append(inputs: readonly AuditEventInput[]): Promise<AuditEvent[]> {
    if (this.#closed) return Promise.reject(closedError())
    if (inputs.length === 0) return Promise.resolve([])
    return new Promise<AuditEvent[]>((resolve, reject) => {
      // A copy: the caller may reuse its array before the commit runs.
      this.#queue.push({ inputs: [...inputs], resolve, reject })
      this.#queuedEvents += inputs.length
      this.#schedule()
    })
  }

  async flush(): Promise<void> {
    while (this.#committing || this.#queue.length > 0) {
      if (!this.#committing) this.#startCommitting()
      await this.#committing
    }
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

  async outputsBySha256(sha256: string): Promise<OutputRecord[]> {
    await this.#ready()
    return this.#driver.outputsBySha256(sha256)
  }

  async derivedRows(origin?: string): Promise<DerivedRows> {
    await this.#ready()
    return this.#driver.derivedRows(origin)
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
        // Acknowledge (or fail) everything already queued before the driver goes away.
        await this.flush()
      } finally {
        await this.#driver.close()
      }
    })()
    return this.#closePromise
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
    while (this.#queue.length > 0) {
      const group: Pending[] = []
      let count = 0
      while (this.#queue.length > 0) {
        const next = this.#queue[0] as Pending
        if (group.length > 0 && count + next.inputs.length > this.#maxGroupEvents) break
        group.push(next)
        count += next.inputs.length
        this.#queue.shift()
      }
      this.#queuedEvents -= count
      const failed = await this.#commitGroup(group)
      if (failed && group.length > 1) {
        // One bad append (or a transient error) must not fail its neighbours: retry each alone, in order.
        for (const pending of group) await this.#commitGroup([pending], failed)
      }
    }
  }

  /**
   * Commits a group in one transaction and resolves its callers. On failure it returns the error, and
   * rejects the callers only when the group will not be retried (a single caller, or already a retry).
   */
  async #commitGroup(group: readonly Pending[], retryOf?: unknown): Promise<unknown> {
    const started = performance.now()
    let events: AuditEvent[] = []
    try {
      await this.#init()
      this.#nextSeq ??= (await this.#driver.lastSeq(this.origin)) + 1
      let seq = this.#nextSeq
      events = group.flatMap((p) => p.inputs.map((input) => this.#toEvent(input, seq++)))
      const outcome = await this.#write(() => this.#driver.append(events))
      this.#nextSeq = seq
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
    } catch (error) {
      // The seq numbers were not consumed; re-read the database's view before the next commit in case the
      // commit did land and only its acknowledgement was lost.
      this.#nextSeq = undefined
      this.#recordCommit(group.length, events.length, performance.now() - started, false)
      if (group.length === 1 || retryOf !== undefined) for (const pending of group) pending.reject(error)
      return error
    }
  }

  #toEvent(input: AuditEventInput, seq: number): AuditEvent {
    // Inputs come from our own capture code, so a bad one is a bug: refuse it rather than store it.
    if (!KINDS.has(input.kind)) throw new TypeError(`unknown audit event kind ${JSON.stringify(input.kind)}`)
    if (typeof input.time !== 'string')
      throw new TypeError(`audit event ${input.kind}: time must be a string`)
    if (input.session_id !== null && typeof input.session_id !== 'string') {
      throw new TypeError(`audit event ${input.kind}: session_id must be a string or null`)
    }
    if (typeof input.payload !== 'object' || input.payload === null || Array.isArray(input.payload)) {
      throw new TypeError(`audit event ${input.kind}: payload must be an object`)
    }
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

/**
 * The runtime store's write path: the append queue, group commits in append order, and what keeps
 * acknowledged events through an outage (retry with backoff, the write-ahead spool, health).
 *
 * Group commit: `append()` enqueues and resolves only once its events are committed (group-commit.ts). While
 * a commit runs, new appends queue up and go together in the next transaction; an idle store waits
 * `groupCommitDelayMillis` after the first append so that events arriving together share one transaction
 * (one fsync).
 *
 * Outage (see StoreOutageOptions): while commits fail for a passing reason, appends wait in `#queue` up to
 * `maxQueuedEvents`; later ones go behind it to `#tail`, which is written to the spool a segment at a time.
 * Commit order stays append order: the memory queue, then the spool oldest first, then what is left in
 * `#tail`.
 */
import { AUDIT_EVENT_KINDS, type AuditEvent, type AuditEventInput } from '../audit/types.js'
import type { StoreDriver } from './store.js'
import type { EventSpool } from './event-spool.js'
import type {
  RuntimeStoreOptions,
  StoreHealth,
  StoreHealthState,
  StoreOutageOptions,
  StoreStats,
} from './runtime-store-types.js'
import type { WriteLock } from './write-lock.js'
import { Fifo } from './fifo.js'
import { GroupCommitter, RETRY, type Pending } from './group-commit.js'

const KINDS: ReadonlySet<string> = new Set(AUDIT_EVENT_KINDS)

/** An append whose inputs went to the spool: only its size and callbacks stay in memory. */
interface Spooled {
  readonly count: number
  readonly resolve: (events: AuditEvent[]) => void
  readonly reject: (error: unknown) => void
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

export function closedError(): Error {
  return new Error('store is closed')
}

export class WriteQueue {
  readonly #options: RuntimeStoreOptions
  readonly #delayMillis: number
  readonly #maxGroupEvents: number
  readonly #committer: GroupCommitter
  #closed = false
  #queue = new Fifo<Pending>()
  #queuedEvents = 0
  /** Appends behind the spool (they arrived while it held segments): spooled next, or kept when it is full. */
  #tail = new Fifo<Pending>()
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
  /** Set by close() after its grace period: no more commit attempts. */
  #stopped = false
  #lastHealthState: StoreHealthState = 'ok'
  #timer: NodeJS.Timeout | undefined
  #committing: Promise<void> | undefined

  /** `init` opens the driver without the closed check (close() still commits what was queued before it). */
  constructor(
    origin: string,
    driver: StoreDriver,
    options: RuntimeStoreOptions,
    lock: WriteLock,
    init: () => Promise<void>,
  ) {
    this.#options = options
    this.#delayMillis = Math.max(0, options.groupCommitDelayMillis ?? 2)
    this.#maxGroupEvents = Math.max(1, options.maxGroupEvents ?? 1000)
    this.#committer = new GroupCommitter(origin, driver, options, lock, {
      init,
      succeeded: () => {
        if (!this.#failure) return
        this.#failure = null
        this.#retryDelay = 0
        this.#healthChanged()
      },
      failedTransiently: (error) => {
        // After close() stopped retrying, the group goes back to the queue and from there to the spool.
        if (!this.#stopped) this.#scheduleRetry(error)
      },
      failed: (error) => {
        this.#lastError = error instanceof Error ? error.message : String(error)
      },
    })
  }

  /** Set once close() began: appends are refused. */
  get closed(): boolean {
    return this.#closed
  }

  /** The driver is open: events an earlier process left in the write-ahead spool are committed first. */
  opened(): void {
    if (this.#spooledSegments() > 0) this.#startCommitting()
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
      failedCommits: this.#committer.stats().failedCommits,
    }
  }

  stats(): StoreStats {
    return this.#committer.stats()
  }

  onCommitted(listener: (events: readonly AuditEvent[]) => void): () => void {
    return this.#committer.onCommitted(listener)
  }

  /**
   * Refuses further appends and acknowledges (or fails) everything already queued; a database that stays
   * down gets a grace period, then what is left goes to the spool for the next start.
   */
  async close(): Promise<void> {
    this.#closed = true
    let graceTimer: NodeJS.Timeout | undefined
    const grace = new Promise<void>((resolve) => {
      graceTimer = setTimeout(resolve, this.#outage.closeGraceMillis ?? 5000)
    })
    await Promise.race([this.flush(), grace])
    clearTimeout(graceTimer)
    if (this.#hasWork() || this.#retryTimer || this.#committing) await this.#stopAndSpool()
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
    const rest = [...this.#queue.takeAll(), ...this.#tail.takeAll()]
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
          this.#tail.unshiftAll(chunk)
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
        this.#tail = new Fifo()
        this.#tailEvents = 0
        this.#spoolRefused = false
        this.#healthChanged()
      }
      const group = this.#takeGroup()
      const count = group.reduce((n, p) => n + p.inputs.length, 0)
      const failed = await this.#committer.commit(group)
      if (failed === RETRY) {
        // Back to the front, in order, and try again after the backoff.
        this.#queue.unshiftAll(group)
        this.#queuedEvents += count
        return
      }
      if (failed && group.length > 1) {
        // One bad append must not fail its neighbours: retry each alone, in order.
        for (let i = 0; i < group.length; i++) {
          if ((await this.#committer.commit([group[i] as Pending], failed)) === RETRY) {
            const rest = group.slice(i)
            this.#queue.unshiftAll(rest)
            this.#queuedEvents += rest.reduce((n, p) => n + p.inputs.length, 0)
            return
          }
        }
      }
    }
  }

  /** The next group off the queue: appends in order up to maxGroupEvents (at least one, whatever its size). */
  #takeGroup(): Pending[] {
    // After a commit of unknown outcome, the same group again (see GroupCommitter.commit), not a larger one.
    const limit = this.#committer.inDoubtEvents ?? this.#maxGroupEvents
    const group: Pending[] = []
    let count = 0
    for (let next = this.#queue.peek(); next !== undefined; next = this.#queue.peek()) {
      if (group.length > 0 && count + next.inputs.length > limit) break
      group.push(next)
      count += next.inputs.length
      this.#queue.shift()
    }
    this.#queuedEvents -= count
    return group
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
    // The appends are settled once the segment has left the spool, so that health() no longer counts their
    // events as spooled by the time their callers see them committed.
    let settle = (): void => {}
    const outcome = await this.#committer.commit([
      {
        inputs,
        resolve: (events) => {
          settle = () => {
            let offset = 0
            for (const w of waiters) {
              w.resolve(events.slice(offset, offset + w.count))
              offset += w.count
            }
          }
        },
        reject: (error) => {
          settle = () => {
            for (const w of waiters) w.reject(error)
          }
        },
      },
    ])
    if (outcome === RETRY) return false
    // Committed, or refused for good (reported and its appends rejected): either way it leaves the spool.
    await spool.remove(name).catch((error: unknown) => this.#options.onError?.(error, 'store.spool remove'))
    this.#spooled.delete(name)
    this.#spooledEvents -= waiters.reduce((n, w) => n + w.count, 0)
    settle()
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
}

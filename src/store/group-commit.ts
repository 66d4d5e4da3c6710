/**
 * One transaction of the runtime store's write path: a group of appends gets this origin's next seq numbers,
 * is committed with its derived rows in one driver call, and its callers are acknowledged. The seq numbers
 * survive failures: none is consumed by a failed commit, and after a commit whose outcome is unknown (the
 * connection dropped during it) the database is asked whether it landed before anything else is committed.
 *
 * What to do about a failure (retry with backoff, spool, report) is the queue's (write-queue.ts); this module
 * tells it through {@link CommitHooks}.
 */
import type { AuditEvent, AuditEventInput } from '../audit/types.js'
import type { StoreDriver } from './store.js'
import type { RuntimeStoreOptions, StoreStats } from './runtime-store-types.js'
import type { WriteLock } from './write-lock.js'
import { prepareAppend } from './append-batch.js'

/** One `append()` call waiting for its commit. */
export interface Pending {
  readonly inputs: readonly AuditEventInput[]
  readonly resolve: (events: AuditEvent[]) => void
  readonly reject: (error: unknown) => void
}

/** {@link GroupCommitter.commit}'s answer when the database failed for a passing reason (retry the group). */
export const RETRY = Symbol('retry')

/** How the committer reaches the queue; each is called at the point named, before any caller is settled. */
interface CommitHooks {
  /** Opens the driver (without the closed check: close() still commits what was queued before it). */
  init(): Promise<void>
  /** A commit succeeded. */
  succeeded(): void
  /** A commit failed for a reason that passes; the group is answered {@link RETRY}. */
  failedTransiently(error: unknown): void
  /** A commit failed for good. */
  failed(error: unknown): void
}

const TRANSIENT_CODES =
  /^(SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|PROTOCOL)|ENOSPC|EIO|EDQUOT|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|08...|53...|57P0[1-3]|40001|40P01|58030)/
const TRANSIENT_MESSAGES =
  /connection terminated|connection (is )?(closed|ended)|is not queryable|query read timeout|terminating connection|timeout exceeded when trying to connect|database is locked|database system is (starting up|shutting down)|disk (is )?full|no space left/i

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

/** Reports the fields the projection skipped (the events themselves are stored). */
export function reportProblems(onError: RuntimeStoreOptions['onError'], problems: readonly string[]): void {
  if (problems.length === 0) return
  onError?.(new Error(`derived rows skipped malformed fields: ${problems.join('; ')}`), 'store.projection')
}

export class GroupCommitter {
  readonly #origin: string
  readonly #driver: StoreDriver
  readonly #options: RuntimeStoreOptions
  readonly #lock: WriteLock
  readonly #hooks: CommitHooks
  /** Next seq for this origin; undefined until read from the database (again after a failed commit). */
  #nextSeq: number | undefined
  /** A commit whose outcome is unknown (the connection dropped during it): checked before the next. */
  #inDoubt: { firstSeq: number; count: number } | undefined
  readonly #committedListeners = new Set<(events: readonly AuditEvent[]) => void>()
  #stats = { commits: 0, failedCommits: 0, events: 0, totalCommitMillis: 0, maxCommitMillis: 0 }

  constructor(
    origin: string,
    driver: StoreDriver,
    options: RuntimeStoreOptions,
    lock: WriteLock,
    hooks: CommitHooks,
  ) {
    this.#origin = origin
    this.#driver = driver
    this.#options = options
    this.#lock = lock
    this.#hooks = hooks
  }

  /** Events of the commit of unknown outcome: the next group must be that same one, not a larger one. */
  get inDoubtEvents(): number | undefined {
    return this.#inDoubt?.count
  }

  /**
   * Commits a group in one transaction and resolves its callers. On failure it returns the error (or
   * {@link RETRY}), and rejects the callers only when the group will not be retried (a single caller, or
   * already a retry of one member of a failed group: `retryOf`).
   */
  async commit(group: readonly Pending[], retryOf?: unknown): Promise<unknown> {
    const started = performance.now()
    let events: AuditEvent[] = []
    let attempted = false
    try {
      await this.#hooks.init()
      if (this.#nextSeq === undefined) {
        const last = await this.#driver.lastSeq(this.#origin)
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
      const outcome = await this.#lock.run(() => this.#driver.append(batch))
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
        this.#hooks.failedTransiently(error)
        return RETRY
      }
      this.#inDoubt = undefined
      this.#hooks.failed(error)
      if (group.length === 1 || retryOf !== undefined) for (const pending of group) pending.reject(error)
      return error
    }
  }

  /**
   * Calls `listener` after every successful commit with the committed events; see RuntimeStore.onCommitted.
   */
  onCommitted(listener: (events: readonly AuditEvent[]) => void): () => void {
    // Wrapped so that adding the same function twice still gives two independent registrations.
    const entry = (events: readonly AuditEvent[]): void => listener(events)
    this.#committedListeners.add(entry)
    return () => this.#committedListeners.delete(entry)
  }

  stats(): StoreStats {
    return { ...this.#stats }
  }

  #committed(
    group: readonly Pending[],
    events: AuditEvent[],
    started: number,
    outcome: { problems: readonly string[] },
  ): undefined {
    this.#hooks.succeeded()
    this.#recordCommit(group.length, events.length, performance.now() - started, true)
    let offset = 0
    for (const pending of group) {
      pending.resolve(events.slice(offset, offset + pending.inputs.length))
      offset += pending.inputs.length
    }
    reportProblems(this.#options.onError, outcome.problems)
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
      origin: this.#origin,
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
}

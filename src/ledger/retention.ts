/**
 * Retention and erasure that keep proofs: payloads go, leaf hashes stay, so every checkpoint still
 * verifies and `verify` shows the removed ranges as pruned, not as tampering. Each prune or erasure is
 * first recorded as an event of the log (`audit.pruned` / `audit.erased`, listing the seq ranges), and
 * those records themselves are never pruned.
 *
 * Run these in the process that owns the origin's log (or with its gateway stopped): two processes
 * appending to one origin would compete for the same seq numbers.
 */
import type { AuditEventKind } from '../audit/types.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import type { EventFilter } from '../store/store.js'

/** What a prune or erasure did. */
export interface RetentionOutcome {
  /** Events whose payload was removed. */
  readonly pruned: number
  /** Inclusive seq ranges removed. */
  readonly ranges: readonly (readonly [number, number])[]
  /** Seq of the recording event, or null when there was nothing to remove (then nothing is recorded). */
  readonly recordedAt: number | null
}

type RetentionStore = Pick<RuntimeStore, 'origin' | 'rawEvents' | 'append' | 'prunePayloads'>

const RECORD_KINDS: ReadonlySet<string> = new Set<AuditEventKind>(['audit.pruned', 'audit.erased'])

async function candidateRanges(store: RetentionStore, filter: EventFilter): Promise<[number, number][]> {
  const ranges: [number, number][] = []
  for await (const row of store.rawEvents({ ...filter, origin: store.origin })) {
    if (row.pruned !== null || RECORD_KINDS.has(row.kind)) continue
    const last = ranges[ranges.length - 1]
    if (last && last[1] === row.seq - 1) last[1] = row.seq
    else ranges.push([row.seq, row.seq])
  }
  return ranges
}

async function removeAndRecord(
  store: RetentionStore,
  ranges: [number, number][],
  kind: 'audit.pruned' | 'audit.erased',
  details: Record<string, string | null>,
  now: Date,
): Promise<RetentionOutcome> {
  if (ranges.length === 0) return { pruned: 0, ranges: [], recordedAt: null }
  const count = ranges.reduce((n, [a, b]) => n + b - a + 1, 0)
  const [record] = await store.append([
    {
      kind,
      time: now.toISOString(),
      session_id: null,
      payload: { ...details, events: count, ranges: ranges.map(([a, b]) => [a, b]) },
    },
  ])
  const pruned = await store.prunePayloads({ origin: store.origin, ranges, prunedBy: record!.seq })
  return { pruned, ranges, recordedAt: record!.seq }
}

/** Removes the payloads of this origin's events older than `before` (ISO 8601 UTC). */
export async function pruneOlderThan(options: {
  store: RetentionStore
  before: string
  user: string
  now?: Date
  /** Only count what would be removed; removes and records nothing. */
  dryRun?: boolean
}): Promise<RetentionOutcome> {
  const ranges = await candidateRanges(options.store, { until: options.before })
  if (options.dryRun) {
    return { pruned: ranges.reduce((n, [from, to]) => n + to - from + 1, 0), ranges, recordedAt: null }
  }
  return removeAndRecord(
    options.store,
    ranges,
    'audit.pruned',
    { before: options.before, user: options.user },
    options.now ?? new Date(),
  )
}

/** Removes the payloads of one session's events in this origin's log, recording who and why. */
export async function eraseSession(options: {
  store: RetentionStore
  sessionId: string
  reason: string
  user: string
  now?: Date
}): Promise<RetentionOutcome> {
  const ranges = await candidateRanges(options.store, { sessionId: options.sessionId })
  return removeAndRecord(
    options.store,
    ranges,
    'audit.erased',
    { session_id: options.sessionId, reason: options.reason, user: options.user },
    options.now ?? new Date(),
  )
}

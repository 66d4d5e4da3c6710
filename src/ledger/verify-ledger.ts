/**
 * `verify`: recomputes every leaf and every checkpoint root from the store, checks every checkpoint's
 * signature, and proves that the derived tables and the rollups equal a replay of the log. It names the first bad position
 * of each origin's log (or the checkpoint interval it lies in when the stored leaf hashes were rewritten
 * too) and the kind of damage. Pruned and erased payloads are reported as such, not as tampering.
 */
import type { AuditEvent } from '../audit/types.js'
import { createDerivedReplay } from '../store/project.js'
import { firstDerivedDifference } from './verify-derived.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import type { StoredCheckpoint, StoredEventRow } from '../store/store.js'
import { verifyCheckpoint } from './checkpoint.js'
import { eventLeafHash, eventLeafHex } from '../audit/event-leaf.js'
import { storedRowEvent } from './ledger.js'
import { createMerkleAccumulator } from './merkle.js'
import { parseVerifierKey, type NoteVerifier } from './signed-note.js'

/** Kinds of damage `verify` tells apart. */
type DamageKind =
  | 'modified'
  | 'missing'
  | 'inserted'
  | 'reordered'
  | 'truncated'
  | 'bad-signature'
  | 'unrecorded-prune'
  | 'derived-mismatch'

/** One problem found. */
export interface LedgerProblem {
  readonly kind: DamageKind
  readonly origin: string
  /** The first bad position, when it can be named. */
  readonly seq?: number
  /** Inclusive seq interval the damage lies in, when only a checkpoint root shows it. */
  readonly interval?: readonly [number, number]
  readonly detail: string
}

/** What verify found for one origin. */
export interface OriginReport {
  readonly origin: string
  readonly events: number
  readonly checkpoints: number
  /** Size of the largest valid checkpoint: events 0..size-1 are covered by a signature. */
  readonly checkpointed: number
  /** Payloads removed by retention or erasure: `[from, to]` inclusive, with the seq of the recording event. */
  readonly pruned: readonly { readonly from: number; readonly to: number; readonly by: number }[]
}

/** The outcome of {@link verifyLedger}. */
export interface LedgerReport {
  readonly ok: boolean
  readonly origins: readonly OriginReport[]
  /** At most one log problem and one derived-table problem per origin, the first found. */
  readonly problems: readonly LedgerProblem[]
}

/** How far {@link verifyLedger} got: events read so far (all origins) of those the store held at the start. */
export interface VerifyProgress {
  readonly origin: string
  readonly events: number
  /** Events the logs held when verify started (their last seq + 1), or null when the store cannot say. */
  readonly expected: number | null
  /** True on the call at the end of an origin's log. */
  readonly originDone: boolean
}

/** Options of {@link verifyLedger}. */
interface VerifyLedgerOptions {
  readonly store: Pick<
    RuntimeStore,
    'origins' | 'rawEvents' | 'checkpoints' | 'derivedRows' | 'rollups' | 'workflowRollups' | 'usageRollups'
  > &
    Partial<Pick<RuntimeStore, 'lastSeq'>>
  /** Verifier key (C2SP format) per origin, or one for all. */
  readonly verifierKey: string | ((origin: string) => string | undefined)
  /** Only this origin (default: every origin in the store). */
  readonly origin?: string
  /** Checkpoints published off the machine (see publish.ts), checked like the stored ones. */
  readonly published?: readonly StoredCheckpoint[]
  /** Called every {@link VERIFY_PROGRESS_EVERY} events and at the end of each origin. */
  readonly onProgress?: (progress: VerifyProgress) => void
}

interface Row {
  readonly raw: StoredEventRow
  readonly event: AuditEvent | null
  /** Leaf recomputed from the content (null when the payload is pruned or unreadable). */
  readonly computed: Buffer | null
  readonly stored: Buffer | null
}

const SHIFT_WINDOW = 1000
/** Events between two progress calls. */
const VERIFY_PROGRESS_EVERY = 1000
/** Events folded into the derived replay at a time (the replay holds rows, not events). */
const REPLAY_CHUNK = 1000

/** Recomputes and checks everything; see the module comment. */
export async function verifyLedger(options: VerifyLedgerOptions): Promise<LedgerReport> {
  const origins = options.origin !== undefined ? [options.origin] : await options.store.origins()
  const reports: OriginReport[] = []
  const problems: LedgerProblem[] = []
  let expected: number | null = null
  if (options.onProgress && options.store.lastSeq) {
    expected = 0
    for (const origin of origins) expected += (await options.store.lastSeq(origin)) + 1
  }
  let done = 0
  for (const origin of origins) {
    const key = typeof options.verifierKey === 'string' ? options.verifierKey : options.verifierKey(origin)
    const result = await verifyOrigin(options, origin, key, (events, originDone) =>
      options.onProgress?.({ origin, events: done + events, expected, originDone }),
    )
    done += result.report.events
    reports.push(result.report)
    problems.push(...result.problems)
  }
  return { ok: problems.length === 0, origins: reports, problems }
}

const LEAF_HEX = /^[0-9a-f]{64}$/

function readRow(raw: StoredEventRow): Row {
  const event = raw.pruned === null ? storedRowEvent(raw) : null
  const storedHex = raw.leaf_hash !== null && LEAF_HEX.test(raw.leaf_hash) ? raw.leaf_hash : null
  const stored = storedHex === null ? null : Buffer.from(storedHex, 'hex')
  // Compared as hex, as stored: a matching leaf (nearly every row) costs no second buffer.
  const computedHex = event ? eventLeafHex(event) : null
  return {
    raw,
    event,
    computed:
      computedHex === null ? null : computedHex === storedHex ? stored : Buffer.from(computedHex, 'hex'),
    stored,
  }
}

/**
 * One streaming pass over the origin's log: nothing per event is kept but the running Merkle tree, the
 * pruned ranges and the derived rows of the replay, so memory does not grow with the log. Naming the damage
 * precisely needs the events around the first bad position; those are read again afterwards.
 */
async function verifyOrigin(
  options: VerifyLedgerOptions,
  origin: string,
  verifierKey: string | undefined,
  progress: (events: number, originDone: boolean) => void,
): Promise<{ report: OriginReport; problems: LedgerProblem[] }> {
  const problems: LedgerProblem[] = []
  // Checkpoints: the signature decides; a row whose columns disagree with its own note is damage too.
  const checkpoints = await validCheckpoints(options, origin, verifierKey, problems)

  let count = 0
  let lastSeq = -1
  /** Seq of the first row out of sequence or not matching its leaf. */
  let firstBad: number | undefined
  const pruned: { from: number; to: number; by: number }[] = []
  /** The audit.pruned / audit.erased events, which name the ranges they removed. */
  const recorders = new Map<number, AuditEvent>()

  // Checkpoint roots over the effective leaves (recomputed, or stored where pruned), as the leaves arrive.
  const acc = createMerkleAccumulator()
  let accOpen = true
  let next = 0
  let checkpointed = 0
  let previousSize = 0
  let rootProblem: LedgerProblem | undefined
  const checkRoots = (): void => {
    while (accOpen && next < checkpoints.length && checkpoints[next]!.size === acc.size) {
      const cp = checkpoints[next]!
      if (acc.root().toString('base64') !== cp.root_hash) {
        rootProblem = {
          kind: 'modified',
          origin,
          interval: [previousSize, cp.size - 1],
          detail:
            `events ${previousSize}..${cp.size - 1} do not reproduce the signed checkpoint of size ${cp.size}` +
            ' (the stored leaf hashes were altered too, so the exact position cannot be named)',
        }
        accOpen = false
        return
      }
      checkpointed = cp.size
      previousSize = cp.size
      next++
    }
  }
  checkRoots()

  const replay = createDerivedReplay()
  let chunk: AuditEvent[] = []
  for await (const raw of options.store.rawEvents({ origin })) {
    const row = readRow(raw)
    const seq = raw.seq
    if (firstBad === undefined && (seq !== count || !rowOk(row))) firstBad = Math.min(seq, count)
    count++
    lastSeq = seq

    if (raw.pruned !== null) {
      const by = raw.pruned
      const last = pruned[pruned.length - 1]
      if (last && last.by === by && last.to === seq - 1) last.to = seq
      else pruned.push({ from: seq, to: seq, by })
    } else if (row.event && (row.event.kind === 'audit.pruned' || row.event.kind === 'audit.erased')) {
      recorders.set(seq, row.event)
    }

    if (accOpen) {
      const leaf = seq !== acc.size ? null : raw.pruned === null ? row.computed : row.stored
      if (leaf) {
        acc.append(leaf)
        checkRoots()
      } else accOpen = false
    }

    if (row.event && raw.pruned === null) {
      chunk.push(row.event)
      if (chunk.length >= REPLAY_CHUNK) {
        replay.add(chunk)
        chunk = []
      }
    }
    if (count % VERIFY_PROGRESS_EVERY === 0) progress(count, false)
  }
  replay.add(chunk)
  chunk = []
  progress(count, true)

  // A checkpoint the leaves never reached: the log ends before it, or a leaf before it is missing.
  if (!rootProblem && next < checkpoints.length && acc.size > lastSeq) {
    const cp = checkpoints[next]!
    if (acc.size < cp.size) {
      rootProblem = {
        kind: 'truncated',
        origin,
        seq: acc.size,
        detail: `the log ends at seq ${lastSeq}, but a signed checkpoint covers ${cp.size} events (seq 0..${cp.size - 1})`,
      }
    }
  }

  // Pruned rows must be covered by the audit.pruned / audit.erased event named in them.
  let logProblem: LedgerProblem | undefined
  for (const range of pruned) {
    for (let seq = range.from; seq <= range.to && !logProblem; seq++) {
      if (pruneRecorded(recorders.get(range.by), seq)) continue
      logProblem = {
        kind: 'unrecorded-prune',
        origin,
        seq,
        detail: `payload of ${origin}#${seq} was removed, but event ${range.by} does not record pruning it`,
      }
    }
    if (logProblem) break
  }

  // Position-level check: seq continuity and leaf hashes, judged on the events around the first bad one.
  if (firstBad !== undefined) {
    const from = Math.max(0, firstBad - SHIFT_WINDOW - 1)
    const window: Row[] = []
    for await (const raw of options.store.rawEvents({
      origin,
      fromSeq: from,
      toSeq: firstBad + SHIFT_WINDOW + 1,
    }))
      window.push(readRow(raw))
    const positional = firstPositionalProblem(
      origin,
      window,
      new Map(window.map((r) => [r.raw.seq, r])),
      from,
    )
    if (positional && (!logProblem || (positional.seq ?? 0) < (logProblem.seq ?? 0))) logProblem = positional
  }

  // The earliest wins; a positional finding inside a failing interval is the more precise of the two.
  if (rootProblem) {
    const position = logProblem?.seq ?? Number.POSITIVE_INFINITY
    const end = rootProblem.interval ? rootProblem.interval[1] : (rootProblem.seq ?? 0)
    if (end < position) logProblem = rootProblem
  }
  if (logProblem) problems.push(logProblem)

  const derived = await firstDerivedDifference(options.store, replay.result(), origin)
  if (derived !== undefined) problems.push(derivedProblem(origin, derived))

  return {
    report: { origin, events: count, checkpoints: checkpoints.length, checkpointed, pruned },
    problems,
  }
}

async function validCheckpoints(
  options: VerifyLedgerOptions,
  origin: string,
  verifierKey: string | undefined,
  problems: LedgerProblem[],
): Promise<StoredCheckpoint[]> {
  const stored = await options.store.checkpoints(origin)
  const published = (options.published ?? []).filter((cp) => cp.origin === origin)
  if (!verifierKey) {
    if (stored.length + published.length > 0) {
      problems.push({
        kind: 'bad-signature',
        origin,
        detail: `no verifier key for ${origin}: its ${stored.length + published.length} checkpoints cannot be checked`,
      })
    }
    return []
  }
  const parsedKey = parseVerifierKey(verifierKey)
  if (!parsedKey.ok) throw new Error(`verifier key: ${parsedKey.reason}`)
  const verifier: NoteVerifier = parsedKey.value
  const bySize = new Map<number, StoredCheckpoint>()
  for (const [where, cp] of [
    ...stored.map((cp) => ['stored', cp] as const),
    ...published.map((cp) => ['published', cp] as const),
  ]) {
    const checked = verifyCheckpoint(cp.note, verifier, origin)
    if (!checked.ok) {
      problems.push({
        kind: 'bad-signature',
        origin,
        detail: `${where} checkpoint of size ${cp.size}: ${checked.reason}`,
      })
      continue
    }
    const { size, rootHash } = checked.value
    const root = rootHash.toString('base64')
    if (size !== cp.size || root !== cp.root_hash) {
      problems.push({
        kind: 'modified',
        origin,
        detail: `${where} checkpoint row of size ${cp.size} disagrees with its own signed note (size ${size})`,
      })
    }
    const other = bySize.get(size)
    if (other && other.root_hash !== root) {
      problems.push({
        kind: 'modified',
        origin,
        detail: `two validly signed checkpoints of size ${size} have different roots (the log was forked)`,
      })
      continue
    }
    bySize.set(size, { ...cp, size, root_hash: root })
  }
  return [...bySize.values()].sort((a, b) => a.size - b.size)
}

function pruneRecorded(event: AuditEvent | undefined, seq: number): boolean {
  if (!event || (event.kind !== 'audit.pruned' && event.kind !== 'audit.erased')) return false
  const ranges = event.payload.ranges
  if (!Array.isArray(ranges)) return false
  return ranges.some(
    (r) =>
      Array.isArray(r) && typeof r[0] === 'number' && typeof r[1] === 'number' && r[0] <= seq && seq <= r[1],
  )
}

/** The seq a row's content was written at, judged by its stored leaf hash, within a window around `near`. */
function originalSeq(row: Row, near: number): number | undefined {
  if (!row.event || !row.stored) return undefined
  for (let d = 1; d <= SHIFT_WINDOW; d++) {
    for (const q of [near - d, near + d]) {
      if (q < 0) continue
      if (eventLeafHash({ ...row.event, seq: q }).equals(row.stored)) return q
    }
  }
  return undefined
}

function rowOk(row: Row): boolean {
  if (row.raw.pruned !== null) return row.stored !== null
  return row.computed !== null && row.stored !== null && row.computed.equals(row.stored)
}

function firstPositionalProblem(
  origin: string,
  rows: readonly Row[],
  bySeq: ReadonlyMap<number, Row>,
  start = 0,
): LedgerProblem | undefined {
  let expected = start
  for (const row of rows) {
    const seq = row.raw.seq
    if (seq !== expected) {
      return {
        kind: 'missing',
        origin,
        seq: expected,
        detail: `events ${expected}..${seq - 1} of ${origin} are missing (the log jumps from ${expected - 1} to ${seq})`,
      }
    }
    expected++
    if (rowOk(row)) continue
    if (row.raw.pruned !== null) {
      return { kind: 'modified', origin, seq, detail: `pruned event ${origin}#${seq} lost its leaf hash` }
    }
    // Where did this row's content come from, and where did the content that belonged here go?
    const from = originalSeq(row, seq)
    const next = bySeq.get(seq + 1)
    const nextFrom = next && !rowOk(next) ? originalSeq(next, seq + 1) : undefined
    if (from !== undefined) {
      const back = bySeq.get(from)
      const backFrom = back ? originalSeq(back, from) : undefined
      if (backFrom === seq || (from > seq && nextFrom !== from + 1)) {
        return {
          kind: 'reordered',
          origin,
          seq,
          detail: `${origin}#${seq} holds the event written as #${from}${backFrom === seq ? `, and #${from} the one written as #${seq}` : ''}`,
        }
      }
      if (from > seq) {
        return {
          kind: 'missing',
          origin,
          seq,
          detail: `events ${seq}..${from - 1} of ${origin} were deleted and the later events renumbered`,
        }
      }
      return {
        kind: 'inserted',
        origin,
        seq: from,
        detail: `${seq - from} event(s) inserted at ${origin}#${from} (the event written as #${from} now sits at #${seq})`,
      }
    }
    if (nextFrom === seq) {
      return {
        kind: 'inserted',
        origin,
        seq,
        detail: `${origin}#${seq} was inserted; the event written as #${seq} now sits at #${seq + 1}`,
      }
    }
    if (row.stored === null) {
      return {
        kind: 'inserted',
        origin,
        seq,
        detail: `${origin}#${seq} has no leaf hash: it was not written through the store`,
      }
    }
    return {
      kind: 'modified',
      origin,
      seq,
      detail:
        row.event === null
          ? `${origin}#${seq}: stored payload is not a JSON object`
          : `${origin}#${seq} (${row.raw.kind}) does not hash to the leaf written with it`,
    }
  }
  return undefined
}

function derivedProblem(origin: string, detail: string): LedgerProblem {
  return { kind: 'derived-mismatch', origin, detail }
}

/** One line per problem, for the CLI. */
export function formatLedgerProblem(p: LedgerProblem): string {
  const where =
    p.seq !== undefined
      ? ` at (${p.origin}, ${p.seq})`
      : p.interval
        ? ` in (${p.origin}, ${p.interval[0]}..${p.interval[1]})`
        : ` in ${p.origin}`
  return `${p.kind}${where}: ${p.detail}`
}

/**
 * Evidence bundles: one session's events, each with an RFC 9162 inclusion proof against a signed
 * checkpoint, plus a summary (models, outputs and their hashes, submitter, seeds) that the verifier
 * recomputes from the events rather than trusting. `verifyEvidence` needs only the bundle and the log's
 * verifier key, given separately (a bundle cannot vouch for itself): no database, no gateway, no network.
 *
 * The bundle is written in RFC 8785 canonical form, and the verifier refuses any other spelling, so that
 * every byte is either covered by a proof or a signature, or fixed by the format: any change fails.
 */
import { asJsonValue } from '../audit/json-value.js'
import { canonicalJson, parseJson } from '../audit/json.js'
import type { AuditEvent, JsonObject, JsonValue } from '../audit/types.js'
import { replayDerived } from '../store/project.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { verifyCheckpoint } from './checkpoint.js'
import { decodeBase64Strict } from './decode-base64-strict.js'
import { eventLeafHash, eventLeafObject } from '../audit/event-leaf.js'
import { storedRowEvent, storedRowLeaf } from './ledger.js'
import { inclusionProof, leafHash, rootFromLeafHashes, verifyInclusion } from './merkle.js'

/** The format tag of bundles this module writes and reads. */
const EVIDENCE_FORMAT = 'comfy-audit-evidence/1'

/** Outcome of building or verifying a bundle. */
type EvidenceResult<T> = { ok: true; value: T } | { ok: false; reason: string }

/** What a verified bundle proves. */
interface VerifiedEvidence {
  readonly origin: string
  readonly session_id: string
  /** Events proven, and the signed tree size they were proven against. */
  readonly events: number
  readonly treeSize: number
  /** The summary, recomputed from the proven events. */
  readonly summary: JsonObject
}

/** The summary of a session's events: what a reader of the bundle wants, derived from the events alone. */
function evidenceSummary(events: readonly AuditEvent[]): JsonObject {
  const derived = replayDerived(events)
  const s = derived.sessions[0]
  const session: JsonObject | null = s
    ? {
        status: s.status,
        submitter: asJsonValue(s.submitter),
        queued_at: s.queued_at,
        started_at: s.started_at,
        ended_at: s.ended_at,
        prompt_sha256: s.prompt_sha256,
        workflow_sha256: s.workflow_sha256,
        models: asJsonValue(s.models),
        seeds: asJsonValue(s.seeds),
      }
    : null
  return {
    session,
    outputs: derived.outputs.map((o) => ({
      node_id: o.node_id,
      type: o.type,
      subfolder: o.subfolder,
      filename: o.filename,
      sha256: o.sha256 ?? null,
      bytes: o.bytes ?? null,
      width: o.width ?? null,
      height: o.height ?? null,
    })),
  }
}

/**
 * Builds the bundle of one session against the newest stored checkpoint that covers all its events.
 * Refuses when no checkpoint covers them yet, or when the stored log does not reproduce the checkpoint.
 */
export async function buildEvidence(options: {
  store: Pick<RuntimeStore, 'rawEvents' | 'checkpoints' | 'session'>
  sessionId: string
  origin?: string
}): Promise<EvidenceResult<string>> {
  const { store, sessionId } = options
  const origin = options.origin ?? (await store.session(sessionId))?.origin
  if (origin === undefined)
    return { ok: false, reason: `no session ${JSON.stringify(sessionId)} in the store` }
  const events: AuditEvent[] = []
  for await (const row of store.rawEvents({ origin, sessionId })) {
    if (row.pruned !== null) {
      return { ok: false, reason: `event ${origin}#${row.seq} of this session was pruned or erased` }
    }
    const event = storedRowEvent(row)
    if (!event)
      return { ok: false, reason: `event ${origin}#${row.seq} is unreadable; run comfy-audit verify` }
    events.push(event)
  }
  if (events.length === 0) return { ok: false, reason: `session ${sessionId} has no events in ${origin}` }
  const lastSeq = events[events.length - 1]!.seq
  const checkpoints = await store.checkpoints(origin)
  const cp = checkpoints[checkpoints.length - 1]
  if (!cp || cp.size <= lastSeq) {
    return {
      ok: false,
      reason: `no signed checkpoint covers ${origin}#${lastSeq} yet (the gateway signs one every N events, every T seconds and at shutdown); try again later`,
    }
  }
  const leaves: Buffer[] = []
  for await (const row of store.rawEvents({ origin, fromSeq: 0, toSeq: cp.size - 1 })) {
    const leaf = storedRowLeaf(row)
    if (!leaf || row.seq !== leaves.length) {
      return {
        ok: false,
        reason: `the log of ${origin} is damaged at seq ${leaves.length}; run comfy-audit verify`,
      }
    }
    leaves.push(leaf)
  }
  if (leaves.length !== cp.size || rootFromLeafHashes(leaves).toString('base64') !== cp.root_hash) {
    return {
      ok: false,
      reason: `the stored log does not reproduce checkpoint ${cp.size}; run comfy-audit verify`,
    }
  }
  const bundle: JsonObject = {
    format: EVIDENCE_FORMAT,
    origin,
    session_id: sessionId,
    checkpoint: cp.note,
    summary: evidenceSummary(events),
    events: events.map((event) => ({
      event: eventLeafObject(event),
      proof: inclusionProof(leaves, event.seq, cp.size).map((h) => h.toString('base64')),
    })),
  }
  return { ok: true, value: canonicalJson(bundle) + '\n' }
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function exactKeys(v: JsonObject, keys: readonly string[]): boolean {
  const have = Object.keys(v).sort()
  return have.length === keys.length && [...keys].sort().every((k, i) => have[i] === k)
}

/**
 * Verifies a bundle offline with the log's verifier key (C2SP format, as `comfy-audit key` prints it).
 */
export function verifyEvidence(text: string, verifierKey: string): EvidenceResult<VerifiedEvidence> {
  const parsed = parseJson(text)
  if (!parsed.ok) return { ok: false, reason: `not JSON: ${parsed.reason}` }
  const bundle = parsed.value
  if (canonicalJson(bundle) + '\n' !== text) {
    return { ok: false, reason: 'bundle is not in canonical form (it was edited or re-encoded)' }
  }
  if (
    !isObject(bundle) ||
    !exactKeys(bundle, ['format', 'origin', 'session_id', 'checkpoint', 'summary', 'events'])
  ) {
    return { ok: false, reason: 'bundle does not have the fields of a comfy-audit evidence bundle' }
  }
  const { format, origin, session_id: sessionId, checkpoint, summary, events } = bundle
  if (format !== EVIDENCE_FORMAT)
    return { ok: false, reason: `unknown bundle format ${JSON.stringify(format)}` }
  if (typeof origin !== 'string' || typeof sessionId !== 'string' || typeof checkpoint !== 'string') {
    return { ok: false, reason: 'origin, session_id and checkpoint must be strings' }
  }
  const cp = verifyCheckpoint(checkpoint, verifierKey, origin)
  if (!cp.ok) return { ok: false, reason: `checkpoint: ${cp.reason}` }
  const { size, rootHash } = cp.value
  if (!Array.isArray(events) || events.length === 0) return { ok: false, reason: 'bundle has no events' }
  const proven: AuditEvent[] = []
  let previous = -1
  for (const [i, entry] of events.entries()) {
    const where = `events[${i}]`
    if (!isObject(entry) || !exactKeys(entry, ['event', 'proof']))
      return { ok: false, reason: `${where}: malformed` }
    const { event, proof } = entry
    if (!isObject(event) || !exactKeys(event, ['origin', 'seq', 'kind', 'time', 'session_id', 'payload'])) {
      return { ok: false, reason: `${where}.event: malformed` }
    }
    const { seq } = event
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq <= previous) {
      return { ok: false, reason: `${where}: seq must be an integer above the previous one` }
    }
    previous = seq
    if (event.origin !== origin || event.session_id !== sessionId) {
      return { ok: false, reason: `${where}: belongs to another log or session` }
    }
    if (typeof event.kind !== 'string' || typeof event.time !== 'string' || !isObject(event.payload)) {
      return { ok: false, reason: `${where}.event: malformed` }
    }
    if (!Array.isArray(proof)) return { ok: false, reason: `${where}.proof: not a list` }
    const hashes: Buffer[] = []
    for (const p of proof) {
      const bytes = typeof p === 'string' ? decodeBase64Strict(p) : null
      if (!bytes) return { ok: false, reason: `${where}.proof: not standard base64` }
      hashes.push(bytes)
    }
    const leaf = leafHash(canonicalJson(event))
    const included = verifyInclusion(seq, size, leaf, hashes, rootHash)
    if (!included.ok) return { ok: false, reason: `${where} (seq ${seq}): ${included.reason}` }
    const asEvent: AuditEvent = {
      origin,
      seq,
      kind: event.kind as AuditEvent['kind'],
      time: event.time,
      session_id: sessionId,
      payload: event.payload,
    }
    // Defensive: the proven leaf is the leaf of the event as the verifier reads it.
    if (!eventLeafHash(asEvent).equals(leaf)) return { ok: false, reason: `${where}: leaf mismatch` }
    proven.push(asEvent)
  }
  const recomputed = evidenceSummary(proven)
  if (!isObject(summary) || canonicalJson(recomputed) !== canonicalJson(summary)) {
    return { ok: false, reason: 'summary does not match the proven events' }
  }
  return {
    ok: true,
    value: { origin, session_id: sessionId, events: proven.length, treeSize: size, summary: recomputed },
  }
}

/**
 * The leaf of one audit event in its origin's Merkle tree: SHA-256(0x00 || RFC 8785 canonical JSON of
 * `{origin, seq, kind, time, session_id, payload}`), per RFC 9162 §2.1.1. The store writes it beside every
 * event (so pruning can drop the payload and keep the leaf), and `verify` recomputes it from the stored row.
 */
import { canonicalJson } from '../audit/json.js'
import type { AuditEvent, JsonObject } from '../audit/types.js'
import { leafHash } from './merkle.js'

/** The exact JSON object an event's leaf hashes. */
export function eventLeafObject(event: AuditEvent): JsonObject {
  return {
    origin: event.origin,
    seq: event.seq,
    kind: event.kind,
    time: event.time,
    session_id: event.session_id,
    payload: event.payload,
  }
}

/** The RFC 9162 leaf hash (32 bytes) of an event. */
export function eventLeafHash(event: AuditEvent): Buffer {
  return leafHash(canonicalJson(eventLeafObject(event)))
}

/** The leaf hash as stored: lower-case hex. */
export function eventLeafHex(event: AuditEvent): string {
  return eventLeafHash(event).toString('hex')
}

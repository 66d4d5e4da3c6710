/**
 * The leaf of one audit event in its origin's Merkle tree: SHA-256(0x00 || RFC 8785 canonical JSON of
 * `{origin, seq, kind, time, session_id, payload}`), per RFC 9162 §2.1.1. It lives with the event types
 * because both the store (which writes it beside every event, so pruning can drop the payload and keep the
 * leaf) and the ledger (which recomputes it in `verify`) need it, and the store sits below the ledger.
 */
import { hash } from 'node:crypto'
import { canonicalJson } from './json.js'
import type { AuditEvent, JsonObject } from './types.js'

/** RFC 9162 §2.1.1: leaves are hashed with a 0x00 prefix, interior nodes with 0x01. */
const LEAF_PREFIX = Buffer.from([0x00])

/**
 * The prefixed leaf input for the one-shot `hash()`, which costs a third of a `createHash` object per leaf
 * (verify hashes every event). U+0000 is the single byte 0x00 in UTF-8, so for text the prefix is a character.
 */
function leafInput(canonical: string | Buffer): string | Buffer {
  return typeof canonical === 'string' ? '\u0000' + canonical : Buffer.concat([LEAF_PREFIX, canonical])
}

/** The RFC 9162 leaf hash of already-canonical bytes. */
export function leafHash(canonical: string | Buffer): Buffer {
  return hash('sha256', leafInput(canonical), 'buffer')
}

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
  return hash('sha256', leafInput(canonicalJson(eventLeafObject(event))), 'hex')
}

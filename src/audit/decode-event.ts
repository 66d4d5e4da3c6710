/**
 * The one decoder of audit events: a stored or freshly committed event in, the same event typed by its kind
 * out (or why it does not fit its kind's schema). The store's projection, the sinks, the metrics and
 * provenance read payloads through it instead of casting them, so a typed node-run record keeps its type
 * from capture to the sinks.
 *
 * Decoding checks and narrows; it never copies. The event a reader gets is the very object the log holds,
 * so number spellings (see json.ts) and key order survive into whatever the reader writes out.
 */
import type { z } from 'zod'
import { EVENT_PAYLOAD_SCHEMAS } from './event-schemas.js'
import { AUDIT_EVENT_KINDS, type AuditEvent, type AuditEventKind } from './types.js'

/** The payload of one event kind, as its schema describes it. */
type AuditPayload<K extends AuditEventKind> = z.output<(typeof EVENT_PAYLOAD_SCHEMAS)[K]>

/** An event of kind `K` with its payload typed. */
type TypedEventOf<K extends AuditEventKind> = Omit<AuditEvent, 'kind' | 'payload'> & {
  readonly kind: K
  readonly payload: AuditPayload<K> & AuditEvent['payload']
}

/** Every audit event, discriminated by `kind`. */
type TypedAuditEvent = { [K in AuditEventKind]: TypedEventOf<K> }[AuditEventKind]

/** What {@link decodeEvent} found. */
type DecodeEventResult =
  { readonly ok: true; readonly event: TypedAuditEvent } | { readonly ok: false; readonly reason: string }

const KINDS: ReadonlySet<string> = new Set(AUDIT_EVENT_KINDS)

/** True for a kind of {@link AUDIT_EVENT_KINDS} (stored rows hold text). */
export function isAuditEventKind(kind: string): kind is AuditEventKind {
  return KINDS.has(kind)
}

function schemaOf(kind: string): z.ZodType | undefined {
  return isAuditEventKind(kind) ? EVENT_PAYLOAD_SCHEMAS[kind] : undefined
}

/** True when the event's payload fits its kind's schema (the narrowing is the schema's own check). */
function isTypedEvent(event: AuditEvent): event is AuditEvent & TypedAuditEvent {
  return schemaOf(event.kind)?.safeParse(event.payload).success === true
}

/** The event typed by its kind, or the reason (naming origin, seq and kind) it does not fit. */
export function decodeEvent(event: AuditEvent): DecodeEventResult {
  if (isTypedEvent(event)) return { ok: true, event }
  const at = `${event.origin}#${event.seq} (${event.kind})`
  const schema = schemaOf(event.kind)
  if (!schema) return { ok: false, reason: `${at}: unknown event kind` }
  const parsed = schema.safeParse(event.payload)
  const issues = parsed.success
    ? []
    : parsed.error.issues.map((i) => `payload${i.path.map((p) => `.${String(p)}`).join('')}: ${i.message}`)
  return { ok: false, reason: `${at}: ${issues.join('; ')}` }
}

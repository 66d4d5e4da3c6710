/**
 * Typed constructors of the events whose payloads carry records: the record goes in typed, the payload
 * comes out as JSON that {@link decodeEvent} reads back as the same type. Producers (capture, reconciliation,
 * provenance) build these events here instead of converting records by hand.
 */
import { toJsonValue } from './json-value.js'
import type { AuditEventInput, ModelRef } from './types.js'

/** `models.hashed`: the run's model files, resolved and hashed (projected into the session's `models`). */
export function modelsHashedEvent(
  time: string,
  sessionId: string,
  models: readonly ModelRef[],
): AuditEventInput {
  return {
    kind: 'models.hashed',
    time,
    session_id: sessionId,
    payload: { session: { models: toJsonValue(models) } },
  }
}

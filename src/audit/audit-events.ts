/**
 * Typed constructors of the events whose payloads carry records: the record goes in typed, the payload
 * comes out as JSON that {@link decodeEvent} reads back as the same type. Producers (capture, reconciliation,
 * provenance) build these events here instead of converting records by hand.
 */
import { toJsonObject, toJsonValue } from './json-value.js'
import type { AuditEventInput, FileRef, ModelRef, NodeRunRecord } from './types.js'

/** A file a node produced, with the node that produced it. */
export type NodeFile = FileRef & { readonly node_id: string }

/** `node.finished`: the complete node-run record, and the files the node produced when known. */
export function nodeFinishedEvent(
  time: string,
  run: NodeRunRecord,
  outputs?: readonly NodeFile[],
): AuditEventInput {
  return {
    kind: 'node.finished',
    time,
    session_id: run.session_id,
    payload: {
      node_run: toJsonObject(run),
      ...(outputs === undefined ? {} : { outputs: toJsonValue(outputs) }),
    },
  }
}

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

/** `output.hashed`: output files with their SHA-256 (projected into the outputs table). */
export function outputHashedEvent(
  time: string,
  sessionId: string,
  rows: readonly NodeFile[],
): AuditEventInput {
  return { kind: 'output.hashed', time, session_id: sessionId, payload: { outputs: toJsonValue(rows) } }
}

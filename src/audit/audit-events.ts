/**
 * Typed constructors of audit events: the record goes in typed, the payload comes out as JSON that
 * {@link decodeEvent} reads back as the same type (event-schemas.ts). Producers (capture, reconciliation,
 * provenance) build their events here instead of wording payloads by hand. Payload key order is part of
 * what the log writes, so each constructor writes its keys in one fixed order.
 */
import { toJsonObject, toJsonValue } from './json-value.js'
import type {
  AuditEventInput,
  AuditEventKind,
  EnvironmentSnapshot,
  FileRef,
  JsonObject,
  JsonValue,
  ModelRef,
  NodeRunRecord,
  SessionRecord,
} from './types.js'

/** The part of a session record an event sets (the store's projection folds patches in log order). */
export type SessionPatch = Partial<Omit<SessionRecord, 'origin' | 'session_id'>>

/** A file a node produced, as `node.finished` and `session.corrected` list it. */
type NodeFile = FileRef & { readonly node_id: string }

function event(
  kind: AuditEventKind,
  time: string,
  sessionId: string | null,
  payload: JsonObject,
): AuditEventInput {
  return { kind, time, session_id: sessionId, payload }
}

/** `models.hashed`: the run's model files, resolved and hashed (projected into the session's `models`). */
export function modelsHashedEvent(
  time: string,
  sessionId: string,
  models: readonly ModelRef[],
): AuditEventInput {
  return event('models.hashed', time, sessionId, { session: { models: toJsonValue(models) } })
}

/** `environment.snapshot`: ComfyUI's environment, logged each time it changes. */
export function environmentSnapshotEvent(time: string, environment: EnvironmentSnapshot): AuditEventInput {
  return event('environment.snapshot', time, null, { environment: toJsonObject(environment) })
}

/**
 * `prompt.submitted`: the session opens. `submitter` goes inside the session patch (the projection reads it
 * there); `extra` holds the kind's other fields (body size, parse error, recovery evidence).
 */
export function promptSubmittedEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  submitter: JsonObject,
  extra: JsonObject,
): AuditEventInput {
  return event('prompt.submitted', time, sessionId, {
    session: { ...toJsonObject(patch), submitter },
    ...extra,
  })
}

/** A session event whose payload is its patch first, then the kind's own fields. */
function patchEvent(
  kind: AuditEventKind,
  time: string,
  sessionId: string,
  patch: SessionPatch,
  extra: JsonObject,
): AuditEventInput {
  return event(kind, time, sessionId, { session: toJsonObject(patch), ...extra })
}

/** `prompt.accepted`: ComfyUI answered 200 (`extra`: node errors, parse error, recovery evidence). */
export function promptAcceptedEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  extra: JsonObject,
): AuditEventInput {
  return patchEvent('prompt.accepted', time, sessionId, patch, extra)
}

/** `prompt.rejected`: ComfyUI (or the gateway) refused the prompt; the session ends. */
export function promptRejectedEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  extra: JsonObject,
): AuditEventInput {
  return patchEvent('prompt.rejected', time, sessionId, patch, extra)
}

/** What a `prompt.refused` records: the refused request, never the session that holds its id. */
interface PromptRefusal {
  readonly prompt_id: string
  readonly reason: string
  readonly http_status: number
  readonly submitter: JsonObject
  readonly downstream_client_id: string | null
  readonly body_bytes: number
  readonly body_sha256: string
  readonly answer: JsonValue
}

/** `prompt.refused`: no session id, the id belongs to another session. */
export function promptRefusedEvent(time: string, refusal: PromptRefusal): AuditEventInput {
  return event('prompt.refused', time, null, toJsonObject(refusal))
}

/** `execution.started`: the session runs. */
export function executionStartedEvent(time: string, sessionId: string, patch: SessionPatch): AuditEventInput {
  return patchEvent('execution.started', time, sessionId, patch, {})
}

/** `execution.cached`: nodes ComfyUI takes from its cache. */
export function executionCachedEvent(
  time: string,
  sessionId: string,
  nodes: readonly string[],
): AuditEventInput {
  return event('execution.cached', time, sessionId, { nodes: toJsonValue(nodes) })
}

/** What `node.started` says of a node. */
interface NodeStart {
  readonly node_id: string
  readonly node_type: string | null
  readonly display_node: string | null
  readonly real_node_id: string | null
  readonly parent_node_id: string | null
}

/** `node.started`. */
export function nodeStartedEvent(time: string, sessionId: string, node: NodeStart): AuditEventInput {
  return event('node.started', time, sessionId, toJsonObject(node))
}

/**
 * `node.finished`: the complete node-run record and the files the node produced. Reconciliation knows no
 * files per node (history lists them per session), so it passes none and the payload has no `outputs` key.
 */
export function nodeFinishedEvent(
  time: string,
  record: NodeRunRecord,
  outputs?: readonly NodeFile[],
): AuditEventInput {
  return event('node.finished', time, record.session_id, {
    node_run: toJsonObject(record),
    ...(outputs === undefined ? {} : { outputs: toJsonValue(outputs) }),
  })
}

/** `output.hashed`: the session's output files with their digests (may come after `execution.finished`). */
export function outputHashedEvent(
  time: string,
  sessionId: string,
  outputs: readonly NodeFile[],
): AuditEventInput {
  return event('output.hashed', time, sessionId, { outputs: toJsonValue(outputs) })
}

/** What `node.error_blocked` says: the node ComfyUI blocked, and why (the run goes on). */
interface NodeBlocked {
  readonly node_id: string | null
  readonly node_type: string | null
  readonly exception_message: JsonValue
}

/** `node.error_blocked`. */
export function nodeErrorBlockedEvent(
  time: string,
  sessionId: string,
  blocked: NodeBlocked,
): AuditEventInput {
  return event('node.error_blocked', time, sessionId, toJsonObject(blocked))
}

/** `execution.finished`: success, error or interrupted (`extra`: the error node or the interruption). */
export function executionFinishedEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  extra: JsonObject,
): AuditEventInput {
  return event('execution.finished', time, sessionId, { ...extra, session: toJsonObject(patch) })
}

/** `session.cancelled`: deleted from ComfyUI's queue before it ran, by `by`. */
export function sessionCancelledEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  by: JsonObject,
): AuditEventInput {
  return patchEvent('session.cancelled', time, sessionId, patch, { by })
}

/** What a `session.reconciled` says besides its patch: history's outcome of a session closed after a gap. */
interface Reconciliation {
  /** The files history lists. */
  readonly outputs: readonly NodeFile[]
  /** `execution_interrupted` data, or null. */
  readonly interrupted: JsonObject | null
}

/** `session.reconciled`: an open session closed from ComfyUI's history after a gap. */
export function sessionReconciledEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  reconciliation: Reconciliation,
): AuditEventInput {
  return patchEvent('session.reconciled', time, sessionId, patch, {
    outputs: toJsonValue(reconciliation.outputs),
    interrupted: reconciliation.interrupted,
  })
}

/** What a `session.lost` decision rested on, so a reader can judge it later (issue 10 item 3). */
interface LostEvidence {
  readonly queue_running: number
  readonly queue_pending: number
  readonly history_entries: number
  readonly in_queue: false
  readonly in_history: false
  readonly accepted: boolean
  /** Present (true) only for a session taken over from a gateway process that died. */
  readonly orphaned?: true
  readonly comfy_restarted: boolean
  readonly decided_at: string
}

/** `session.lost`: ComfyUI has the prompt neither queued nor in history. */
export function sessionLostEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  loss: { readonly reason: string; readonly evidence: LostEvidence },
): AuditEventInput {
  return patchEvent('session.lost', time, sessionId, patch, {
    reason: loss.reason,
    evidence: toJsonObject(loss.evidence),
  })
}

/** `session.bypass`: a run seen in ComfyUI's history that never passed the gateway. */
export function sessionBypassEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  bypass: {
    readonly outputs: readonly NodeFile[]
    /** Why the entry's gateway seal did not open, or null when it had none. */
    readonly sealRejected: string | null
  },
): AuditEventInput {
  return patchEvent('session.bypass', time, sessionId, patch, {
    outputs: toJsonValue(bypass.outputs),
    ...(bypass.sealRejected === null ? {} : { seal_rejected: bypass.sealRejected }),
  })
}

/** What a `session.corrected` says besides its patch. */
interface Correction {
  readonly from: 'lost'
  readonly to: string
  readonly source: 'socket' | 'history'
  /** The files history lists (history corrections only). */
  readonly outputs?: readonly NodeFile[]
  readonly evidence?: JsonObject
}

/** `session.corrected`: a session closed as lost that ComfyUI showed finished; never a silent change. */
export function sessionCorrectedEvent(
  time: string,
  sessionId: string,
  patch: SessionPatch,
  correction: Correction,
): AuditEventInput {
  const { outputs, evidence, from, to, source } = correction
  return event('session.corrected', time, sessionId, {
    session: toJsonObject(patch),
    ...(outputs === undefined ? {} : { outputs: toJsonValue(outputs) }),
    from,
    to,
    source,
    ...(evidence === undefined ? {} : { evidence }),
  })
}

/** The kinds of people's actions on ComfyUI other than prompts. */
type ActionKind = Extract<AuditEventKind, `action.${string}`>

/** An `action.*` event: `fields` starts with the base every action carries (method, path, status, submitter). */
export function actionEvent(
  kind: ActionKind,
  time: string,
  sessionId: string | null,
  fields: JsonObject,
): AuditEventInput {
  return event(kind, time, sessionId, fields)
}

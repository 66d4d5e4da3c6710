/**
 * One Zod schema per audit event kind, for the payload its producers write (capture, reconciliation, the
 * gateway, identity, retention, provenance). The schemas describe what readers rely on and let every other
 * field through (`looseObject`): the log is append-only, so a reader must still accept what older versions
 * wrote, and fields added later keep old readers working. Values stay lossless JSON (bigint, NaN; see
 * json.ts): a schema never coerces or copies, it only checks (see decode-event.ts).
 *
 * The projected fields (`session`, `node_run`, `outputs`; see ProjectedPayload in types.ts) appear on the
 * kinds that write them. `session` stays a JSON object here apart from what readers branch on: the store's
 * projection checks it field by field against the session columns, and a malformed field is skipped there
 * (and reported) rather than refusing a committed event.
 */
import { z } from 'zod'
import {
  NODE_RUN_STATUSES,
  SESSION_STATUSES,
  type FileRef,
  type JsonObject,
  type JsonValue,
  type ModelRef,
  type NodeRunRecord,
  type Submitter,
} from './types.js'

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Any present value. Payload fields are JSON already (the payload is a JsonObject), so the only thing to
 * check is that the field is there.
 */
const zJsonValue = z.custom<JsonValue>((value) => value !== undefined)
/** A JSON object, checked only for being one; its members are JSON already. */
const zJsonObject = z.custom<JsonObject>(isJsonObject)

const text = z.string()
const textOrNull = z.string().nullable()
// Numbers come from JSON: NaN and ±Infinity are legal values here (tagged in storage), which z.number() refuses.
const num = z.custom<number>((value) => typeof value === 'number')
const numberOrNull = num.nullable()

/** {@link Submitter}. */
const zSubmitter: z.ZodType<Submitter> = z.looseObject({
  user: text,
  auth_method: text,
  client_address: textOrNull,
  user_agent: textOrNull,
  client_id: textOrNull,
})

/** A file a node produced, as the projected `outputs` rows name it. */
const zNodeFile: z.ZodType<FileRef & { node_id: string }> = z.looseObject({
  node_id: text,
  filename: text,
  subfolder: text,
  type: text,
  sha256: textOrNull.optional(),
  bytes: numberOrNull.optional(),
  width: numberOrNull.optional(),
  height: numberOrNull.optional(),
})

/** {@link ModelRef}. */
const zModelRef: z.ZodType<ModelRef> = z.looseObject({
  folder: text,
  name: text,
  node_id: text,
  input_name: text,
  sha256: textOrNull.optional(),
  autov2: textOrNull.optional(),
  bytes: numberOrNull.optional(),
})

/** {@link NodeRunRecord}: the complete record capture and reconciliation write in `node.finished`. */
const zNodeRunRecord: z.ZodType<NodeRunRecord> = z.looseObject({
  session_id: text,
  node_id: text,
  node_type: textOrNull,
  timestamp_start: text,
  timestamp_end: textOrNull,
  duration_ms: numberOrNull,
  inputs: zJsonObject,
  outputs: zJsonObject.nullable(),
  status: z.enum(NODE_RUN_STATUSES),
  error_message: textOrNull,
  exception_type: textOrNull,
  traceback: z.array(text).nullable(),
  gpu_memory_used: numberOrNull,
  gpu_memory_torch: numberOrNull,
  display_node: textOrNull,
  real_node_id: textOrNull,
  parent_node_id: textOrNull,
  progress: z.looseObject({ value: num, max: num }).nullable(),
  previews: numberOrNull.optional(),
})

/**
 * A projected `session` patch: a JSON object whose `status`, where present, is a session status. The other
 * fields are left to the store's projection (see the module comment).
 */
const zSessionPatch = z.looseObject({ status: z.enum(SESSION_STATUSES).optional() })

// Optional: what a kind's producers write today, but events written by hand or by older versions may lack it,
// and the projection (which reads it) reports rather than refuses.
const session = { session: zSessionPatch.optional() }
const outputs = z.array(zNodeFile)

/**
 * What capture writes on every `action.*` event. Optional: older and test-written actions carry only some;
 * `submitter` is checked where read (see {@link zSubmitter}), since a malformed one reads as no submitter.
 */
const actionBase = {
  method: text.optional(),
  path: text.optional(),
  http_status: num.optional(),
  submitter: zJsonValue.optional(),
}

/** `access.refused` and its summary: who, from where, which route and why (identity's refusal log). */
const refusal = z.looseObject({})

/** True for a complete {@link NodeRunRecord}; `verify` and the projection check stored rows with it. */
export function isNodeRunRecord(value: unknown): value is NodeRunRecord {
  return zNodeRunRecord.safeParse(value).success
}

/** True for a {@link Submitter} (actions read the payload's `submitter` through it). */
export function isSubmitter(value: unknown): value is Submitter {
  return zSubmitter.safeParse(value).success
}

/** The payload schema of every event kind. */
export const EVENT_PAYLOAD_SCHEMAS = {
  'gateway.started': z.looseObject({}),
  'gateway.stopped': z.looseObject({}),
  'environment.snapshot': z.looseObject({ environment: zJsonObject.optional() }),
  // The models the prompt names (capture's prompt analysis); provenance hashes them.
  'prompt.submitted': z.looseObject({
    session: zSessionPatch.extend({ models: z.array(zModelRef).optional() }).optional(),
  }),
  'prompt.accepted': z.looseObject({ ...session }),
  'prompt.rejected': z.looseObject({ ...session }),
  'prompt.refused': z.looseObject({ prompt_id: zJsonValue.optional(), reason: zJsonValue.optional() }),
  'execution.started': z.looseObject({ ...session }),
  'execution.cached': z.looseObject({ ...session, nodes: zJsonValue.optional() }),
  'node.started': z.looseObject({ ...session, node_id: text.optional() }),
  'node.finished': z.looseObject({ ...session, node_run: zNodeRunRecord, outputs: outputs.optional() }),
  'node.error_blocked': z.looseObject({ ...session }),
  'execution.finished': z.looseObject({ ...session }),
  'session.cancelled': z.looseObject({ ...session }),
  'session.reconciled': z.looseObject({ ...session }),
  'session.lost': z.looseObject({ ...session }),
  'session.bypass': z.looseObject({ ...session }),
  'session.corrected': z.looseObject({ ...session, outputs: outputs.optional() }),
  'output.hashed': z.looseObject({ outputs }),
  // The hasher's answer: ModelRefs with hashes. Left as JSON: events written before the hasher named the
  // node and input of each model carry less, and only the projection reads them.
  'models.hashed': z.looseObject({ ...session }),
  'action.interrupt': z.looseObject(actionBase),
  'action.queue_delete': z.looseObject(actionBase),
  'action.queue_clear': z.looseObject(actionBase),
  'action.history_delete': z.looseObject(actionBase),
  'action.history_clear': z.looseObject(actionBase),
  'action.upload': z.looseObject(actionBase),
  'action.free': z.looseObject(actionBase),
  'security.login': z.looseObject({}),
  'security.login_failed': z.looseObject({}),
  'security.logout': z.looseObject({}),
  'security.person_changed': z.looseObject({}),
  'access.refused': refusal,
  'access.refused.summary': refusal,
  'audit.read': z.looseObject({}),
  'audit.pruned': z.looseObject({ ranges: zJsonValue.optional() }),
  'audit.erased': z.looseObject({ ranges: zJsonValue.optional() }),
} as const satisfies Record<string, z.ZodType>

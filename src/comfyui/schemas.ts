/**
 * Zod schemas for the ComfyUI 0.8 payloads capture reads (docs/comfyui-protocol.md §1.3, §2). They check
 * *structure* only and keep ComfyUI's wire names; free-form parts (prompt graphs, UI workflows, extra_data,
 * error details) stay lossless `JsonValue`s so seeds up to 2^64-1 and NaN survive. Bodies are read with
 * `parseJson` (Python-compatible, lossless), never `JSON.parse`.
 */
import { z } from 'zod'
import { parseJson } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import { isJsonValue } from '../audit/json-value.js'

/** True for a JSON object (not null, not an array). */
export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Any JSON value, passed through by reference (no copy, so bigints stay exact). */
export const zJsonValue = z.custom<JsonValue>((v) => isJsonValue(v), 'expected a JSON value')
/** A JSON object, passed through by reference. */
const zJsonObject = z.custom<JsonObject>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && isJsonValue(v),
  'expected a JSON object',
)

// ---------------------------------------------------------------------------------------------------------
// POST /prompt

/** One node of an API-format prompt: `{class_type, inputs: {name: const | [src_id, out_index]}, _meta?}`. */
const zPromptNode = z.looseObject({
  class_type: z.string(),
  inputs: z.record(z.string(), zJsonValue).optional(),
  _meta: zJsonValue.optional(),
})
export type PromptNode = z.infer<typeof zPromptNode>

/** An API-format prompt graph keyed by (opaque, string) node id. */
export const zPromptGraph = z.record(z.string(), zPromptNode)
export type PromptGraph = z.infer<typeof zPromptGraph>

/** One validation error (`{type, message, details, extra_info}`). */
const zPromptError = z.looseObject({
  type: z.string(),
  message: z.string(),
  details: zJsonValue.optional(),
  extra_info: zJsonValue.optional(),
})

/** Validation errors of one node. */
const zNodeErrors = z.looseObject({
  errors: z.array(zPromptError),
  dependent_outputs: z.array(zJsonValue).optional(),
  class_type: z.string().optional(),
})

/** `200 {"prompt_id", "number", "node_errors"}`: `node_errors` may be non-empty (those outputs were dropped). */
export const zPromptAccepted = z.looseObject({
  prompt_id: z.string(),
  number: z.number(),
  node_errors: z.record(z.string(), zNodeErrors).optional(),
})

// ---------------------------------------------------------------------------------------------------------
// WebSocket events (§1.3)

const zPromptId = z.string()

const zStatusData = z.looseObject({
  status: z.looseObject({ exec_info: z.looseObject({ queue_remaining: z.number() }) }),
  sid: z.string().optional(),
})
const zExecutionStartData = z.looseObject({ prompt_id: zPromptId, timestamp: z.number().optional() })
const zExecutionCachedData = z.looseObject({
  nodes: z.array(z.string()),
  prompt_id: zPromptId,
  timestamp: z.number().optional(),
})
/** `executing`: `node:null` is the end marker; the reconnect form has neither `prompt_id` nor `display_node`. */
const zExecutingData = z.looseObject({
  node: z.string().nullable(),
  display_node: z.string().nullable().optional(),
  prompt_id: zPromptId.optional(),
})
const zProgressData = z.looseObject({
  value: z.number(),
  max: z.number(),
  prompt_id: zPromptId.optional(),
  node: z.string().nullable().optional(),
})
const zProgressStateNode = z.looseObject({
  value: z.number(),
  max: z.number(),
  state: z.string(),
  node_id: z.string().optional(),
  prompt_id: zPromptId.optional(),
  display_node_id: z.string().nullable().optional(),
  parent_node_id: z.string().nullable().optional(),
  real_node_id: z.string().nullable().optional(),
})
const zProgressStateData = z.looseObject({
  prompt_id: zPromptId,
  nodes: z.record(z.string(), zProgressStateNode),
})
const zExecutedData = z.looseObject({
  node: z.string(),
  display_node: z.string().nullable().optional(),
  output: zJsonObject.nullable().optional(),
  prompt_id: zPromptId,
})
const zExecutionSuccessData = z.looseObject({ prompt_id: zPromptId, timestamp: z.number().optional() })
const zExecutionErrorData = z.looseObject({
  prompt_id: zPromptId,
  node_id: z.string().nullable().optional(),
  node_type: z.string().nullable().optional(),
  executed: z.array(z.string()).optional(),
  exception_message: z.string().optional(),
  exception_type: z.string().optional(),
  traceback: z.array(z.string()).optional(),
  current_inputs: zJsonValue.optional(),
  current_outputs: zJsonValue.optional(),
  timestamp: z.number().optional(),
})
export type ExecutionErrorData = z.infer<typeof zExecutionErrorData>
const zExecutionInterruptedData = z.looseObject({
  prompt_id: zPromptId,
  node_id: z.string().nullable().optional(),
  node_type: z.string().nullable().optional(),
  executed: z.array(z.string()).optional(),
  timestamp: z.number().optional(),
})
const zFeatureFlagsData = zJsonObject
const zLogsData = z.looseObject({ entries: z.array(z.looseObject({ t: z.string(), m: z.string() })) })

/** Every JSON event of §1.3, discriminated by `type`. Unknown types (custom nodes) fail this schema. */
export const zWsMessage = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('status'), data: zStatusData }),
  z.looseObject({ type: z.literal('feature_flags'), data: zFeatureFlagsData }),
  z.looseObject({ type: z.literal('execution_start'), data: zExecutionStartData }),
  z.looseObject({ type: z.literal('execution_cached'), data: zExecutionCachedData }),
  z.looseObject({ type: z.literal('executing'), data: zExecutingData }),
  z.looseObject({ type: z.literal('progress'), data: zProgressData }),
  z.looseObject({ type: z.literal('progress_state'), data: zProgressStateData }),
  z.looseObject({ type: z.literal('executed'), data: zExecutedData }),
  z.looseObject({ type: z.literal('execution_success'), data: zExecutionSuccessData }),
  z.looseObject({ type: z.literal('execution_error'), data: zExecutionErrorData }),
  z.looseObject({ type: z.literal('execution_interrupted'), data: zExecutionInterruptedData }),
  z.looseObject({ type: z.literal('logs'), data: zLogsData }),
])
export type WsMessage = z.infer<typeof zWsMessage>

/** The event types {@link zWsMessage} knows. */
export const WS_MESSAGE_TYPES = [
  'status',
  'feature_flags',
  'execution_start',
  'execution_cached',
  'executing',
  'progress',
  'progress_state',
  'executed',
  'execution_success',
  'execution_error',
  'execution_interrupted',
  'logs',
] as const

// ---------------------------------------------------------------------------------------------------------
// System, nodes, history, queue

/** One device of `/system_stats` (sizes in bytes). */
const zSystemDevice = z.looseObject({
  name: z.string(),
  type: z.string().optional(),
  index: z.number().nullable().optional(),
  vram_total: z.number(),
  vram_free: z.number(),
  torch_vram_total: z.number(),
  torch_vram_free: z.number(),
})

/** `GET /system_stats`. */
export const zSystemStats = z.looseObject({
  system: z.looseObject({
    os: z.string().optional(),
    ram_total: z.number().optional(),
    ram_free: z.number().optional(),
    comfyui_version: z.string().optional(),
    python_version: z.string().optional(),
    pytorch_version: z.string().optional(),
    embedded_python: z.boolean().optional(),
    required_frontend_version: z.string().nullable().optional(),
    argv: z.array(z.string()).optional(),
  }),
  devices: z.array(zSystemDevice),
})
export type SystemStats = z.infer<typeof zSystemStats>

/** The subset of one `/object_info` class capture reads. */
const zObjectInfoNode = z.looseObject({
  // Real 0.8 answers carry `display_name: null` for some core nodes (LatentAdd, ...): be lenient.
  name: z.string().nullable().optional(),
  display_name: z.string().nullable().optional(),
  category: z.string().nullable().optional(),
  python_module: z.string().nullable().optional(),
  output_node: z.boolean().nullable().optional(),
  input: zJsonValue.optional(),
})
/** `GET /object_info`. */
export const zObjectInfo = z.record(z.string(), zObjectInfoNode)
export type ObjectInfo = z.infer<typeof zObjectInfo>

/** A queue/history prompt tuple: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`. */
const zPromptTuple = z.tuple([z.number(), z.string(), zJsonValue, zJsonValue.optional()], zJsonValue)
export type PromptTuple = z.infer<typeof zPromptTuple>

/** `status` of a history entry; `messages` hold `[event_name, data]` pairs. */
const zHistoryStatus = z.looseObject({
  status_str: z.string(),
  completed: z.boolean(),
  messages: z.array(z.tuple([z.string(), zJsonValue])),
})

/** One entry of `GET /history`. */
const zHistoryEntry = z.looseObject({
  prompt: zPromptTuple,
  outputs: z.record(z.string(), zJsonObject).optional(),
  meta: zJsonValue.optional(),
  status: zHistoryStatus.optional(),
})
export type HistoryEntry = z.infer<typeof zHistoryEntry>

/** `GET /history` and `GET /history/{id}`: `{prompt_id: entry}` (`{}` for an unknown id). */
export const zHistory = z.record(z.string(), zHistoryEntry)
export type History = z.infer<typeof zHistory>

/** `GET /queue`. */
export const zQueue = z.looseObject({
  queue_running: z.array(zPromptTuple),
  queue_pending: z.array(zPromptTuple),
})
export type Queue = z.infer<typeof zQueue>

// ---------------------------------------------------------------------------------------------------------
// Action requests and answers

/** `POST /queue` and `POST /history`: `{clear?, delete?: [prompt_id]}`. */
export const zQueueOrHistoryAction = z.looseObject({
  clear: zJsonValue.optional(),
  delete: z.array(z.string()).optional(),
})
/** `POST /interrupt`: optional `prompt_id` (none: global interrupt). */
export const zInterruptRequest = z.looseObject({ prompt_id: z.string().nullable().optional() })
/** `POST /free`. */
export const zFreeRequest = z.looseObject({
  unload_models: zJsonValue.optional(),
  free_memory: zJsonValue.optional(),
})
/** Answer of `POST /upload/image|mask`. */
export const zUploadResponse = z.looseObject({ name: z.string(), subfolder: z.string(), type: z.string() })

// ---------------------------------------------------------------------------------------------------------

/** Result of {@link parseWith}. */
type SchemaResult<T> = { ok: true; value: T } | { ok: false; reason: string }

/**
 * Parses text or bytes with the lossless parser and checks them against a schema; a parsed `JsonValue`
 * may be given instead. Never throws.
 */
export function parseWith<T>(schema: z.ZodType<T>, input: string | Buffer | JsonValue): SchemaResult<T> {
  let value: JsonValue
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    const parsed = parseJson(input)
    if (!parsed.ok) return { ok: false, reason: `invalid JSON: ${parsed.reason}` }
    value = parsed.value
  } else {
    value = input
  }
  return checkWith(schema, value)
}

/** Checks an already parsed value against a schema. Never throws. */
export function checkWith<T>(schema: z.ZodType<T>, value: JsonValue): SchemaResult<T> {
  const result = schema.safeParse(value)
  if (result.success) return { ok: true, value: result.data }
  const first = result.error.issues.slice(0, 3)
  const reason = first
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ')
  return { ok: false, reason }
}

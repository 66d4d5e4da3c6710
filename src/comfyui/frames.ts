/**
 * One upstream WebSocket frame, read once. The socket hub parses each frame as it arrives (it needs the type
 * and prompt id to route it) and hands this object on, so capture and metrics never parse the bytes again.
 * The schema check of a known message type is deferred and memoised: the hub's hot path pays only for the
 * JSON parse (progress frames, by far the most, not even that: one match reads them), capture's serial worker
 * pays for the check, and nobody pays twice.
 */
import { parseJson } from '../audit/json.js'
import type { JsonObject } from '../audit/types.js'
import { checkWith, isJsonObject, WS_MESSAGE_TYPES, zWsMessage, type WsMessage } from './schemas.js'

const KNOWN_TYPES = new Set<string>(WS_MESSAGE_TYPES)

/** Binary event types (protocol §1.4). */
export const BINARY_PREVIEW_IMAGE = 1
export const BINARY_PREVIEW_WITH_METADATA = 4

/** Where a binary preview belongs: type 1 names nothing, type 4 names the prompt and node in its metadata. */
export interface PreviewTarget {
  readonly promptId: string | null
  readonly nodeId: string | null
}

/** The schema-checked reading of a text frame. */
type CheckedMessage =
  /** A message of a type comfy-audit reads, matching its schema. */
  | { readonly ok: true; readonly message: WsMessage }
  /** Not a type comfy-audit reads (custom nodes' events, binary, not JSON): nothing to record. */
  | { readonly ok: false; readonly invalid: null }
  /** A known type whose data does not match the schema: worth a log line, never a guess. */
  | { readonly ok: false; readonly invalid: string }

export interface UpstreamFrame {
  /** The bytes exactly as ComfyUI sent them (text frames as a string). */
  readonly raw: string | Buffer
  readonly isBinary: boolean
  /** A text frame's JSON object, read losslessly (bigints, NaN); null for binary or non-object frames. */
  readonly json: JsonObject | null
  /** `json.type` when it is a string. */
  readonly type: string | null
  /** A binary preview's target (read from the few header bytes); null for other frames. */
  readonly preview: PreviewTarget | null
  /** The schema check of the message, done on first call and remembered. */
  checked(): CheckedMessage
}

const PROGRESS_PREFIX = '{"type": "progress", "data": '

/**
 * Whether a text frame is ComfyUI's `progress` as `json.dumps({"type": event, "data": data})` spells it: that
 * object has no other member, so the frame is a progress message (or not JSON at all), read or not. The most
 * frequent frame by far (one per sampler step); the hub routes it by this prefix alone.
 */
export function isProgressText(text: string): boolean {
  return text.startsWith(PROGRESS_PREFIX)
}

// The whole frame as ComfyUI's progress hook spells it: small integers, ids without escapes. Anything else
// (floats, escapes, another member order) is parsed and checked in full.
const PROGRESS_FRAME =
  // eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings
  /^\{"type": "progress", "data": \{"value": (0|[1-9]\d{0,14}), "max": (0|[1-9]\d{0,14}), "prompt_id": "([^"\\\x00-\x1f]*)", "node": (?:"([^"\\\x00-\x1f]*)"|null)\}\}$/

/**
 * A progress frame read by one match instead of a parse and a schema check (one frame per sampler step):
 * the object the parser would build, and it matches the schema by construction. Null when not so spelled.
 */
function readProgress(text: string): JsonObject | null {
  const m = PROGRESS_FRAME.exec(text)
  if (m === null) return null
  const data = { value: Number(m[1]), max: Number(m[2]), prompt_id: m[3] ?? '', node: m[4] ?? null }
  return { type: 'progress', data }
}

const NOT_READ: CheckedMessage = { ok: false, invalid: null }

/** Reads one frame from ComfyUI. Never throws: malformed frames read as `json: null`. */
export function parseUpstreamFrame(raw: string | Buffer, isBinary: boolean): UpstreamFrame {
  if (isBinary) {
    const preview = typeof raw === 'string' ? null : previewTarget(raw)
    return { raw, isBinary, json: null, type: null, preview, checked: () => NOT_READ }
  }
  const progress = typeof raw === 'string' && isProgressText(raw) ? readProgress(raw) : null
  if (progress !== null) {
    const message = { ok: true, message: progress as WsMessage } as const
    return { raw, isBinary, json: progress, type: 'progress', preview: null, checked: () => message }
  }
  const parsed = parseJson(raw)
  const json = parsed.ok && isJsonObject(parsed.value) ? parsed.value : null
  const type = json && typeof json.type === 'string' ? json.type : null
  let memo: CheckedMessage | undefined
  const checked = (): CheckedMessage => (memo ??= checkMessage(json, type))
  return { raw, isBinary, json, type, preview: null, checked }
}

/**
 * `queue_remaining` of a `status` frame (protocol §1.3), read from the parsed JSON without the schema check:
 * the hub reads it on every status frame of its observer, on the proxy path. Undefined for any other frame.
 */
export function queueRemaining(frame: UpstreamFrame): number | undefined {
  if (frame.type !== 'status' || frame.json === null) return undefined
  const data = frame.json.data
  const status = isJsonObject(data) ? data.status : undefined
  const info = isJsonObject(status) ? status.exec_info : undefined
  const remaining = isJsonObject(info) ? info.queue_remaining : undefined
  return typeof remaining === 'number' ? remaining : undefined
}

function checkMessage(json: JsonObject | null, type: string | null): CheckedMessage {
  if (json === null || type === null || !KNOWN_TYPES.has(type)) return NOT_READ
  const result = checkWith(zWsMessage, json)
  return result.ok
    ? { ok: true, message: result.value }
    : { ok: false, invalid: `unexpected ${type} frame: ${result.reason}` }
}

/**
 * Where a binary frame's preview belongs: PREVIEW_IMAGE (1) names nothing, PREVIEW_IMAGE_WITH_METADATA
 * (4, metadata length, JSON, image) names `prompt_id` and `node_id`. Null for other binary frames.
 */
function previewTarget(frame: Buffer): PreviewTarget | null {
  if (frame.length < 8) return null
  const type = frame.readUInt32BE(0)
  if (type === BINARY_PREVIEW_IMAGE) return { promptId: null, nodeId: null }
  if (type !== BINARY_PREVIEW_WITH_METADATA) return null
  const len = frame.readUInt32BE(4)
  if (8 + len > frame.length) return null
  const meta = parseJson(frame.subarray(8, 8 + len))
  if (!meta.ok || !isJsonObject(meta.value)) return null
  const { prompt_id: promptId, node_id: nodeId } = meta.value
  if (typeof promptId !== 'string' || typeof nodeId !== 'string') return null
  return { promptId, nodeId }
}

/** How the socket hub reads the few frames and answers it routes by (protocol §1.3). */
import { parseJson } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'
import type { UpstreamFrame } from '../comfyui/frames.js'

/** A text frame's type and data, as the hub routes it. */
export type Frame = { type: string | null; data: Record<string, JsonValue> }

/** True for a JSON object. */
export function isRecord(v: unknown): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A downstream client's text frame (its feature flags); null when it is not a JSON object. */
export function parseFrame(text: string): Frame | null {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    // Python writes NaN/Infinity bare; the tolerant parser reads them.
    const r = parseJson(text)
    if (!r.ok) return null
    value = r.value
  }
  if (!isRecord(value)) return null
  return {
    type: typeof value.type === 'string' ? value.type : null,
    data: isRecord(value.data) ? value.data : {},
  }
}

/** The routing view of an upstream frame, read once by {@link parseUpstreamFrame}. */
export function frameOf(upstream: UpstreamFrame): Frame | null {
  const value = upstream.json
  if (value === null) return null
  return { type: upstream.type, data: isRecord(value.data) ? value.data : {} }
}

const QUEUE_BROADCAST = '{"type": "status", "data": {"status": '

/**
 * Whether a channel's text frame is ComfyUI's queue `status` without `sid` (`send_sync("status", ...)` to
 * every socket), spelled as its `json.dumps` spells it. The hub relays it unread and untapped: the observer
 * taps its own copy, and tapping each channel's copy queued clients × queue changes frames for capture
 * (1,000 clients: 2.8 GB RSS and the audit trail 60 s behind). Anything else spelled otherwise is parsed.
 */
export function isQueueBroadcast(text: string): boolean {
  return text.startsWith(QUEUE_BROADCAST) && !text.includes('"sid"')
}

/** An id as ComfyUI's `str()` would give it (strings, integers); null for anything else. */
export function str(v: JsonValue | undefined): string | null {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'bigint' ? String(v) : null
}

/** What ComfyUI broadcasts for a prompt without a client id (protocol §1.3). */
export function isNoClientBroadcast(type: string | null, d: Record<string, JsonValue>): boolean {
  switch (type) {
    case 'progress':
    case 'progress_state':
    case 'execution_interrupted':
      return true
    case 'execution_error':
      return d.exception_type === 'ExecutionBlocked'
    default:
      return false
  }
}

/** `GET /queue` → prompt ids by client id (`[number, prompt_id, prompt, extra_data, outputs]` items). */
export function parseQueue(body: Buffer): Map<string, Set<string>> | null {
  const r = parseJson(body)
  if (!r.ok || !isRecord(r.value)) return null
  const out = new Map<string, Set<string>>()
  for (const key of ['queue_running', 'queue_pending']) {
    const items = r.value[key]
    if (!Array.isArray(items)) continue
    for (const item of items) {
      if (!Array.isArray(item)) continue
      const promptId = str(item[1])
      const extra = item[3]
      const clientId = isRecord(extra) ? str(extra.client_id) : null
      if (promptId === null || clientId === null) continue
      let set = out.get(clientId)
      if (!set) out.set(clientId, (set = new Set()))
      set.add(promptId)
    }
  }
  return out
}

import { parseJson } from '../audit/json.js'
import { parseStrictJson } from './strict-json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import { applyEdits, objectMembers, removeMembers, skipSpace, type TextEdit } from './json-members.js'
import { SUBMISSION_SEAL_KEY } from '../capture/submission-seal.js'

/** A POST /prompt body made ready for ComfyUI. */
export interface PreparedPrompt {
  /** The prompt id ComfyUI will use: the client's, or one the gateway set. */
  readonly promptId: string
  /** Whether the client chose `promptId` itself (only those can collide with a recorded one). */
  readonly promptIdFromClient: boolean
  /** The client id the client gave (top-level `client_id`, else `extra_data.client_id`); null when none. */
  readonly clientId: string | null
  /** The id the prompt runs under upstream. */
  readonly upstreamClientId: string
  /** What goes to ComfyUI. Equal to the input when `parsed` is false. */
  readonly forwardedBody: Buffer
  /** False when the body is not a JSON object: it is forwarded unchanged and ComfyUI answers it. */
  readonly parsed: boolean
  /**
   * Why the body is not JSON by the strict rules (src/gateway/strict-json.ts): the gateway refuses it and
   * forwards nothing, since ComfyUI might read it differently (or not at all).
   */
  readonly refused?: string
  /** The client sent its own `extra_data.comfy_audit`; it was taken out (only the gateway may seal). */
  readonly clientSealRemoved?: boolean
}

/** Deepest nesting of a POST /prompt body the gateway accepts (Python's own recursion limit is about 1000). */
const MAX_PROMPT_DEPTH = 512

/** Options of {@link preparePrompt}. */
interface PreparePromptOptions {
  /** Maps the client's id (null: none given) to the upstream id. */
  readonly upstreamClientId: (clientId: string | null) => string
  /** Makes a prompt id (`crypto.randomUUID()` in production, the form ComfyUI itself uses). */
  readonly newPromptId: () => string
  /**
   * The JSON text of the gateway's sealed attribution (submission-seal.ts) for this prompt, set as
   * `extra_data.comfy_audit`; null or absent: none.
   */
  readonly seal?: (info: {
    promptId: string
    clientId: string | null
    prompt: JsonValue | undefined
  }) => string | null
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

// ComfyUI uses `str(value)`; for integers JS agrees with Python, for other types it does not, so those get a
// fresh id instead (a prompt id of `None` or `True` helps nobody).
function idFromValue(v: JsonValue | undefined): string | null {
  if (typeof v === 'string') return v
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v)
  return null
}

/**
 * Sets `prompt_id` (when the client gave none) and `client_id` (to the namespaced id, injected when absent)
 * in a POST /prompt body, changing only those values: every other byte (seeds beyond 2^53, NaN, key order)
 * reaches ComfyUI as the client wrote it. `extra_data.client_id` is rewritten too, since ComfyUI falls back
 * to it when there is no top-level one. A body that is not a JSON object passes unchanged.
 */
export function preparePrompt(body: Buffer, opts: PreparePromptOptions): PreparedPrompt {
  const parsed = parseStrictJson(body, MAX_PROMPT_DEPTH)
  if (!parsed.ok || !isObject(parsed.value)) {
    return {
      ...(parsed.ok ? {} : { refused: parsed.reason }),
      promptId: opts.newPromptId(),
      promptIdFromClient: false,
      clientId: null,
      upstreamClientId: opts.upstreamClientId(null),
      forwardedBody: body,
      parsed: false,
    }
  }
  const value = parsed.value
  const text = body.toString('utf8')
  const open = skipSpace(text, 0)
  const members = objectMembers(text, open)

  const extra = value['extra_data']
  const clientValue =
    'client_id' in value ? value['client_id'] : isObject(extra) ? extra['client_id'] : undefined
  const clientId = typeof clientValue === 'string' ? clientValue : idFromValue(clientValue ?? undefined)
  const upstreamClientId = opts.upstreamClientId(clientId)
  const quotedUpstream = JSON.stringify(upstreamClientId)

  const edits: TextEdit[] = []
  const inserted: string[] = []
  let hasTopClient = false
  let extraDataOpen: number | null = null
  let extraDataEmpty = false
  let clientSealRemoved = false
  for (const m of members) {
    if (m.key === 'client_id') {
      hasTopClient = true
      edits.push({ start: m.valueStart, end: m.valueEnd, text: quotedUpstream })
    } else if (m.key === 'extra_data' && text.charCodeAt(m.valueStart) === 0x7b) {
      const inner = objectMembers(text, m.valueStart)
      extraDataOpen = m.valueStart
      for (const x of inner) {
        if (x.key === 'client_id') edits.push({ start: x.valueStart, end: x.valueEnd, text: quotedUpstream })
      }
      // Only the gateway seals: a client's copy could claim someone else's submission.
      const sealEdits = removeMembers(inner, (x) => x.key === SUBMISSION_SEAL_KEY)
      clientSealRemoved = sealEdits.length > 0
      edits.push(...sealEdits)
      extraDataEmpty = inner.every((x) => x.key === SUBMISSION_SEAL_KEY)
    }
  }
  if (!hasTopClient) inserted.push(`"client_id": ${quotedUpstream}`)

  let promptId = idFromValue(value['prompt_id'])
  const promptIdFromClient = promptId !== null
  if (promptId === null) {
    promptId = opts.newPromptId()
    const quotedId = JSON.stringify(promptId)
    let present = false
    for (const m of members) {
      if (m.key === 'prompt_id') {
        present = true
        edits.push({ start: m.valueStart, end: m.valueEnd, text: quotedId })
      }
    }
    if (!present) inserted.push(`"prompt_id": ${quotedId}`)
  }
  const sealText = opts.seal?.({ promptId, clientId, prompt: value['prompt'] }) ?? null
  if (sealText !== null) {
    const sealMember = `${JSON.stringify(SUBMISSION_SEAL_KEY)}: ${sealText}`
    if (extraDataOpen !== null) {
      edits.push({
        start: extraDataOpen + 1,
        end: extraDataOpen + 1,
        text: sealMember + (extraDataEmpty ? '' : ', '),
      })
    } else if (!('extra_data' in value)) {
      inserted.push(`"extra_data": {${sealMember}}`)
    }
    // An extra_data that is not an object makes ComfyUI fail (it sets client_id in it): nothing runs to seal.
  }
  if (inserted.length > 0) {
    const glue = members.length > 0 ? ', ' : ''
    edits.push({ start: open + 1, end: open + 1, text: inserted.join(', ') + glue })
  }
  return {
    promptId,
    promptIdFromClient,
    clientId,
    upstreamClientId,
    forwardedBody: Buffer.from(applyEdits(text, edits), 'utf8'),
    parsed: true,
    ...(clientSealRemoved ? { clientSealRemoved } : {}),
  }
}

/**
 * Rewrites the top-level string member `key` of a small JSON object body through `map` (used for
 * `PATCH /internal/logs/subscribe {clientId}`); returns the body unchanged when there is nothing to rewrite.
 */
export function rewriteStringMember(body: Buffer, key: string, map: (value: string) => string): Buffer {
  const parsed = parseJson(body)
  if (!parsed.ok || !isObject(parsed.value) || typeof parsed.value[key] !== 'string') return body
  const text = body.toString('utf8')
  const edits: TextEdit[] = []
  for (const m of objectMembers(text, skipSpace(text, 0))) {
    if (m.key !== key || text.charCodeAt(m.valueStart) !== 0x22) continue
    const current = JSON.parse(text.slice(m.valueStart, m.valueEnd)) as unknown
    if (typeof current === 'string')
      edits.push({ start: m.valueStart, end: m.valueEnd, text: JSON.stringify(map(current)) })
  }
  return Buffer.from(applyEdits(text, edits), 'utf8')
}

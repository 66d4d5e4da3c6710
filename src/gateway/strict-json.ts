/**
 * The one parse of a request body the guard or capture must understand (issue 9 class 2), at least as strict
 * as Python's `json.loads` on the text aiohttp's `request.json()` gives it, so that the gateway never decides
 * on a reading ComfyUI does not share. Each rule, and why:
 *
 * - **UTF-8 BOM: refused.** aiohttp decodes the body as `utf-8` (not `utf-8-sig`) and `json.loads` then
 *   rejects the BOM; ComfyUI's `/interrupt` treats that as `{}`, a global interrupt.
 * - **Invalid UTF-8: refused** (aiohttp raises on decoding).
 * - **Duplicate keys: refused.** Python keeps the last; refusing means no reader can pick another one.
 * - **Nesting deeper than the limit: refused,** never read as empty or relayed unchecked.
 * - **Lone surrogate escapes (`"\ud800"`): refused.** Python accepts them, but they cannot be written as UTF-8,
 *   so no re-serialised or redacted copy could equal what ComfyUI reads.
 * - **NaN, Infinity, -Infinity: accepted,** as Python does (ComfyUI's own JSON holds them).
 */
import { parseJson, type ParseResult } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}

/** Finds duplicate keys and lone surrogates in text a JSON parser already accepted; null when none. */
function strictnessProblem(text: string): string | null {
  const keys: (Set<string> | null)[] = []
  // Whether the next string in the innermost object is a key.
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      let j = i + 1
      let escaped = false
      while (j < text.length) {
        const d = text.charCodeAt(j)
        if (d === 0x5c) {
          if (text.charCodeAt(j + 1) === 0x75) escaped = true
          j += 2
        } else if (d === 0x22) break
        else j++
      }
      const raw = text.slice(i, j + 1)
      const top = keys[keys.length - 1]
      if (escaped || (expectKey && top)) {
        const value = JSON.parse(raw) as string
        if (escaped && LONE_SURROGATE.test(value)) return 'lone surrogate in a string'
        if (expectKey && top) {
          if (top.has(value)) return `duplicate key ${JSON.stringify(value)}`
          top.add(value)
        }
      }
      expectKey = false
      i = j
    } else if (c === 0x7b) {
      keys.push(new Set())
      expectKey = true
    } else if (c === 0x5b) {
      keys.push(null)
      expectKey = false
    } else if (c === 0x7d || c === 0x5d) {
      keys.pop()
      expectKey = false
    } else if (c === 0x2c) {
      expectKey = keys[keys.length - 1] !== null && keys.length > 0
    } else if (!isSpace(c)) {
      expectKey = false
    }
  }
  return null
}

/**
 * Parses a request body by the rules above.
 *
 * @example
 * parseStrictJson(Buffer.from('{"a": 1, "a": 2}'), 64) // { ok: false, reason: 'duplicate key "a"' }
 */
export function parseStrictJson(body: Buffer, maxDepth: number): ParseResult<JsonValue> {
  if (body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) {
    return { ok: false, reason: 'Unexpected UTF-8 BOM: the body must be plain UTF-8 JSON' }
  }
  const parsed = parseJson(body, { maxDepth })
  if (!parsed.ok) return parsed
  const problem = strictnessProblem(body.toString('utf8'))
  return problem === null ? parsed : { ok: false, reason: problem }
}

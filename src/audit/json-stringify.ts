/**
 * The writers of json.ts (see its module comment): Python-style, strict and tagged JSON, and the RFC 8785
 * canonical form the ledger hashes; plus the tag decoding the tagged reader shares with them.
 */
import { createHash } from 'node:crypto'
import { hasSpellings, spellingOf } from './json-spellings.js'
import type { JsonValue } from './types.js'

export const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
export const MIN_SAFE = -MAX_SAFE

/** Options of {@link stringifyJson}. */
interface StringifyJsonOptions {
  /** Write NaN/Infinity/-Infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (valid RFC 8259 JSON). */
  readonly strict?: boolean
  /**
   * Standard JSON that reads back exactly (the stored and exported record format): NaN/Infinity/-Infinity as
   * `{"$float": "NaN"}` (`"Infinity"`, `"-Infinity"`), and an object whose only key is `$float` or `$escape`
   * wrapped as `{"$escape": {...}}` so that it is not taken for one. Read back with `parseJson(text, { tagged: true })`.
   * Takes precedence over `strict`.
   */
  readonly tagged?: boolean
  /** Use `", "` and `": "` separators like Python's `json.dumps` defaults. */
  readonly python?: boolean
  /** Escape every non-ASCII UTF-16 unit as `\uXXXX` like Python's `ensure_ascii=True`. */
  readonly ascii?: boolean
}

const FLOAT_TAG = '$float'
const ESCAPE_TAG = '$escape'

/** Whether `{ [key]: … }` alone would read as a tag, so that the tagged writer must escape it. */
function looksLikeTag(value: { [key: string]: JsonValue }): boolean {
  let count = 0
  let tagKey = false
  for (const key in value) {
    if (++count > 1) return false
    tagKey = key === FLOAT_TAG || key === ESCAPE_TAG
  }
  return tagKey
}

/** Replaces, in place, the tags the tagged writer produced by the values they stand for. */
export function untag(value: JsonValue): JsonValue {
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = untag(value[i] as JsonValue)
    return value
  }
  const keys = Object.keys(value)
  if (keys.length === 1) {
    const inner = value[keys[0] as string] as JsonValue
    if (keys[0] === FLOAT_TAG) {
      if (inner === 'NaN') return Number.NaN
      if (inner === 'Infinity') return Number.POSITIVE_INFINITY
      if (inner === '-Infinity') return Number.NEGATIVE_INFINITY
    } else if (
      keys[0] === ESCAPE_TAG &&
      typeof inner === 'object' &&
      inner !== null &&
      !Array.isArray(inner)
    ) {
      // The escaped object is data: its members are decoded, the object itself is not a tag.
      for (const key of Object.keys(inner)) inner[key] = untag(inner[key] as JsonValue)
      return inner
    }
  }
  for (const key of keys) value[key] = untag(value[key] as JsonValue)
  return value
}

/**
 * True when JSON.stringify writes `value` exactly as {@link stringifyJson} does (compact, non-ASCII kept):
 * no bigint, no NaN/Infinity, no -0, no integral double beyond 2^53, no remembered number spelling, no object
 * the tagged writer must escape, and plain data only.
 */
function nativeSafe(value: JsonValue, depth: number, tagged: boolean): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0) && Math.abs(value) <= Number.MAX_SAFE_INTEGER
        ? true
        : Number.isFinite(value) && !Number.isInteger(value)
    case 'object': {
      if (value === null) return true
      if (depth > 256 || hasSpellings(value)) return false
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++)
          if (!nativeSafe(value[i] as JsonValue, depth + 1, tagged)) return false
        return true
      }
      if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null)
        return false
      if (tagged && looksLikeTag(value)) return false
      for (const key in value) {
        if (!Object.prototype.hasOwnProperty.call(value, key)) return false
        if (!nativeSafe(value[key] as JsonValue, depth + 1, tagged)) return false
      }
      return true
    }
    default:
      return false
  }
}

// JSON.stringify and Python's json escape the same ASCII (\" \\ \b \f \n \r \t, other controls as \u00xx);
// ensure_ascii additionally escapes DEL and everything above it, one UTF-16 unit at a time.
const NON_ASCII = /[\u007f-\uffff]/g

function escapeAscii(unit: string): string {
  return '\\u' + unit.charCodeAt(0).toString(16).padStart(4, '0')
}

function quote(s: string, ascii: boolean): string {
  const quoted = JSON.stringify(s)
  return ascii ? quoted.replace(NON_ASCII, escapeAscii) : quoted
}

export function numberToken(n: number, strict: boolean): string {
  if (Number.isFinite(n)) {
    const text = String(n)
    // An integral double beyond 2^53 prints as bare digits, which reads back as a bigint (and in Python as an
    // int). The ".0" keeps it a float, as Python's json.dumps writes floats.
    return Number.isInteger(n) && Math.abs(n) > Number.MAX_SAFE_INTEGER && !text.includes('e')
      ? text + '.0'
      : text
  }
  const word = Number.isNaN(n) ? 'NaN' : n > 0 ? 'Infinity' : '-Infinity'
  return strict ? `"${word}"` : word
}

/**
 * Writes a {@link JsonValue} so that Python's `json.loads` (and {@link parseJson}) reads back the same value:
 * bigints as plain digits, NaN/Infinity as bare tokens unless `strict`. Compact separators by default.
 * Numbers use ECMAScript formatting (`1e-7`, not Python's `1e-07`; both parse to the same double), except that
 * an integral double beyond 2^53 gets a `.0` so that it stays a double rather than reading back as a bigint.
 */
export function stringifyJson(value: JsonValue, opts?: StringifyJsonOptions): string {
  // Fast path: plain data is written by the engine's serializer, byte for byte what the writer below produces.
  if (!opts?.python && !opts?.ascii && nativeSafe(value, 0, opts?.tagged ?? false))
    return JSON.stringify(value)
  const tagged = opts?.tagged ?? false
  const strict = opts?.strict ?? false
  const ascii = opts?.ascii ?? false
  const comma = opts?.python ? ', ' : ','
  const colon = opts?.python ? ': ' : ':'
  const member = (container: object, key: string, v: JsonValue): string =>
    (typeof v === 'number' && spellingOf(container, key, v)) || write(v)
  const write = (v: JsonValue): string => {
    switch (typeof v) {
      case 'string':
        return quote(v, ascii)
      case 'number':
        if (tagged && !Number.isFinite(v))
          return `{${quote(FLOAT_TAG, false)}${colon}${numberToken(v, true)}}`
        return numberToken(v, strict)
      case 'bigint':
        return v.toString()
      case 'boolean':
        return v ? 'true' : 'false'
      case 'object': {
        if (v === null) return 'null'
        if (Array.isArray(v)) return '[' + v.map((x, i) => member(v, String(i), x)).join(comma) + ']'
        const parts: string[] = []
        for (const key of Object.keys(v))
          parts.push(quote(key, ascii) + colon + member(v, key, v[key] as JsonValue))
        const text = '{' + parts.join(comma) + '}'
        return tagged && looksLikeTag(v) ? `{${quote(ESCAPE_TAG, false)}${colon}${text}}` : text
      }
      default:
        throw new TypeError(`stringifyJson: not a JSON value: ${typeof v}`)
    }
  }
  return write(value)
}

/**
 * RFC 8785 (JSON Canonicalization Scheme) form, for hashing: no whitespace, object keys sorted by UTF-16
 * code units, numbers in ECMAScript `Number.prototype.toString` form (https://www.rfc-editor.org/rfc/rfc8785).
 * Values JCS cannot express become strings: integers beyond ±2^53-1 (bigint) as their decimal digits, and
 * NaN/Infinity/-Infinity as `"NaN"`, `"Infinity"`, `"-Infinity"`. A bigint within the safe range is written
 * as the number it equals, so the form does not depend on how the value was held.
 */
export function canonicalJson(value: JsonValue): string {
  switch (typeof value) {
    case 'string':
      return canonicalString(value)
    case 'number':
      return Number.isFinite(value) ? String(value) : numberToken(value, true)
    case 'bigint':
      return value > MAX_SAFE || value < MIN_SAFE ? `"${value.toString()}"` : value.toString()
    case 'boolean':
      return value ? 'true' : 'false'
    case 'object': {
      if (value === null) return 'null'
      // Written by concatenation: `verify` writes this form for every event, and map/join cost a third more.
      if (Array.isArray(value)) {
        let out = '['
        for (let i = 0; i < value.length; i++)
          out += (i > 0 ? ',' : '') + canonicalJson(value[i] as JsonValue)
        return out + ']'
      }
      // Array.prototype.sort without a comparator orders strings by UTF-16 code units, as RFC 8785 §3.2.3 asks.
      const keys = Object.keys(value)
      if (keys.length > 1) keys.sort()
      let out = '{'
      for (let k = 0; k < keys.length; k++) {
        const key = keys[k] as string
        out += (k > 0 ? ',' : '') + canonicalKey(key) + ':' + canonicalJson(value[key] as JsonValue)
      }
      return out + '}'
    }
    default:
      throw new TypeError(`canonicalJson: not a JSON value: ${typeof value}`)
  }
}

/** Text JSON.stringify writes unchanged between quotes: no quote, backslash, control or surrogate unit. */
// eslint-disable-next-line no-control-regex
const PLAIN_STRING = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/

function canonicalString(s: string): string {
  return PLAIN_STRING.test(s) ? '"' + s + '"' : JSON.stringify(s)
}

/** Quoted object keys: the same few hundred names recur in every event. Bounded, so hostile keys cannot grow it. */
const quotedKeys = new Map<string, string>()

function canonicalKey(key: string): string {
  let quoted = quotedKeys.get(key)
  if (quoted === undefined) {
    quoted = canonicalString(key)
    if (quotedKeys.size < 4096 && key.length <= 64) quotedKeys.set(key, quoted)
  }
  return quoted
}

/** Lower-case hex SHA-256 of a string (as UTF-8) or bytes. */
export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

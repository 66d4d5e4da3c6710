/**
 * Lossless, tolerant JSON for ComfyUI data.
 *
 * ComfyUI is Python: its `json.dumps` writes `NaN`, `Infinity` and `-Infinity` as bare tokens, and seeds
 * reach 2^64-1, which `JSON.parse` silently rounds. This module reads and writes JSON the way Python does,
 * keeps integers beyond `Number.MAX_SAFE_INTEGER` as `bigint`, and produces the RFC 8785 canonical form the
 * ledger hashes.
 *
 * Number spelling: Python keeps `1.0` a float and writes it back as `1.0`; a JS number cannot tell `1.0` from
 * `1`. The parser remembers, per object or array, the token of every number whose text differs from the one
 * JS would write (`1.0`, `1.00`, `1e5`, `-0.0`), in a side table keyed by the container, and the writers use
 * it as long as the value is unchanged. Values stay plain numbers for every reader; copies made by
 * {@link copyJson} keep the spellings, other copies fall back to JS's form. The canonical form the ledger
 * hashes is by value (RFC 8785), so spelling never changes a leaf hash.
 *
 * Known limit: the result is a plain JS object, so integer-like keys (`"3"`, `"10"`) enumerate in ascending
 * numeric order before other keys, not in document order (JS object semantics). `canonicalJson` sorts keys
 * anyway, so hashes do not depend on it.
 */
import { setSpelling } from './json-spellings.js'
import { MAX_SAFE, MIN_SAFE, numberToken, untag } from './json-stringify.js'
import type { JsonValue } from './types.js'

// The writers and the spelling table have files of their own; readers import all of it from here.
export { copyJson, keepSpellings } from './json-spellings.js'
export { canonicalJson, sha256Hex, stringifyJson } from './json-stringify.js'

/** Outcome of a parser: the value, or why and where (UTF-16 offset into the text) it failed. */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string; position?: number }

/** Options of {@link parseJson}. */
interface ParseJsonOptions {
  /** Deepest nesting of arrays and objects accepted (default 512); deeper input is refused, not crashed on. */
  readonly maxDepth?: number
  /** Decode the tags that `stringifyJson(value, { tagged: true })` writes (bare NaN/Infinity are read too). */
  readonly tagged?: boolean
}

const DEFAULT_MAX_DEPTH = 512

const utf8 = new TextDecoder('utf-8', { fatal: true })

class JsonSyntaxError extends Error {
  readonly position: number
  constructor(reason: string, position: number) {
    super(reason)
    this.position = position
  }
}

// Character codes used by the scanner.
const C_TAB = 0x09
const C_LF = 0x0a
const C_CR = 0x0d
const C_SPACE = 0x20
const C_QUOTE = 0x22
const C_PLUS = 0x2b
const C_COMMA = 0x2c
const C_MINUS = 0x2d
const C_DOT = 0x2e
const C_0 = 0x30
const C_9 = 0x39
const C_COLON = 0x3a
const C_LBRACKET = 0x5b
const C_BACKSLASH = 0x5c
const C_RBRACKET = 0x5d
const C_LBRACE = 0x7b
const C_RBRACE = 0x7d

/**
 * Recursive-descent parser over a JS string. Recursion is bounded by `maxDepth`, so hostile nesting
 * yields an error value instead of a stack overflow.
 */
class Parser {
  readonly #s: string
  readonly #maxDepth: number
  #i = 0
  /** Token of the number just read, when JS would spell its value otherwise; the container takes it. */
  #spelling: string | undefined

  constructor(text: string, maxDepth: number) {
    this.#s = text
    this.#maxDepth = maxDepth
  }

  parseDocument(): JsonValue {
    this.#skipWs()
    const value = this.#value(0)
    this.#skipWs()
    if (this.#i < this.#s.length) throw new JsonSyntaxError('Extra data after the JSON value', this.#i)
    return value
  }

  #skipWs(): void {
    const s = this.#s
    let i = this.#i
    // Only the four RFC 8259 whitespace characters, as Python accepts.
    for (;;) {
      const c = s.charCodeAt(i)
      if (c === C_SPACE || c === C_LF || c === C_CR || c === C_TAB) i++
      else break
    }
    this.#i = i
  }

  #value(depth: number): JsonValue {
    const s = this.#s
    const i = this.#i
    const c = s.charCodeAt(i)
    switch (c) {
      case C_LBRACE:
        return this.#object(depth + 1)
      case C_LBRACKET:
        return this.#array(depth + 1)
      case C_QUOTE:
        return this.#string()
      case 0x74: // t
        return this.#literal('true', true)
      case 0x66: // f
        return this.#literal('false', false)
      case 0x6e: // n
        return this.#literal('null', null)
      case 0x4e: // N
        return this.#literal('NaN', Number.NaN)
      case 0x49: // I
        return this.#literal('Infinity', Number.POSITIVE_INFINITY)
      case C_MINUS:
        if (s.charCodeAt(i + 1) === 0x49) return this.#literal('-Infinity', Number.NEGATIVE_INFINITY)
        return this.#number()
      default:
        if (c >= C_0 && c <= C_9) return this.#number()
        throw new JsonSyntaxError(
          Number.isNaN(c) ? 'Unexpected end of input: expecting value' : 'Expecting value',
          i,
        )
    }
  }

  #literal<T extends JsonValue>(word: string, value: T): T {
    if (!this.#s.startsWith(word, this.#i)) throw new JsonSyntaxError('Expecting value', this.#i)
    this.#i += word.length
    return value
  }

  #number(): number | bigint {
    const s = this.#s
    const start = this.#i
    let i = start
    if (s.charCodeAt(i) === C_MINUS) i++
    let c = s.charCodeAt(i)
    if (c === C_0) {
      i++
    } else if (c >= 0x31 && c <= C_9) {
      do i++
      while ((c = s.charCodeAt(i)) >= C_0 && c <= C_9)
    } else {
      throw new JsonSyntaxError('Expecting digits after "-"', i)
    }
    let integer = true
    if (s.charCodeAt(i) === C_DOT) {
      integer = false
      i++
      c = s.charCodeAt(i)
      if (!(c >= C_0 && c <= C_9)) throw new JsonSyntaxError('Expecting digits after "."', i)
      do i++
      while ((c = s.charCodeAt(i)) >= C_0 && c <= C_9)
    }
    c = s.charCodeAt(i)
    if (c === 0x65 || c === 0x45) {
      integer = false
      i++
      c = s.charCodeAt(i)
      if (c === C_PLUS || c === C_MINUS) i++
      c = s.charCodeAt(i)
      if (!(c >= C_0 && c <= C_9)) throw new JsonSyntaxError('Expecting exponent digits', i)
      do i++
      while ((c = s.charCodeAt(i)) >= C_0 && c <= C_9)
    }
    this.#i = i
    const text = s.slice(start, i)
    // 15 digits (plus sign) always fit exactly in a double; longer integers may need a bigint.
    if (!integer || i - start <= 15) {
      const value = Number(text)
      if (numberToken(value, false) !== text) this.#spelling = text
      return value
    }
    const big = BigInt(text)
    return big > MAX_SAFE || big < MIN_SAFE ? big : Number(big)
  }

  #string(): string {
    const s = this.#s
    let i = this.#i + 1
    const start = i
    // Fast path: no escapes; most keys and values in ComfyUI payloads are like this.
    for (;;) {
      const c = s.charCodeAt(i)
      if (c === C_QUOTE) {
        this.#i = i + 1
        return s.slice(start, i)
      }
      if (c === C_BACKSLASH) break
      // Negated so that NaN (past the end of the text) also stops the scan.
      if (!(c >= 0x20)) throw this.#badStringChar(c, i)
      i++
    }
    let out = s.slice(start, i)
    let chunk = i
    for (;;) {
      const c = s.charCodeAt(i)
      if (c === C_QUOTE) {
        this.#i = i + 1
        return out + s.slice(chunk, i)
      }
      if (c === C_BACKSLASH) {
        out += s.slice(chunk, i)
        const e = s.charCodeAt(i + 1)
        switch (e) {
          case C_QUOTE:
            out += '"'
            break
          case C_BACKSLASH:
            out += '\\'
            break
          case 0x2f:
            out += '/'
            break
          case 0x62:
            out += '\b'
            break
          case 0x66:
            out += '\f'
            break
          case 0x6e:
            out += '\n'
            break
          case 0x72:
            out += '\r'
            break
          case 0x74:
            out += '\t'
            break
          case 0x75: {
            // Each \uXXXX is one UTF-16 unit; a surrogate pair written as two escapes joins by itself,
            // and a lone surrogate is kept, as Python does.
            const unit = hex4(s, i + 2)
            if (unit < 0) throw new JsonSyntaxError('Invalid \\uXXXX escape', i)
            out += String.fromCharCode(unit)
            i += 4
            break
          }
          default:
            throw new JsonSyntaxError(Number.isNaN(e) ? 'Unterminated string' : 'Invalid escape', i)
        }
        i += 2
        chunk = i
        continue
      }
      // Negated so that NaN (past the end of the text) also stops the scan.
      if (!(c >= 0x20)) throw this.#badStringChar(c, i)
      i++
    }
  }

  #badStringChar(c: number, i: number): JsonSyntaxError {
    return new JsonSyntaxError(
      Number.isNaN(c) ? 'Unterminated string' : 'Invalid control character in string',
      i,
    )
  }

  #array(depth: number): JsonValue[] {
    if (depth > this.#maxDepth) throw new JsonSyntaxError(`Nesting deeper than ${this.#maxDepth}`, this.#i)
    const s = this.#s
    this.#i++
    const out: JsonValue[] = []
    this.#skipWs()
    if (s.charCodeAt(this.#i) === C_RBRACKET) {
      this.#i++
      return out
    }
    for (;;) {
      out.push(this.#value(depth))
      if (this.#spelling !== undefined) {
        setSpelling(out, String(out.length - 1), this.#spelling)
        this.#spelling = undefined
      }
      this.#skipWs()
      const c = s.charCodeAt(this.#i)
      if (c === C_COMMA) {
        this.#i++
        this.#skipWs()
      } else if (c === C_RBRACKET) {
        this.#i++
        return out
      } else {
        throw new JsonSyntaxError("Expecting ',' delimiter or ']'", this.#i)
      }
    }
  }

  #object(depth: number): { [key: string]: JsonValue } {
    if (depth > this.#maxDepth) throw new JsonSyntaxError(`Nesting deeper than ${this.#maxDepth}`, this.#i)
    const s = this.#s
    this.#i++
    const out: { [key: string]: JsonValue } = {}
    this.#skipWs()
    if (s.charCodeAt(this.#i) === C_RBRACE) {
      this.#i++
      return out
    }
    for (;;) {
      if (s.charCodeAt(this.#i) !== C_QUOTE) {
        throw new JsonSyntaxError('Expecting property name enclosed in double quotes', this.#i)
      }
      const key = this.#string()
      this.#skipWs()
      if (s.charCodeAt(this.#i) !== C_COLON) throw new JsonSyntaxError("Expecting ':' delimiter", this.#i)
      this.#i++
      this.#skipWs()
      const value = this.#value(depth)
      if (this.#spelling !== undefined) {
        setSpelling(out, key, this.#spelling)
        this.#spelling = undefined
      }
      if (key === '__proto__') {
        // Assignment would call the prototype setter; define an own data property like JSON.parse does.
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
      } else {
        // Duplicate keys: the last one wins, as in Python and JSON.parse.
        out[key] = value
      }
      this.#skipWs()
      const c = s.charCodeAt(this.#i)
      if (c === C_COMMA) {
        this.#i++
        this.#skipWs()
      } else if (c === C_RBRACE) {
        this.#i++
        return out
      } else {
        throw new JsonSyntaxError("Expecting ',' delimiter or '}'", this.#i)
      }
    }
  }
}

function hex4(s: string, at: number): number {
  let v = 0
  for (let k = 0; k < 4; k++) {
    const c = s.charCodeAt(at + k)
    let d: number
    if (c >= C_0 && c <= C_9) d = c - C_0
    else if (c >= 0x61 && c <= 0x66) d = c - 0x57
    else if (c >= 0x41 && c <= 0x46) d = c - 0x37
    else return -1
    v = (v << 4) | d
  }
  return v
}

/**
 * Parses JSON as Python's `json.loads` accepts it: bare `NaN`/`Infinity`/`-Infinity`, integers of any size
 * (a `bigint` when beyond ±2^53-1), lone surrogate escapes, duplicate keys (the last wins). Numbers with a
 * fraction or exponent are JS numbers. A `Buffer` must be UTF-8 (a leading BOM is skipped).
 *
 * @example
 * parseJson('{"seed": 18446744073709551615}') // { ok: true, value: { seed: 18446744073709551615n } }
 */
export function parseJson(text: string | Buffer, opts?: ParseJsonOptions): ParseResult<JsonValue> {
  let source: string
  if (typeof text === 'string') {
    source = text
  } else {
    try {
      source = utf8.decode(text)
    } catch {
      return { ok: false, reason: 'Invalid UTF-8' }
    }
  }
  // Fast path: where no token can lose information (no run of 16+ digits that might be an unsafe integer, no
  // NaN/Infinity), the engine's parser gives the same value as ours, several times faster. It keeps the last
  // of duplicate keys and defines `__proto__` as an own property, as ours does. Anything else (deep nesting,
  // syntax errors, a BOM) falls through to the full parser, which also words the error.
  const done = (value: JsonValue): ParseResult<JsonValue> => ({
    ok: true,
    value: opts?.tagged && source.includes('"$') ? untag(value) : value,
  })
  if (!MAY_LOSE_INFORMATION.test(source) && nestingWithin(source, opts?.maxDepth ?? DEFAULT_MAX_DEPTH)) {
    try {
      return done(JSON.parse(source) as JsonValue)
    } catch {
      // fall through
    }
  }
  try {
    return done(new Parser(source, opts?.maxDepth ?? DEFAULT_MAX_DEPTH).parseDocument())
  } catch (error) {
    if (error instanceof JsonSyntaxError)
      return { ok: false, reason: error.message, position: error.position }
    if (error instanceof RangeError) return { ok: false, reason: `Too deeply nested: ${error.message}` }
    throw error
  }
}

/** Whether brackets outside strings nest at most `max` deep: the limit holds on the fast path too. */
function nestingWithin(text: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return false
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return true
}

/**
 * Tokens JSON.parse would read differently from Python: long digit runs (big integers), NaN/Infinity, and
 * numbers JS would spell otherwise (`1.0`, `2.50`, `1e5`, `-0`). The number patterns look for a token after
 * `:`, `,` or `[`, so hex digits inside ids (`"3e4f…"`) keep the fast path; text inside strings that looks like
 * one only costs the slower parser.
 */
const MAY_LOSE_INFORMATION =
  /\d{16}|NaN|Infinity|[:,[]\s*-?\d+(?:\.\d*0(?!\d)|(?:\.\d+)?[eE])|[:,[]\s*-0(?![.\deE\d])/

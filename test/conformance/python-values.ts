/**
 * Just enough of Python's value semantics to port record.py and compare_traces.py without changing what
 * they decide or print: truthiness, `dict.get`, `==`, `<` and `sorted()`, `str()` and `repr()`.
 *
 * Python values are modelled as JSON values plus tuples. A tuple is a plain JS array; a JSON list is wrapped
 * (`pyList`) so that `('a',) != ['a']` and `repr` prints the right brackets, as in Python.
 *
 * Known gaps, all from JSON.parse: a float with an integral value (`1.0`) reads as the int `1`, integers
 * beyond 2^53 lose digits, and NaN/Infinity (which Python's json accepts) are a parse error.
 */

/** A JSON value as JSON.parse returns it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
/** A JSON object. */
export type JsonObject = { [key: string]: Json }

const LIST = Symbol('python list')

/** A Python list (a JSON array inside a Python value). */
export interface PyList {
  readonly [LIST]: readonly Py[]
}
/** A Python dict with string keys. */
export interface PyDict {
  readonly [key: string]: Py
}
/** A Python value: `null` is None, an array is a tuple. */
export type Py = null | boolean | number | string | readonly Py[] | PyList | PyDict

/** Python's TypeError/AttributeError/KeyError: the ported code fails where the original raises. */
export class PyError extends Error {
  override readonly name = 'PyError'
}

/** Whether `v` is a JSON object (a Python dict). */
export function isDict(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isPyList(v: Py): v is PyList {
  return typeof v === 'object' && v !== null && LIST in v
}

function isPyDict(v: Py): v is PyDict {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(LIST in v)
}

/** Turns a JSON value into a Python value (arrays become lists, not tuples). */
export function py(v: Json): Py {
  if (Array.isArray(v)) return { [LIST]: v.map(py) }
  if (isDict(v)) {
    const out: Record<string, Py> = {}
    for (const [k, x] of Object.entries(v)) out[k] = py(x)
    return out
  }
  return v
}

/** Python truthiness of a JSON value. */
export function truthy(v: Json | undefined): boolean {
  if (v === undefined || v === null) return false
  if (Array.isArray(v)) return v.length > 0
  if (typeof v === 'object') return Object.keys(v).length > 0
  if (typeof v === 'string') return v.length > 0
  if (typeof v === 'number') return v !== 0
  return v
}

/** Python `a or b`. */
export function or(v: Json | undefined, fallback: Json): Json {
  return truthy(v) ? (v as Json) : fallback
}

/** Python `d.get(key, fallback)`: only a dict has `.get` (AttributeError otherwise). */
export function get(d: Json | undefined, key: string, fallback: Json = null): Json {
  if (!isDict(d)) throw new PyError(`'${pyTypeName(d)}' object has no attribute 'get'`)
  return Object.hasOwn(d, key) ? (d[key] as Json) : fallback
}

/** Python `d[key]` on a dict (KeyError when missing). */
export function item(d: Json | undefined, key: string): Json {
  if (!isDict(d)) throw new PyError(`'${pyTypeName(d)}' object is not subscriptable by '${key}'`)
  if (!Object.hasOwn(d, key)) throw new PyError(`KeyError: ${repr(key)}`)
  return d[key] as Json
}

/** Python `type(v).__name__` of a JSON value. */
export function pyTypeName(v: Json | undefined): string {
  if (v === undefined || v === null) return 'NoneType'
  if (typeof v === 'boolean') return 'bool'
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float'
  if (typeof v === 'string') return 'str'
  return Array.isArray(v) ? 'list' : 'dict'
}

/** Python `iter(v)` over a JSON value: list items, dict keys, string characters (TypeError otherwise). */
export function iterate(v: Json): Json[] {
  if (Array.isArray(v)) return v
  if (isDict(v)) return Object.keys(v)
  if (typeof v === 'string') return Array.from(v)
  throw new PyError(`'${pyTypeName(v)}' object is not iterable`)
}

/** Python `a == b`. */
export function eq(a: Py, b: Py): boolean {
  if (a === null || b === null) return a === b
  if (
    (typeof a === 'number' || typeof a === 'boolean') &&
    (typeof b === 'number' || typeof b === 'boolean')
  ) {
    return Number(a) === Number(b)
  }
  if (typeof a === 'string' || typeof b === 'string') return a === b
  if (typeof a !== 'object' || typeof b !== 'object') return false
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && seqEq(a as readonly Py[], b as readonly Py[])
  }
  const la = isPyList(a)
  const lb = isPyList(b)
  if (la || lb) return la && lb && seqEq(a[LIST], b[LIST])
  const da = a as PyDict
  const db = b as PyDict
  const ka = Object.keys(da)
  return ka.length === Object.keys(db).length && ka.every((k) => Object.hasOwn(db, k) && eq(da[k]!, db[k]!))
}

function seqEq(a: readonly Py[], b: readonly Py[]): boolean {
  return a.length === b.length && a.every((x, i) => eq(x, b[i]!))
}

/** Python `a < b` (TypeError where Python has no ordering). */
export function lt(a: Py, b: Py): boolean {
  if (
    (typeof a === 'number' || typeof a === 'boolean') &&
    (typeof b === 'number' || typeof b === 'boolean')
  ) {
    return Number(a) < Number(b)
  }
  if (typeof a === 'string' && typeof b === 'string') return compareCodePoints(a, b) < 0
  if (Array.isArray(a) && Array.isArray(b)) return seqLt(a as readonly Py[], b as readonly Py[])
  if (
    a !== null &&
    b !== null &&
    typeof a === 'object' &&
    typeof b === 'object' &&
    isPyList(a) &&
    isPyList(b)
  ) {
    return seqLt(a[LIST], b[LIST])
  }
  throw new PyError(`'<' not supported between instances of '${typeOf(a)}' and '${typeOf(b)}'`)
}

function seqLt(a: readonly Py[], b: readonly Py[]): boolean {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (!eq(a[i]!, b[i]!)) return lt(a[i]!, b[i]!)
  }
  return a.length < b.length
}

function typeOf(v: Py): string {
  if (Array.isArray(v)) return 'tuple'
  if (v !== null && typeof v === 'object') return isPyList(v) ? 'list' : 'dict'
  return pyTypeName(v)
}

/** Compares strings by code point, as Python does (JS `<` compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    const ca = a.codePointAt(i)!
    const cb = b.codePointAt(j)!
    if (ca !== cb) return ca < cb ? -1 : 1
    i += ca > 0xffff ? 2 : 1
    j += cb > 0xffff ? 2 : 1
  }
  return i < a.length ? 1 : j < b.length ? -1 : 0
}

/** Python `sorted(values)`: stable, ordered by `<` (TypeError for values Python cannot order). */
export function sorted<T extends Py>(values: readonly T[]): T[] {
  return [...values].sort((a, b) => (lt(a, b) ? -1 : lt(b, a) ? 1 : 0))
}

/** Python `str(v)`. */
export function str(v: Py): string {
  return typeof v === 'string' ? v : repr(v)
}

/** Python `repr(v)`. */
export function repr(v: Py): string {
  if (v === null) return 'None'
  if (typeof v === 'boolean') return v ? 'True' : 'False'
  if (typeof v === 'number') return reprNumber(v)
  if (typeof v === 'string') return reprString(v)
  if (Array.isArray(v)) {
    const items = (v as readonly Py[]).map(repr)
    return items.length === 1 ? `(${items[0]},)` : `(${items.join(', ')})`
  }
  if (isPyList(v)) return `[${v[LIST].map(repr).join(', ')}]`
  if (isPyDict(v)) {
    return `{${Object.entries(v)
      .map(([k, x]) => `${reprString(k)}: ${repr(x)}`)
      .join(', ')}}`
  }
  throw new PyError('unreachable Python value')
}

function reprNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 2 ** 53) return String(n)
  return reprFloatDigits(n)
}

function reprFloatDigits(n: number): string {
  // Python's float repr: shortest round-trip digits, positional for exponents in [-4, 16).
  const [mantissa = '0', expText = '0'] = n.toExponential().split('e')
  const exp = Number(expText)
  const neg = mantissa.startsWith('-')
  const digits = mantissa.replace('-', '').replace('.', '')
  let body: string
  if (exp >= -4 && exp < 16) {
    if (exp < 0) body = `0.${'0'.repeat(-exp - 1)}${digits}`
    else if (digits.length > exp + 1) body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`
    else body = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`
  } else {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits
    body = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  }
  return neg ? `-${body}` : body
}

function reprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'"
  let out = quote
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === '\\') out += '\\\\'
    else if (ch === quote) out += `\\${quote}`
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    // Python escapes non-printable characters; this covers the C0/C1 controls, NBSP, soft hyphen and
    // unpaired surrogates, which is what a trace could plausibly hold.
    else if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c === 0xad)
      out += `\\x${c.toString(16).padStart(2, '0')}`
    else if (c >= 0xd800 && c <= 0xdfff) out += `\\u${c.toString(16).padStart(4, '0')}`
    else out += ch
  }
  return out + quote
}

const FLOAT = Symbol('python float')

/** A Python float written as a JSON literal: `float(1)` goes on the wire as `1.0`, as json.dumps writes it. */
export interface PyFloat {
  readonly [FLOAT]: number
}

/** A Python float of value `n`. */
export function float(n: number): PyFloat {
  return Object.freeze({ [FLOAT]: n })
}

/** A value record.py sends: JSON plus floats that keep their `.0`. */
export type Wire = null | boolean | number | string | PyFloat | Wire[] | WireObject
/** A JSON object record.py sends. */
export type WireObject = { [key: string]: Wire }

/** Whether `v` is a Python float marker. */
export function isFloat(v: Wire | undefined): v is PyFloat {
  return typeof v === 'object' && v !== null && FLOAT in v
}

/** Whether `v` is a JSON object (not a list, not a float). */
export function isWireObject(v: Wire | undefined): v is WireObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(FLOAT in v)
}

/** The JSON value a parser would read back (floats become plain numbers). */
export function toJson(v: Wire): Json {
  if (isFloat(v)) return v[FLOAT]
  if (Array.isArray(v)) return v.map(toJson)
  if (isWireObject(v)) {
    const out: JsonObject = {}
    for (const [k, x] of Object.entries(v)) out[k] = toJson(x)
    return out
  }
  return v as Json
}

/** Python `json.dumps(v)` with its defaults: `", "` and `": "` separators, ASCII only. */
export function dumps(v: Wire): string {
  if (v === null) return 'null'
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : reprNumber(v)
  if (typeof v === 'string') return dumpString(v)
  if (isFloat(v)) return reprFloat(v[FLOAT])
  if (Array.isArray(v)) return `[${v.map(dumps).join(', ')}]`
  return `{${Object.entries(v)
    .map(([k, x]) => `${dumpString(k)}: ${dumps(x)}`)
    .join(', ')}}`
}

/** Python `repr(float(n))`. */
export function reprFloat(n: number): string {
  if (Number.isNaN(n)) return 'NaN'
  if (!Number.isFinite(n)) return n > 0 ? 'Infinity' : '-Infinity'
  return Number.isInteger(n) && Math.abs(n) < 1e16 ? `${n}.0` : reprFloatDigits(n)
}

function dumpString(s: string): string {
  // JSON.stringify escapes quotes, backslashes and controls as json.dumps does; ensure_ascii does the rest.
  return JSON.stringify(s).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

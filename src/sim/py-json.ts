/**
 * JSON the way Python's `json` module reads and writes it. ComfyUI is Python: `json.loads` keeps the
 * difference between `1` and `1.0`, accepts `NaN`/`Infinity`, and `json.dumps` writes `", "` / `": "`
 * separators with non-ASCII escaped. The stand-in must reproduce that byte for byte (PNG text chunks,
 * HTTP bodies), so floats parsed from a client survive as {@link PyFloat}.
 */

/** A Python `float`: kept apart from `int` so that `1.0` is written back as `1.0`. */
export class PyFloat {
  constructor(readonly value: number) {}
  /** Plain `JSON.stringify` sees the number. */
  toJSON(): number {
    return this.value
  }
}

/** A value as Python's json module produces it. */
export type PyValue = null | boolean | number | bigint | string | PyFloat | PyValue[] | PyObject | PyDict
export type PyObject = { [key: string]: PyValue }
/**
 * A dict whose key order matters and may hold integer-like keys ("6" before "3"): plain JS objects
 * would sort those, Python keeps insertion order. Written as a JSON object.
 */
export type PyDict = Map<string, PyValue>

type ParseResult = { ok: true; value: PyValue } | { ok: false; reason: string }

/** True for a JSON object (not an array, not a float box). */
export function isPyObject(v: unknown): v is PyObject {
  return (
    typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof PyFloat) && !(v instanceof Map)
  )
}

/** The entries of an object or a {@link PyDict}, in order; [] for anything else. */
export function entriesOf(v: unknown): Array<[string, PyValue]> {
  if (v instanceof Map) return [...(v as PyDict).entries()]
  if (isPyObject(v)) return Object.entries(v)
  return []
}

/** The numeric value of an int or float (bigint converted), else undefined. */
export function pyNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v
  if (v instanceof PyFloat) return v.value
  if (typeof v === 'bigint') return Number(v)
  return undefined
}

/** Parses like `json.loads`: floats become {@link PyFloat}, big integers `bigint`. */
export function parsePyJson(text: string): ParseResult {
  let i = 0
  const fail = (msg: string): never => {
    throw new SyntaxError(`${msg}: line 1 column ${i + 1} (char ${i})`)
  }
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++
      else break
    }
  }
  const parseString = (): string => {
    i++ // opening quote
    let out = ''
    let start = i
    for (;;) {
      if (i >= text.length) fail('Unterminated string starting at')
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        out += text.slice(start, i)
        i++
        return out
      }
      if (c < 0x20) fail('Invalid control character at')
      if (c === 0x5c) {
        out += text.slice(start, i)
        const e = text[i + 1]
        i += 2
        switch (e) {
          case '"':
            out += '"'
            break
          case '\\':
            out += '\\'
            break
          case '/':
            out += '/'
            break
          case 'b':
            out += '\b'
            break
          case 'f':
            out += '\f'
            break
          case 'n':
            out += '\n'
            break
          case 'r':
            out += '\r'
            break
          case 't':
            out += '\t'
            break
          case 'u': {
            const hex = text.slice(i, i + 4)
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('Invalid \\uXXXX escape')
            out += String.fromCharCode(parseInt(hex, 16))
            i += 4
            break
          }
          default:
            fail('Invalid \\escape')
        }
        start = i
        continue
      }
      i++
    }
  }
  const parseNumber = (): PyValue => {
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/.exec(text.slice(i))
    if (!m) fail('Expecting value')
    const lit = m![0]
    i += lit.length
    if (m![1] !== undefined || m![2] !== undefined) return new PyFloat(Number(lit))
    const n = Number(lit)
    return Number.isSafeInteger(n) ? n : BigInt(lit)
  }
  const parseValue = (depth: number): PyValue => {
    if (depth > 1000) fail('Too deeply nested')
    ws()
    const c = text[i]
    if (c === '{') {
      i++
      const obj: PyObject = {}
      ws()
      if (text[i] === '}') {
        i++
        return obj
      }
      for (;;) {
        ws()
        if (text[i] !== '"') fail('Expecting property name enclosed in double quotes')
        const key = parseString()
        ws()
        if (text[i] !== ':') fail("Expecting ':' delimiter")
        i++
        const v = parseValue(depth + 1)
        // Own property even for "__proto__": Python has no such special key.
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true })
        ws()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === '}') {
          i++
          return obj
        }
        fail("Expecting ',' delimiter")
      }
    }
    if (c === '[') {
      i++
      const arr: PyValue[] = []
      ws()
      if (text[i] === ']') {
        i++
        return arr
      }
      for (;;) {
        arr.push(parseValue(depth + 1))
        ws()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === ']') {
          i++
          return arr
        }
        fail("Expecting ',' delimiter")
      }
    }
    if (c === '"') return parseString()
    if (text.startsWith('true', i)) {
      i += 4
      return true
    }
    if (text.startsWith('false', i)) {
      i += 5
      return false
    }
    if (text.startsWith('null', i)) {
      i += 4
      return null
    }
    if (text.startsWith('NaN', i)) {
      i += 3
      return new PyFloat(NaN)
    }
    if (text.startsWith('Infinity', i)) {
      i += 8
      return new PyFloat(Infinity)
    }
    if (text.startsWith('-Infinity', i)) {
      i += 9
      return new PyFloat(-Infinity)
    }
    return parseNumber()
  }
  try {
    const value = parseValue(0)
    ws()
    if (i !== text.length) fail('Extra data')
    return { ok: true, value }
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) }
  }
}

/** Python's `repr(float)`. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN'
  if (x === Infinity) return 'Infinity'
  if (x === -Infinity) return '-Infinity'
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0'
  const [mant, expStr] = x.toExponential().split('e') as [string, string]
  const exp = Number(expStr)
  const neg = mant.startsWith('-')
  const digits = mant.replace('-', '').replace('.', '')
  const sign = neg ? '-' : ''
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits
    const e = Math.abs(exp).toString().padStart(2, '0')
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0')
  const frac = digits.slice(exp + 1)
  return `${sign}${intPart}.${frac.length > 0 ? frac : '0'}`
}

function pyString(s: string): string {
  let out = '"'
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k)
    if (c === 0x22) out += '\\"'
    else if (c === 0x5c) out += '\\\\'
    else if (c === 0x0a) out += '\\n'
    else if (c === 0x0d) out += '\\r'
    else if (c === 0x09) out += '\\t'
    else if (c === 0x08) out += '\\b'
    else if (c === 0x0c) out += '\\f'
    else if (c < 0x20 || c > 0x7e) {
      out += c === 0x7f ? s[k] : '\\u' + c.toString(16).padStart(4, '0')
    } else out += s[k]
  }
  return out + '"'
}

/**
 * Writes like Python's `json.dumps(value)` with default arguments. `undefined` members are skipped
 * (they never exist in Python), integral JS numbers are ints, other numbers floats.
 */
export function dumpPyJson(value: unknown): string {
  if (value === null || value === undefined) return 'null'
  if (value === true) return 'true'
  if (value === false) return 'false'
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof PyFloat) return pyFloatRepr(value.value)
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return Object.is(value, -0) ? '0' : value.toFixed(0)
    return pyFloatRepr(value)
  }
  if (typeof value === 'string') return pyString(value)
  if (Array.isArray(value)) return '[' + value.map((v) => dumpPyJson(v)).join(', ') + ']'
  if (value instanceof Map) {
    const parts: string[] = []
    for (const [k, v] of value as Map<string, unknown>) parts.push(pyString(String(k)) + ': ' + dumpPyJson(v))
    return '{' + parts.join(', ') + '}'
  }
  if (typeof value === 'object') {
    const parts: string[] = []
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined) continue
      parts.push(pyString(k) + ': ' + dumpPyJson(v))
    }
    return '{' + parts.join(', ') + '}'
  }
  return 'null'
}

/** A deep copy (PyFloat boxes are immutable and shared). */
export function clonePy<T extends PyValue>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => clonePy(x)) as T
  if (v instanceof Map) {
    const m: PyDict = new Map()
    for (const [k, x] of v as PyDict) m.set(k, clonePy(x))
    return m as T
  }
  if (isPyObject(v)) {
    const out: PyObject = {}
    for (const [k, x] of Object.entries(v)) {
      Object.defineProperty(out, k, {
        value: clonePy(x),
        enumerable: true,
        writable: true,
        configurable: true,
      })
    }
    return out as T
  }
  return v
}

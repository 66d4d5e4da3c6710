/**
 * Python's `str()` and `repr()` for JSON-shaped values: ComfyUI puts them into error messages
 * ("Value 999 bigger than max of 31", "ckpt_name: 'x' not in ['a', 'b']").
 */
import { PyFloat, pyFloatRepr, isPyObject } from './py-json.js'

/** A Python exception carried through the simulation: `type` is the qualified class name. */
export class PyError extends Error {
  constructor(
    readonly pyType: string,
    message: string,
  ) {
    super(message)
  }
}

function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'"
  let out = quote
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === quote || ch === '\\') out += '\\' + ch
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0')
    else out += ch
  }
  return out + quote
}

/** `repr(value)`. */
export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None'
  if (v === true) return 'True'
  if (v === false) return 'False'
  if (typeof v === 'string') return strRepr(v)
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof PyFloat) return pyFloatRepr(v.value).replace('Infinity', 'inf').replace('NaN', 'nan')
  if (typeof v === 'number') return Number.isInteger(v) ? v.toFixed(0) : pyFloatRepr(v)
  if (Array.isArray(v)) return '[' + v.map(pyRepr).join(', ') + ']'
  if (isPyObject(v)) {
    return (
      '{' +
      Object.entries(v)
        .map(([k, x]) => `${strRepr(k)}: ${pyRepr(x)}`)
        .join(', ') +
      '}'
    )
  }
  return String(v)
}

/** `str(value)`. */
export function pyStr(v: unknown): string {
  return typeof v === 'string' ? v : pyRepr(v)
}

/** Python truthiness (`bool(value)`). */
export function pyTruthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false) return false
  if (typeof v === 'number') return v !== 0
  if (typeof v === 'bigint') return v !== 0n
  if (v instanceof PyFloat) return v.value !== 0
  if (typeof v === 'string') return v.length > 0
  if (Array.isArray(v)) return v.length > 0
  if (isPyObject(v)) return Object.keys(v).length > 0
  return true
}

/** `int(value)` with Python's errors. */
export function pyInt(v: unknown): number | bigint {
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v === 'number' || typeof v === 'bigint') return v
  if (v instanceof PyFloat) {
    if (Number.isNaN(v.value)) throw new PyError('ValueError', 'cannot convert float NaN to integer')
    if (!Number.isFinite(v.value))
      throw new PyError('OverflowError', 'cannot convert float infinity to integer')
    const t = Math.trunc(v.value)
    return Number.isSafeInteger(t) ? t : BigInt(t)
  }
  if (typeof v === 'string') {
    const s = v.trim().replace(/_/g, '')
    if (/^[-+]?\d+$/.test(s)) {
      const n = Number(s)
      return Number.isSafeInteger(n) ? n : BigInt(s)
    }
    throw new PyError('ValueError', `invalid literal for int() with base 10: ${strRepr(v)}`)
  }
  const t = v === null || v === undefined ? 'NoneType' : Array.isArray(v) ? 'list' : 'dict'
  throw new PyError(
    'TypeError',
    `int() argument must be a string, a bytes-like object or a real number, not '${t}'`,
  )
}

/** `float(value)` with Python's errors. */
export function pyFloat(v: unknown): PyFloat {
  if (typeof v === 'boolean') return new PyFloat(v ? 1 : 0)
  if (typeof v === 'number') return new PyFloat(v)
  if (typeof v === 'bigint') return new PyFloat(Number(v))
  if (v instanceof PyFloat) return v
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase().replace(/_/g, '')
    if (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/.test(s)) return new PyFloat(Number(s))
    if (/^[-+]?(inf|infinity)$/.test(s)) return new PyFloat(s.startsWith('-') ? -Infinity : Infinity)
    if (/^[-+]?nan$/.test(s)) return new PyFloat(NaN)
    throw new PyError('ValueError', `could not convert string to float: ${strRepr(v)}`)
  }
  const t = v === null || v === undefined ? 'NoneType' : Array.isArray(v) ? 'list' : 'dict'
  throw new PyError('TypeError', `float() argument must be a string or a real number, not '${t}'`)
}

/** Python `==` between two JSON-shaped values (1 == 1.0 == True). */
export function pyEquals(a: unknown, b: unknown): boolean {
  const num = (x: unknown): number | undefined =>
    typeof x === 'number'
      ? x
      : typeof x === 'boolean'
        ? x
          ? 1
          : 0
        : x instanceof PyFloat
          ? x.value
          : typeof x === 'bigint'
            ? Number(x)
            : undefined
  const na = num(a)
  const nb = num(b)
  if (na !== undefined && nb !== undefined) return na === nb
  if (typeof a === 'string' || typeof b === 'string') return a === b
  if (a === null || b === null) return a === b
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => pyEquals(x, b[i]))
  if (isPyObject(a) && isPyObject(b)) {
    const ka = Object.keys(a)
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && pyEquals(a[k], b[k]))
  }
  return false
}

/**
 * The number-spelling side table of json.ts (see its module comment): the parser records tokens here, the
 * writers and copies read them.
 */
import type { JsonValue } from './types.js'

/**
 * Number tokens as the parser read them, where JS would write the value differently (`1.0`, `1e5`, `-0.0`):
 * container -> key (an array's index as a string) -> token. Weak, so it lives exactly as long as the data.
 */
const SPELLINGS = new WeakMap<object, Map<string, string>>()

/** The token to write for `value` under `key` of `container`, when it was read with another spelling. */
export function spellingOf(container: object, key: string, value: number): string | undefined {
  const token = SPELLINGS.get(container)?.get(key)
  // A value changed since it was read (redaction, truncation) is written in its own form.
  return token !== undefined && Object.is(Number(token), value) ? token : undefined
}

export function setSpelling(container: object, key: string, token: string): void {
  let spellings = SPELLINGS.get(container)
  if (!spellings) SPELLINGS.set(container, (spellings = new Map()))
  spellings.set(key, token)
}

/**
 * Deep copy of a JSON value that keeps number spellings (see the module comment); `map` may replace any value
 * (return `undefined` to keep copying it as is), e.g. to redact or truncate.
 */
export function copyJson(
  value: JsonValue,
  map?: (value: JsonValue, path: readonly string[]) => JsonValue | undefined,
  path: string[] = [],
): JsonValue {
  const replaced = map?.(value, path)
  if (replaced !== undefined) return replaced
  if (typeof value !== 'object' || value === null) return value
  const spellings = SPELLINGS.get(value)
  if (Array.isArray(value)) {
    const out = value.map((v, i) => copyJson(v, map, [...path, String(i)]))
    if (spellings) SPELLINGS.set(out, new Map(spellings))
    return out
  }
  const out: { [key: string]: JsonValue } = {}
  for (const key of Object.keys(value)) {
    const v = copyJson(value[key] as JsonValue, map, [...path, key])
    if (key === '__proto__')
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true })
    else out[key] = v
  }
  if (spellings) SPELLINGS.set(out, new Map(spellings))
  return out
}

/** Carries the number spellings of `from`'s members over to `to` (a shallow copy of it, e.g. a spread). */
export function keepSpellings<T extends object>(from: object, to: T): T {
  const spellings = SPELLINGS.get(from)
  if (spellings) SPELLINGS.set(to, new Map(spellings))
  return to
}

/** True when some member of `container` was read with a spelling of its own. */
export function hasSpellings(container: object): boolean {
  return SPELLINGS.has(container)
}

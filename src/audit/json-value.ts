import { keepSpellings } from './json.js'
import type { JsonObject, JsonValue } from './types.js'

/**
 * Copies a typed record (an interface such as `NodeRunRecord`) into a `JsonObject` for an event payload.
 * Interfaces are not assignable to index-signature types, so payload builders type their records first and
 * convert here; `undefined` fields are left out, anything that is not JSON is a bug and throws.
 */
export function toJsonObject(value: object): JsonObject {
  const out = toJsonValue(value)
  if (typeof out !== 'object' || out === null || Array.isArray(out)) {
    throw new TypeError('toJsonObject: expected a plain object')
  }
  return out
}

/** Deep copy of a value made of JSON parts (bigint and NaN allowed), leaving out `undefined` fields. */
export function toJsonValue(value: unknown): JsonValue {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'bigint':
    case 'boolean':
      return value
    case 'object': {
      if (value === null) return null
      // keepSpellings: a number read as `1.0` is still written `1.0` (see audit/json.ts).
      if (Array.isArray(value))
        return keepSpellings(
          value,
          value.map((v) => toJsonValue(v === undefined ? null : v)),
        )
      const out: JsonObject = {}
      for (const [key, v] of Object.entries(value)) {
        if (v !== undefined) out[key] = toJsonValue(v)
      }
      return keepSpellings(value, out)
    }
    default:
      throw new TypeError(`toJsonValue: not a JSON value: ${typeof value}`)
  }
}

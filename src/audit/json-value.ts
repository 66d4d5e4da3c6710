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

/**
 * True when `value` can be used as a JsonValue as it is: plain objects and arrays all the way down, no
 * `undefined` member, no class instance (bigint and NaN allowed, as everywhere in the log).
 */
export function isJsonValue(value: unknown, depth = 0): value is JsonValue {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'bigint':
    case 'boolean':
      return true
    case 'object': {
      if (value === null) return true
      // As deep as the parser reads (audit/json.ts), so any parsed document passes.
      if (depth > 512) return false
      if (Array.isArray(value)) return value.every((v) => isJsonValue(v, depth + 1))
      const proto: unknown = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      return Object.values(value).every((v) => isJsonValue(v, depth + 1))
    }
    default:
      return false
  }
}

/**
 * A typed record (an interface, which lacks the index signature JsonObject has) as a JsonObject: the record
 * itself when it is JSON all the way down, which is the common case and costs no copy, else the copy
 * {@link toJsonObject} makes (leaving out `undefined` fields, throwing on anything that is not JSON).
 */
export function asJsonObject(value: object): JsonObject {
  if (!Array.isArray(value) && isJsonValue(value)) return value as JsonObject
  return toJsonObject(value)
}

/** {@link asJsonObject} for any value: itself when it is JSON already, else {@link toJsonValue}'s copy. */
export function asJsonValue(value: unknown): JsonValue {
  return isJsonValue(value) ? value : toJsonValue(value)
}

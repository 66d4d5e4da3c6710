// The conversion moved to audit/ so that every event producer (capture, provenance, the gateway) shares it.
export { toJsonObject } from '../audit/json-value.js'

/** ISO 8601 UTC with milliseconds for an epoch-milliseconds time (fractions of a ms are dropped). */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString()
}

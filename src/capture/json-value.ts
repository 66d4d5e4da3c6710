// The conversion moved to audit/ so that every event producer (capture, provenance, the gateway) shares it.
export { toJsonObject } from '../audit/json-value.js'

/** ISO 8601 UTC with milliseconds for an epoch-milliseconds time (fractions of a ms are dropped). */
export function isoTime(ms: number): string {
  // The events of one frame (and of a burst of frames) share their millisecond: one Date per distinct time.
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString()
    lastMs = ms
  }
  return lastIso
}
let lastMs = Number.NaN
let lastIso = ''

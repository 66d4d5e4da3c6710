/**
 * One time syntax for every command: a duration back from now (`90d`, `12h`, `30m`, `45s`, `2w`, combinable as
 * `1d12h`) or an ISO 8601 date/time (`2026-11-01`, `2026-11-01T12:00:00Z`).
 */
type TimeSpecResult = { ok: true; value: Date } | { ok: false; reason: string }

const UNIT_MILLIS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
}

/** Parses a duration such as `90d` or `1h30m` into milliseconds. */
export function parseDurationMillis(
  text: string,
): { ok: true; value: number } | { ok: false; reason: string } {
  const trimmed = text.trim()
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy
  let total = 0
  let consumed = 0
  let match: RegExpExecArray | null
  while ((match = re.exec(trimmed)) !== null) {
    total += Number(match[1]) * UNIT_MILLIS[match[2]!]!
    consumed = re.lastIndex
  }
  if (consumed === 0 || consumed !== trimmed.length) {
    return {
      ok: false,
      reason: `not a duration: ${JSON.stringify(text)} (expected e.g. 90d, 12h, 30m, 1h30m)`,
    }
  }
  return { ok: true, value: total }
}

/** A point in time: `now - duration`, or an ISO date. */
export function parseTimeSpec(text: string, now: Date = new Date()): TimeSpecResult {
  const duration = parseDurationMillis(text)
  if (duration.ok) return { ok: true, value: new Date(now.getTime() - duration.value) }
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    const iso = text.trim().length === 10 ? `${text.trim()}T00:00:00Z` : text.trim()
    const date = new Date(iso)
    if (!Number.isNaN(date.getTime())) return { ok: true, value: date }
  }
  return {
    ok: false,
    reason: `not a time: ${JSON.stringify(text)} (expected a duration back from now such as 90d or 12h, or an ISO date such as 2026-11-01)`,
  }
}

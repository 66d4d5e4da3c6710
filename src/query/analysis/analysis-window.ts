/**
 * How an answer over a window splits it between the stores' tables: whole UTC days from the daily rollups,
 * the whole hours left at the window's ends from the hourly rollups, and the partial hours at its very edges
 * from raw rows. A 30-day window so reads about 30 daily rows per group, at most 46 hourly ones, and the runs
 * of at most two partial hours.
 */
import type { AnalysisFilter } from './analysis-filter.js'

export const HOUR = 3_600_000
const DAY = 86_400_000

/** Windows longer than this (or open-ended ones) read rollups where the question allows. */
export const ROLLUP_MIN_WINDOW_MILLIS = 6 * HOUR

/** A span of time in ms; an absent bound is open. */
interface Span {
  readonly since?: number
  readonly until?: number
}

/** The parts of a window, each read from one kind of table. */
interface WindowPlan {
  /** Whole UTC days (daily rollups), or null. */
  readonly days: Span | null
  /** Whole hours outside {@link days} (hourly rollups). */
  readonly hours: Span[]
  /** Partial hours at the edges (raw rows). */
  readonly raw: Span[]
}

function ceilTo(ms: number | undefined, size: number): number | undefined {
  return ms === undefined ? undefined : Math.ceil(ms / size) * size
}

function floorTo(ms: number | undefined, size: number): number | undefined {
  return ms === undefined ? undefined : Math.floor(ms / size) * size
}

/** Splits [since, until) into days, hours and raw edges; `useDays` false keeps whole hours as hours. */
export function planWindow(
  since: number | undefined,
  until: number | undefined,
  useDays: boolean,
): WindowPlan {
  const firstHour = ceilTo(since, HOUR)
  const lastHour = floorTo(until, HOUR)
  if (firstHour !== undefined && lastHour !== undefined && firstHour >= lastHour) {
    return { days: null, hours: [], raw: since! < until! ? [{ since: since!, until: until! }] : [] }
  }
  const raw: Span[] = []
  if (since !== undefined && since < firstHour!) raw.push({ since, until: firstHour! })
  if (until !== undefined && lastHour! < until) raw.push({ since: lastHour!, until })
  const whole: Span = { ...opt('since', firstHour), ...opt('until', lastHour) }
  const firstDay = ceilTo(firstHour, DAY)
  const lastDay = floorTo(lastHour, DAY)
  if (!useDays || (firstDay !== undefined && lastDay !== undefined && firstDay >= lastDay)) {
    return { days: null, hours: [whole], raw }
  }
  const hours: Span[] = []
  if (firstHour !== undefined && firstHour < firstDay!) hours.push({ since: firstHour, until: firstDay! })
  if (lastHour !== undefined && lastDay! < lastHour) hours.push({ since: lastDay!, until: lastHour })
  return { days: { ...opt('since', firstDay), ...opt('until', lastDay) }, hours, raw }
}

function opt<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number }
}

/** A span as the ISO bounds store filters take (absent bounds left out). */
export function isoSpan(span: Span): { since?: string; until?: string } {
  return {
    ...(span.since !== undefined ? { since: new Date(span.since).toISOString() } : {}),
    ...(span.until !== undefined ? { until: new Date(span.until).toISOString() } : {}),
  }
}

/**
 * The plan of a filter's window, or undefined when the window is too short for rollups to pay (a few hours:
 * raw rows are exact and few).
 */
export function planFilterWindow(
  filter: AnalysisFilter,
  now: number,
  useDays: boolean,
): WindowPlan | undefined {
  const since = filter.since === undefined ? undefined : Date.parse(filter.since)
  const until = filter.until === undefined ? undefined : Date.parse(filter.until)
  if (since !== undefined && (until ?? now) - since < ROLLUP_MIN_WINDOW_MILLIS) return undefined
  return planWindow(since, until, useDays)
}

/** Each rollup read of a plan: the daily span (grain `day`) and the hourly spans. */
export function rollupReads(plan: WindowPlan): { grain: 'hour' | 'day'; since?: string; until?: string }[] {
  return [
    ...(plan.days ? [{ grain: 'day' as const, ...isoSpan(plan.days) }] : []),
    ...plan.hours.map((h) => ({ grain: 'hour' as const, ...isoSpan(h) })),
  ]
}

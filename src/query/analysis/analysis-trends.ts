/** `trends`: per time bucket, runs, duration p50/p95 of executed runs, and errors, of one node type. */
import type { NodeRunRecord } from '../../audit/types.js'
import type { NodeRunRow } from '../../store/store.js'
import {
  durations,
  loadFacts,
  round,
  windowOf,
  type AnalysisFilter,
  type AnalysisStore,
  type AnalysisWindow,
  type AnswerSource,
} from './analysis-filter.js'
import { fromRollups } from './analysis-rollup-read.js'
import { quantile, sortedNumbers } from './statistics.js'

export const TREND_BUCKETS = { '1h': 3_600_000, '1d': 86_400_000, '1w': 7 * 86_400_000 } as const
export type TrendBucket = keyof typeof TREND_BUCKETS

export interface TrendPoint {
  /** Bucket start, ISO (UTC; weeks start on Monday). */
  readonly start: string
  readonly runs: number
  readonly p50: number | null
  readonly p95: number | null
  readonly errors: number
}

export interface TrendsReport {
  readonly window: AnalysisWindow
  readonly node_type: string
  readonly bucket: TrendBucket
  /** As in {@link StatsReport.source}. */
  readonly source: AnswerSource
  readonly buckets: TrendPoint[]
}

/** Start of the bucket holding `ms`: hours and days on UTC boundaries, weeks on Mondays 00:00 UTC. */
export function bucketStart(ms: number, bucket: TrendBucket): number {
  const size = TREND_BUCKETS[bucket]
  // 1970-01-01 was a Thursday: shift by 4 days so weeks start on Monday.
  const offset = bucket === '1w' ? 4 * 86_400_000 : 0
  return Math.floor((ms - offset) / size) * size + offset
}

/** `trends`: per time bucket, runs, duration p50/p95 of executed runs, and errors, of one node type. */
export async function trends(
  store: AnalysisStore,
  filter: AnalysisFilter & { readonly nodeType: string },
  bucket: TrendBucket = '1d',
  options: { readonly exact?: boolean; readonly now?: Date } = {},
): Promise<TrendsReport> {
  if (!options.exact) {
    const groups = await fromRollups(
      store,
      filter,
      (_origin, _type, hour) => ({ start: new Date(bucketStart(Date.parse(hour), bucket)).toISOString() }),
      options.now?.getTime() ?? Date.now(),
      bucket !== '1h',
    )
    if (groups) {
      const points = [...groups.values()]
        .sort((a, b) => String(a.key.start).localeCompare(String(b.key.start)))
        .map((g) => ({
          start: g.key.start as string,
          runs: g.runs,
          p50: round(g.durations.quantile(0.5)),
          p95: round(g.durations.quantile(0.95)),
          errors: g.errors,
        }))
      return {
        window: windowOf(filter),
        node_type: filter.nodeType,
        bucket,
        source: 'rollups',
        buckets: points,
      }
    }
  }
  const facts = await loadFacts(store, filter)
  const buckets = new Map<number, NodeRunRecord[]>()
  for (const { run } of facts) {
    const start = bucketStart(Date.parse(run.timestamp_start), bucket)
    let list = buckets.get(start)
    if (!list) buckets.set(start, (list = []))
    list.push(run)
  }
  const points = [...buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([start, runs]) => {
      const d = sortedNumbers(durations(runs.map((run) => ({ run: run as NodeRunRow, session: undefined }))))
      return {
        start: new Date(start).toISOString(),
        runs: runs.length,
        p50: round(quantile(d, 0.5)),
        p95: round(quantile(d, 0.95)),
        errors: runs.filter((r) => r.status === 'error').length,
      }
    })
  return {
    window: windowOf(filter),
    node_type: filter.nodeType,
    bucket,
    source: 'node_runs',
    buckets: points,
  }
}

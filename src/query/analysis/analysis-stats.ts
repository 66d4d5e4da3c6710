/** `stats`: per group, counts, error and cache-hit rates, duration and GPU memory percentiles. */
import type { NodeRunRecord } from '../../audit/types.js'
import {
  executed,
  loadFacts,
  round,
  windowOf,
  type AnalysisFilter,
  type AnalysisStore,
  type AnalysisWindow,
  type AnswerSource,
  type Fact,
} from './analysis-filter.js'
import { bucketedStats, fromRollups } from './analysis-rollup-read.js'
import { mean, quantile, sortedNumbers } from './statistics.js'

/** Grouping of `stats`. */
export const STATS_GROUPINGS = ['node_type', 'user', 'model', 'origin', 'day', 'hour'] as const
export type StatsGrouping = (typeof STATS_GROUPINGS)[number]

/** Duration percentiles (ms) over executed runs. */
export interface DurationSummary {
  readonly p50: number | null
  readonly p95: number | null
  readonly p99: number | null
  readonly mean: number | null
  readonly max: number | null
}

/** One group of `stats`. */
export interface StatsGroup {
  readonly key: Record<string, string | null>
  readonly runs: number
  readonly executed: number
  readonly cached: number
  readonly errors: number
  readonly error_rate: number
  readonly cache_hit_rate: number
  readonly duration_ms: DurationSummary
  /** MiB. */
  readonly gpu_memory_used: {
    readonly p50: number | null
    readonly p95: number | null
    readonly max: number | null
  }
}

/** The answer of `stats`. */
export interface StatsReport {
  readonly window: AnalysisWindow
  readonly by: StatsGrouping
  /** `rollups` for long windows without session filters (percentiles within 1%), else `node_runs` (exact). */
  readonly source: AnswerSource
  readonly groups: StatsGroup[]
}

function groupKeys(fact: Fact, by: StatsGrouping): Record<string, string | null>[] {
  const { run, session } = fact
  switch (by) {
    case 'node_type':
      return [{ node_type: run.node_type }]
    case 'user':
      return [{ user: session?.submitter?.user ?? null }]
    case 'origin':
      return [{ origin: run.origin }]
    case 'day':
      return [{ day: run.timestamp_start.slice(0, 10) }]
    case 'hour':
      return [{ hour: `${run.timestamp_start.slice(0, 13)}:00:00Z` }]
    case 'model': {
      const models = session?.models ?? []
      if (models.length === 0) return [{ model: null, sha256: null }]
      const seen = new Set<string>()
      const keys: Record<string, string | null>[] = []
      for (const m of models) {
        const k = `${m.name}\u0000${m.sha256 ?? ''}`
        if (seen.has(k)) continue
        seen.add(k)
        keys.push({ model: m.name, sha256: m.sha256 ?? null })
      }
      return keys
    }
  }
}

/** Summary of a set of node runs. */
export function summarizeRuns(runs: readonly NodeRunRecord[]): Omit<StatsGroup, 'key'> {
  let cached = 0
  let errors = 0
  const durs: number[] = []
  const gpu: number[] = []
  for (const run of runs) {
    if (run.status === 'cached') cached++
    if (run.status === 'error') errors++
    if (executed(run) && run.duration_ms !== null) durs.push(run.duration_ms)
    if (run.gpu_memory_used !== null) gpu.push(run.gpu_memory_used)
  }
  const d = sortedNumbers(durs)
  const g = sortedNumbers(gpu)
  return {
    runs: runs.length,
    executed: runs.length - cached,
    cached,
    errors,
    error_rate: runs.length === 0 ? 0 : (round(errors / runs.length, 4) as number),
    cache_hit_rate: runs.length === 0 ? 0 : (round(cached / runs.length, 4) as number),
    duration_ms: {
      p50: round(quantile(d, 0.5)),
      p95: round(quantile(d, 0.95)),
      p99: round(quantile(d, 0.99)),
      mean: round(mean(d)),
      max: d.length === 0 ? null : (d[d.length - 1] as number),
    },
    gpu_memory_used: {
      p50: round(quantile(g, 0.5)),
      p95: round(quantile(g, 0.95)),
      max: g.length === 0 ? null : (g[g.length - 1] as number),
    },
  }
}

/** `stats`: per group, counts, error and cache-hit rates, duration and GPU memory percentiles. */
export async function stats(
  store: AnalysisStore,
  filter: AnalysisFilter,
  by: StatsGrouping = 'node_type',
  options: { readonly exact?: boolean; readonly now?: Date } = {},
): Promise<StatsReport> {
  if (!options.exact && (by === 'node_type' || by === 'origin' || by === 'day' || by === 'hour')) {
    const groups = await fromRollups(
      store,
      filter,
      (origin, nodeType, hour): Record<string, string | null> =>
        by === 'node_type'
          ? { node_type: nodeType }
          : by === 'origin'
            ? { origin }
            : by === 'day'
              ? { day: hour.slice(0, 10) }
              : { hour: `${hour.slice(0, 13)}:00:00Z` },
      options.now?.getTime() ?? Date.now(),
      by !== 'hour',
    )
    if (groups) {
      const out = [...groups.values()].map((g) => ({ key: g.key, ...bucketedStats(g) }))
      sortGroups(out, by)
      return { window: windowOf(filter), by, source: 'rollups', groups: out }
    }
  }
  const facts = await loadFacts(store, filter)
  const groups = new Map<string, { key: Record<string, string | null>; runs: NodeRunRecord[] }>()
  for (const fact of facts) {
    for (const key of groupKeys(fact, by)) {
      const k = JSON.stringify(key)
      let g = groups.get(k)
      if (!g) groups.set(k, (g = { key, runs: [] }))
      g.runs.push(fact.run)
    }
  }
  const out = [...groups.values()].map((g) => ({ key: g.key, ...summarizeRuns(g.runs) }))
  sortGroups(out, by)
  return { window: windowOf(filter), by, source: 'node_runs', groups: out }
}

function sortGroups(out: StatsGroup[], by: StatsGrouping): void {
  out.sort((a, b) =>
    by === 'day' || by === 'hour'
      ? String(Object.values(a.key)[0]).localeCompare(String(Object.values(b.key)[0]))
      : b.runs - a.runs || JSON.stringify(a.key).localeCompare(JSON.stringify(b.key)),
  )
}

/**
 * `stats` and `trends` from node_run_rollups: the window's whole days from the daily table, the whole hours at
 * its ends from the hourly one, and the runs of the partial edge hours from node_runs, added exactly.
 */
import type { NodeRunRow } from '../../store/store.js'
import { LogSketch } from '../../store/log-sketch.js'
import { executed, round, type AnalysisFilter, type AnalysisStore } from './analysis-filter.js'
import type { StatsGroup } from './analysis-stats.js'
import { HOUR, isoSpan, planFilterWindow, rollupReads } from './analysis-window.js'

/** One group's merged counts and sketches. */
interface Bucketed {
  key: Record<string, string | null>
  runs: number
  executed: number
  cached: number
  errors: number
  durations: LogSketch
  gpu: LogSketch
  durationSum: number
  durationMax: number | null
  gpuMax: number | null
}

function emptyBucket(key: Record<string, string | null>): Bucketed {
  return {
    key,
    runs: 0,
    executed: 0,
    cached: 0,
    errors: 0,
    durations: new LogSketch(),
    gpu: new LogSketch(),
    durationSum: 0,
    durationMax: null,
    gpuMax: null,
  }
}

function maxOf(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null ? a : Math.max(a, b)
}

/** Whether node_run_rollups can answer: its keys are origin and node type, so no other session filter. */
function rollupsServe(filter: AnalysisFilter): boolean {
  return (
    filter.user === undefined &&
    filter.status === undefined &&
    filter.model === undefined &&
    filter.workflow === undefined
  )
}

/**
 * Rollup rows of the window merged per group, plus the partial edge hours from node_runs; undefined when the
 * question needs raw rows (a person, status, model or workflow filter, a short window, or a store without
 * rollups). `useDays` false when a group is finer than a day (`stats --by hour`, `trends --bucket 1h`).
 */
export async function fromRollups(
  store: AnalysisStore,
  filter: AnalysisFilter,
  groupOf: (origin: string, nodeType: string | null, hour: string) => Record<string, string | null>,
  now: number,
  useDays: boolean,
): Promise<Map<string, Bucketed> | undefined> {
  if (!store.rollups || !rollupsServe(filter)) return undefined
  const plan = planFilterWindow(filter, now, useDays)
  if (!plan) return undefined
  const scope = {
    ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
    ...(filter.nodeType !== undefined ? { nodeType: filter.nodeType } : {}),
  }
  const groups = new Map<string, Bucketed>()
  const entry = (key: Record<string, string | null>): Bucketed => {
    const k = JSON.stringify(key)
    let g = groups.get(k)
    if (!g) groups.set(k, (g = emptyBucket(key)))
    return g
  }
  for (const read of rollupReads(plan)) {
    for (const r of await store.rollups({ ...scope, ...read })) {
      const g = entry(groupOf(r.origin, r.node_type === '' ? null : r.node_type, r.hour))
      g.runs += r.runs
      g.executed += r.executed
      g.cached += r.cached
      g.errors += r.errors
      g.durations.merge(r.duration_sketch)
      g.gpu.merge(r.gpu_sketch)
      g.durationSum += r.duration_sum_ms
      g.durationMax = maxOf(g.durationMax, r.duration_max_ms)
      g.gpuMax = maxOf(g.gpuMax, r.gpu_max_mib)
    }
  }
  const edges: NodeRunRow[] = []
  for (const span of plan.raw)
    edges.push(...(await store.nodeRuns({ ...scope, ...isoSpan(span), lean: true })))
  for (const run of edges) {
    const hour = new Date(Math.floor(Date.parse(run.timestamp_start) / HOUR) * HOUR).toISOString()
    addRun(entry(groupOf(run.origin, run.node_type, hour)), run)
  }
  return groups
}

function addRun(g: Bucketed, run: NodeRunRow): void {
  g.runs++
  if (run.status === 'cached') g.cached++
  else g.executed++
  if (run.status === 'error') g.errors++
  if (executed(run) && run.duration_ms !== null) {
    g.durations.add(run.duration_ms)
    g.durationSum += run.duration_ms
    g.durationMax = maxOf(g.durationMax, run.duration_ms)
  }
  if (run.gpu_memory_used !== null) {
    g.gpu.add(run.gpu_memory_used)
    g.gpuMax = maxOf(g.gpuMax, run.gpu_memory_used)
  }
}

/** A group's figures as `stats` reports them. */
export function bucketedStats(g: Bucketed): Omit<StatsGroup, 'key'> {
  const n = g.durations.count
  return {
    runs: g.runs,
    executed: g.executed,
    cached: g.cached,
    errors: g.errors,
    error_rate: g.runs === 0 ? 0 : (round(g.errors / g.runs, 4) as number),
    cache_hit_rate: g.runs === 0 ? 0 : (round(g.cached / g.runs, 4) as number),
    duration_ms: {
      p50: round(g.durations.quantile(0.5)),
      p95: round(g.durations.quantile(0.95)),
      p99: round(g.durations.quantile(0.99)),
      mean: n === 0 ? null : round(g.durationSum / n),
      max: g.durationMax,
    },
    gpu_memory_used: { p50: round(g.gpu.quantile(0.5)), p95: round(g.gpu.quantile(0.95)), max: g.gpuMax },
  }
}

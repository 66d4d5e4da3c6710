/**
 * `regressions`: node types (and node type + workflow) whose recent durations are slower than the baseline,
 * reported only past a sample minimum, a ratio and a significance level.
 */
import { LogSketch } from '../../store/log-sketch.js'
import {
  executed,
  loadFacts,
  round,
  workflowId,
  type AnalysisFilter,
  type AnalysisStore,
  type AnalysisWindow,
  type AnswerSource,
} from './analysis-filter.js'
import { ROLLUP_MIN_WINDOW_MILLIS, isoSpan, planWindow, rollupReads } from './analysis-window.js'
import { mannWhitneyGreater, mannWhitneyGreaterGrouped, quantile, sortedNumbers } from './statistics.js'

/** Options of {@link regressions}. */
export interface RegressionOptions {
  /** Length of the baseline window before the recent one, ms (default 7 days). */
  readonly baselineMillis?: number
  /** Length of the recent window ending at `now`, ms (default 1 day). */
  readonly recentMillis?: number
  /** Fewest executed runs in each window for a comparison (default 20). */
  readonly minSamples?: number
  /** Largest one-sided Mann-Whitney p-value reported (default 0.01). */
  readonly alpha?: number
  /** Smallest ratio of p50s reported (default 1.1: a 10% slowdown). */
  readonly minRatio?: number
  /** End of the recent window (default: `filter.until`, else the current time). */
  readonly now?: Date
  /** Read raw rows and compare exact samples, never rollups. */
  readonly exact?: boolean
}

export interface WindowSample {
  readonly n: number
  readonly p50: number | null
  readonly p95: number | null
}

export interface Regression {
  readonly node_type: string | null
  /** Null for the node type over every workflow. */
  readonly workflow: string | null
  readonly baseline: WindowSample
  readonly recent: WindowSample
  /** recent p50 / baseline p50. */
  readonly ratio: number
  /** One-sided Mann-Whitney U p-value that recent durations are larger. */
  readonly p_value: number
}

export interface RegressionsReport {
  readonly baseline_window: AnalysisWindow
  readonly recent_window: AnalysisWindow
  readonly min_samples: number
  readonly alpha: number
  readonly min_ratio: number
  /**
   * `rollups`: whole hours from workflow_rollups, percentiles within 1% and the rank test over sketch buckets
   * (values within 1% of each other tie); `node_runs`: exact samples.
   */
  readonly source: AnswerSource
  readonly regressions: Regression[]
  /** Groups with enough samples that were compared (reported or not). */
  readonly compared: number
}

function sample(values: number[]): WindowSample {
  const s = sortedNumbers(values)
  return { n: s.length, p50: round(quantile(s, 0.5)), p95: round(quantile(s, 0.95)) }
}

/**
 * `regressions`: node types (and node type + workflow) whose recent durations are slower than the baseline.
 * A group is reported only with `minSamples` executed runs in both windows, a p50 ratio of at least `minRatio`
 * and a Mann-Whitney p-value below `alpha`, so noise does not raise alarms.
 */
export async function regressions(
  store: AnalysisStore,
  filter: AnalysisFilter,
  options: RegressionOptions = {},
): Promise<RegressionsReport> {
  const now = options.now?.getTime() ?? (filter.until !== undefined ? Date.parse(filter.until) : Date.now())
  const recentMs = options.recentMillis ?? 86_400_000
  const baselineMs = options.baselineMillis ?? 7 * 86_400_000
  const minSamples = options.minSamples ?? 20
  const alpha = options.alpha ?? 0.01
  const minRatio = options.minRatio ?? 1.1
  const split = now - recentMs
  const from = split - baselineMs
  const iso = (ms: number): string => new Date(ms).toISOString()
  const report = (found: Regression[], compared: number, source: AnswerSource): RegressionsReport => {
    found.sort((a, b) => b.ratio - a.ratio || (a.workflow === null ? -1 : 1))
    return {
      baseline_window: { since: iso(from), until: iso(split) },
      recent_window: { since: iso(split), until: iso(now) },
      min_samples: minSamples,
      alpha,
      min_ratio: minRatio,
      source,
      regressions: found,
      compared,
    }
  }
  // One rule for both sources: slower by the ratio, then significant (the test runs only past the ratio).
  const judge = (
    g: { readonly node_type: string | null; readonly workflow: string | null },
    base: WindowSample,
    recent: WindowSample,
    pValue: () => number,
  ): Regression | null => {
    if (base.p50 === null || recent.p50 === null || base.p50 <= 0) return null
    const ratio = recent.p50 / base.p50
    if (ratio < minRatio) return null
    const p = pValue()
    if (p >= alpha) return null
    const r: Regression = {
      node_type: g.node_type,
      workflow: g.workflow,
      baseline: base,
      recent,
      ratio: round(ratio) as number,
      p_value: Number(p.toPrecision(3)),
    }
    return r
  }
  const sketched = options.exact ? undefined : await regressionsFromRollups(store, filter, from, split, now)
  if (sketched) {
    const found: Regression[] = []
    let compared = 0
    for (const g of sketched.values()) {
      if (g.base.count < minSamples || g.recent.count < minSamples) continue
      compared++
      const base = { n: g.base.count, p50: round(g.base.quantile(0.5)), p95: round(g.base.quantile(0.95)) }
      const recent = {
        n: g.recent.count,
        p50: round(g.recent.quantile(0.5)),
        p95: round(g.recent.quantile(0.95)),
      }
      const r = judge(
        g,
        base,
        recent,
        () => mannWhitneyGreaterGrouped(alignedBuckets(g.base, g.recent)).p_value,
      )
      if (r) found.push(r)
    }
    return report(found, compared, 'rollups')
  }
  const facts = await loadFacts(store, { ...filter, since: iso(from), until: iso(now) })
  const groups = new Map<
    string,
    { node_type: string | null; workflow: string | null; base: number[]; recent: number[] }
  >()
  for (const { run, session } of facts) {
    if (!executed(run) || run.duration_ms === null || run.status !== 'success') continue
    const inRecent = Date.parse(run.timestamp_start) >= split
    for (const workflow of [null, workflowId(session)]) {
      const k = JSON.stringify([run.node_type, workflow])
      let g = groups.get(k)
      if (!g) groups.set(k, (g = { node_type: run.node_type, workflow, base: [], recent: [] }))
      ;(inRecent ? g.recent : g.base).push(run.duration_ms)
      if (workflowId(session) === null) break
    }
  }
  const found: Regression[] = []
  let compared = 0
  for (const g of groups.values()) {
    if (g.base.length < minSamples || g.recent.length < minSamples) continue
    compared++
    const base = sample(g.base)
    const recent = sample(g.recent)
    const r = judge(g, base, recent, () => mannWhitneyGreater(g.base, g.recent).p_value)
    if (r) found.push(r)
  }
  return report(found, compared, 'node_runs')
}

/** Both sketches' buckets in value order as (baseline count, recent count) tie groups. */
function alignedBuckets(base: LogSketch, recent: LogSketch): [number, number][] {
  const counts = new Map<number, [number, number]>()
  for (const [i, c] of base.buckets()) counts.set(i, [c, 0])
  for (const [i, c] of recent.buckets()) {
    const e = counts.get(i)
    if (e) e[1] = c
    else counts.set(i, [0, c])
  }
  return [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c)
}

type SketchGroups = Map<
  string,
  { node_type: string | null; workflow: string | null; base: LogSketch; recent: LogSketch }
>

/**
 * Successful durations per node type and node type + workflow, as sketches of the baseline and the recent
 * window: each window's whole days from the daily workflow rollups, its whole hours at the ends from the
 * hourly ones, and the partial hours at its edges (and at the split) from node_runs. Undefined when the
 * question needs raw rows: a person, status or model filter (not keys of these rollups; origin, node type and
 * workflow are), a window under a few hours, or a store without these rollups.
 */
async function regressionsFromRollups(
  store: AnalysisStore,
  filter: AnalysisFilter,
  from: number,
  split: number,
  now: number,
): Promise<SketchGroups | undefined> {
  if (!store.workflowRollups) return undefined
  if (filter.user !== undefined || filter.status !== undefined || filter.model !== undefined) return undefined
  if (now - from < ROLLUP_MIN_WINDOW_MILLIS) return undefined
  const groups: SketchGroups = new Map()
  const group = (nodeType: string | null, workflow: string | null) => {
    const k = JSON.stringify([nodeType, workflow])
    let g = groups.get(k)
    if (!g)
      groups.set(k, (g = { node_type: nodeType, workflow, base: new LogSketch(), recent: new LogSketch() }))
    return g
  }
  const scope = {
    ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
    ...(filter.nodeType !== undefined ? { nodeType: filter.nodeType } : {}),
    ...(filter.workflow !== undefined ? { workflow: filter.workflow } : {}),
  }
  // The edges (partial hours) are read by time and their workflow checked here: with the workflow in the SQL
  // the planner reads every run of the workflow's sessions over the whole history, then drops those outside
  // the hour.
  const { workflow: _workflow, ...edgeFilter } = filter
  const sides = [
    ['base', planWindow(from, split, true)],
    ['recent', planWindow(split, now, true)],
  ] as const
  for (const [side, plan] of sides) {
    for (const read of rollupReads(plan)) {
      for (const r of await store.workflowRollups({ ...scope, ...read })) {
        const type = r.node_type === '' ? null : r.node_type
        group(type, null)[side].merge(r.duration_sketch)
        if (r.workflow !== '') group(type, r.workflow)[side].merge(r.duration_sketch)
      }
    }
    for (const span of plan.raw) {
      for (const { run, session } of await loadFacts(store, { ...edgeFilter, ...isoSpan(span) }, true)) {
        if (run.status !== 'success' || run.duration_ms === null) continue
        const workflow = workflowId(session)
        if (filter.workflow !== undefined && workflow !== filter.workflow) continue
        group(run.node_type, null)[side].add(run.duration_ms)
        if (workflow !== null) group(run.node_type, workflow)[side].add(run.duration_ms)
      }
    }
  }
  return groups
}

/** `correlate`: Spearman correlation of a node type's durations with factors, and the durations by factor bins. */
import type { NodeRunRecord, SessionRecord } from '../../audit/types.js'
import {
  loadFacts,
  round,
  windowOf,
  type AnalysisFilter,
  type AnalysisStore,
  type AnalysisWindow,
} from './analysis-filter.js'
import { asNumber, graphOf, upstreamNumbers } from './analysis-graph.js'
import { quantile, sortedNumbers, spearman, spearmanPValue } from './statistics.js'

/** Factors `correlate` always knows, besides any numeric input by name. */
export const BUILTIN_FACTORS = [
  'gpu_memory_used',
  'gpu_memory_fraction',
  'pixels',
  'batch_size',
  'steps',
  'steps_x_pixels',
] as const

/** The value of one factor for a run, or null when it does not apply. */
export function factorValue(
  fact: { run: NodeRunRecord; session: SessionRecord | undefined },
  factor: string,
): number | null {
  const { run, session } = fact
  if (factor === 'gpu_memory_used') return run.gpu_memory_used
  if (factor === 'gpu_memory_fraction') {
    const total = session?.environment?.vram_total_mib
    return run.gpu_memory_used === null || !total ? null : run.gpu_memory_used / total
  }
  const graph = graphOf(session)
  const own = asNumber(run.inputs[factor])
  if (factor !== 'pixels' && factor !== 'steps_x_pixels' && own !== null) return own
  if (!graph) return null
  if (factor === 'pixels' || factor === 'steps_x_pixels') {
    const size = upstreamNumbers(graph, run.node_id, ['width', 'height'])
    if (!size) return null
    const pixels = size[0]! * size[1]!
    if (factor === 'pixels') return pixels
    const steps = upstreamNumbers(graph, run.node_id, ['steps'])
    const batch = upstreamNumbers(graph, run.node_id, ['batch_size'])?.[0] ?? 1
    return steps ? steps[0]! * pixels * batch : null
  }
  if (factor === 'batch_size' || factor === 'steps')
    return upstreamNumbers(graph, run.node_id, [factor])?.[0] ?? null
  return null
}

export interface FactorCorrelation {
  readonly factor: string
  readonly n: number
  /** Spearman's rho of duration with the factor (null when either is constant). */
  readonly rho: number | null
  /** Two-sided p-value of rho under independence. */
  readonly p_value: number | null
}

export interface FactorBin {
  readonly from: number
  readonly to: number
  readonly n: number
  readonly p50: number | null
  readonly p95: number | null
}

export interface CorrelateReport {
  readonly window: AnalysisWindow
  readonly node_type: string
  /** Every factor ranked by |rho| (without `--factor`), or the one asked for. */
  readonly factors: FactorCorrelation[]
  /** Durations by factor bins (equal-count bins) of the factor asked for, or the strongest one. */
  readonly bins: { readonly factor: string; readonly bins: FactorBin[] } | null
  /**
   * The runs behind `bins` as `[factor value, duration ms]`, in factor order, for a scatter plot: every run up
   * to {@link MAX_SCATTER_POINTS}, else that many spread evenly over the order (`of` says how many there were).
   */
  readonly points: {
    readonly factor: string
    readonly of: number
    readonly points: [number, number][]
  } | null
}

/** Most points `correlate` returns for a scatter plot. */
export const MAX_SCATTER_POINTS = 1000

function spread(pairs: readonly [number, number][], max: number): [number, number][] {
  const sorted = [...pairs].sort((a, b) => a[0] - b[0] || a[1] - b[1])
  if (sorted.length <= max) return sorted
  // Evenly over the factor order, first and last kept: the shape of the cloud survives the thinning.
  return Array.from({ length: max }, (_, i) => sorted[Math.round((i * (sorted.length - 1)) / (max - 1))]!)
}

/** `correlate`: Spearman correlation of executed durations of one node type with factors, and duration by bins. */
export async function correlate(
  store: AnalysisStore,
  filter: AnalysisFilter & { readonly nodeType: string },
  factor?: string,
  binCount = 5,
): Promise<CorrelateReport> {
  const facts = (await loadFacts(store, filter)).filter(
    (f) => f.run.status === 'success' && f.run.duration_ms !== null,
  )
  let names: string[]
  if (factor !== undefined) names = [factor]
  else {
    const inputNames = new Set<string>()
    for (const f of facts)
      for (const [k, v] of Object.entries(f.run.inputs)) if (asNumber(v) !== null) inputNames.add(k)
    names = [...new Set<string>([...BUILTIN_FACTORS, ...[...inputNames].sort()])]
  }
  const pairs = new Map<string, [number, number][]>()
  const results: FactorCorrelation[] = []
  for (const name of names) {
    const list: [number, number][] = []
    for (const f of facts) {
      const x = factorValue(f, name)
      if (x !== null) list.push([x, f.run.duration_ms as number])
    }
    pairs.set(name, list)
    if (list.length === 0 && factor === undefined) continue
    const rho = spearman(
      list.map((p) => p[0]),
      list.map((p) => p[1]),
    )
    results.push({
      factor: name,
      n: list.length,
      rho: round(rho, 4),
      p_value: rho === null ? null : Number(spearmanPValue(rho, list.length).toPrecision(3)),
    })
  }
  results.sort((a, b) => Math.abs(b.rho ?? 0) - Math.abs(a.rho ?? 0) || a.factor.localeCompare(b.factor))
  const binFactor = factor ?? results.find((r) => r.rho !== null)?.factor
  const bins =
    binFactor === undefined ? null : { factor: binFactor, bins: binsOf(pairs.get(binFactor) ?? [], binCount) }
  const all = binFactor === undefined ? [] : (pairs.get(binFactor) ?? [])
  const points =
    binFactor === undefined
      ? null
      : { factor: binFactor, of: all.length, points: spread(all, MAX_SCATTER_POINTS) }
  return { window: windowOf(filter), node_type: filter.nodeType, factors: results, bins, points }
}

/** Equal-count bins by factor value; runs with the same factor value stay in one bin. */
function binsOf(pairs: readonly [number, number][], count: number): FactorBin[] {
  const sorted = [...pairs].sort((a, b) => a[0] - b[0])
  const out: FactorBin[] = []
  const size = Math.max(1, Math.ceil(sorted.length / count))
  let i = 0
  while (i < sorted.length) {
    let j = Math.min(sorted.length, i + size)
    while (j < sorted.length && sorted[j]![0] === sorted[j - 1]![0]) j++
    const slice = sorted.slice(i, j)
    const d = sortedNumbers(slice.map((p) => p[1]))
    out.push({
      from: round(slice[0]![0], 4) as number,
      to: round(slice[slice.length - 1]![0], 4) as number,
      n: slice.length,
      p50: round(quantile(d, 0.5)),
      p95: round(quantile(d, 0.95)),
    })
    i = j
  }
  return out
}

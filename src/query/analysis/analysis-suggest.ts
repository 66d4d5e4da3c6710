/** `suggest`: over a node type's successful runs, the distribution of each parameter and common combinations. */
import type { JsonObject, JsonValue } from '../../audit/types.js'
import {
  durations,
  loadFacts,
  round,
  windowOf,
  type AnalysisFilter,
  type AnalysisStore,
  type AnalysisWindow,
  type Fact,
} from './analysis-filter.js'
import { graphOf, isLinkValue, upstreamNumbers } from './analysis-graph.js'
import { quantile, sortedNumbers } from './statistics.js'

export interface NumberParameter {
  readonly name: string
  readonly kind: 'number'
  readonly n: number
  readonly p10: number | null
  readonly p50: number | null
  readonly p90: number | null
}

export interface ChoiceParameter {
  readonly name: string
  readonly kind: 'choice'
  readonly n: number
  readonly top: {
    value: JsonValue
    count: number
    share: number
    success_rate: number
    p50_duration_ms: number | null
  }[]
}

export interface SuggestReport {
  readonly window: AnalysisWindow
  readonly node_type: string
  readonly where: Record<string, string>
  readonly note: string
  /** Runs matching `where` (any status) and the successful ones the distributions are over. */
  readonly runs: number
  readonly n: number
  readonly parameters: (NumberParameter | ChoiceParameter)[]
  readonly combinations: {
    values: JsonObject
    count: number
    share: number
    p50_duration_ms: number | null
  }[]
}

/** Inputs that identify a run rather than describe a setting. */
const SKIPPED_PARAMETERS = new Set(['seed', 'noise_seed', 'text', 'filename_prefix'])

function contextValue(fact: Fact, name: string): JsonValue | undefined {
  const own = fact.run.inputs[name]
  if (own !== undefined && !isLinkValue(own)) return own
  if (name === 'width' || name === 'height' || name === 'batch_size' || name === 'steps') {
    const graph = graphOf(fact.session)
    if (graph) return upstreamNumbers(graph, fact.run.node_id, [name])?.[0]
  }
  return undefined
}

function valueMatches(actual: JsonValue | undefined, wanted: string): boolean {
  if (actual === undefined || actual === null) return false
  if (typeof actual === 'number') return Number(wanted) === actual
  return String(actual) === wanted
}

/** `suggest`: over successful runs of a node type (matching `where`), the distribution of each parameter. */
export async function suggest(
  store: AnalysisStore,
  filter: AnalysisFilter & { readonly nodeType: string },
  where: Record<string, string> = {},
  top = 5,
): Promise<SuggestReport> {
  const matching = (await loadFacts(store, filter)).filter(
    (f) =>
      f.run.status !== 'cached' &&
      Object.entries(where).every(([k, v]) => valueMatches(contextValue(f, k), v)),
  )
  const ok = matching.filter((f) => f.run.status === 'success')
  const names = new Set<string>()
  for (const f of matching) {
    for (const [k, v] of Object.entries(f.run.inputs))
      if (!isLinkValue(v) && !SKIPPED_PARAMETERS.has(k)) names.add(k)
  }
  const parameters: (NumberParameter | ChoiceParameter)[] = []
  const choiceNames: string[] = []
  for (const name of [...names].sort()) {
    const values = ok.map((f) => f.run.inputs[name]).filter((v) => v !== undefined)
    const numeric = values.length > 0 && values.every((v) => typeof v === 'number')
    const distinct = new Set(values.map((v) => JSON.stringify(v))).size
    // A number with few distinct values (steps, cfg) reads better as choices too; both views are useful.
    if (numeric && distinct > top) {
      const s = sortedNumbers(values as number[])
      parameters.push({
        name,
        kind: 'number',
        n: s.length,
        p10: round(quantile(s, 0.1)),
        p50: round(quantile(s, 0.5)),
        p90: round(quantile(s, 0.9)),
      })
      continue
    }
    choiceNames.push(name)
    const groups = new Map<string, { value: JsonValue; ok: Fact[]; all: number }>()
    for (const f of matching) {
      const v = f.run.inputs[name]
      if (v === undefined) continue
      const k = JSON.stringify(v)
      let g = groups.get(k)
      if (!g) groups.set(k, (g = { value: v, ok: [], all: 0 }))
      g.all++
      if (f.run.status === 'success') g.ok.push(f)
    }
    const list = [...groups.values()]
      .filter((g) => g.ok.length > 0)
      .sort(
        (a, b) => b.ok.length - a.ok.length || JSON.stringify(a.value).localeCompare(JSON.stringify(b.value)),
      )
      .slice(0, top)
      .map((g) => ({
        value: g.value,
        count: g.ok.length,
        share: round(g.ok.length / Math.max(1, ok.length), 4) as number,
        success_rate: round(g.ok.length / g.all, 4) as number,
        p50_duration_ms: round(quantile(sortedNumbers(durations(g.ok)), 0.5)),
      }))
    parameters.push({ name, kind: 'choice', n: values.length, top: list })
  }
  const combos = new Map<string, { values: JsonObject; runs: Fact[] }>()
  for (const f of ok) {
    const values: JsonObject = {}
    for (const name of choiceNames) values[name] = f.run.inputs[name] ?? null
    const k = JSON.stringify(values)
    let c = combos.get(k)
    if (!c) combos.set(k, (c = { values, runs: [] }))
    c.runs.push(f)
  }
  const combinations = [...combos.values()]
    .sort(
      (a, b) =>
        b.runs.length - a.runs.length || JSON.stringify(a.values).localeCompare(JSON.stringify(b.values)),
    )
    .slice(0, top)
    .map((c) => ({
      values: c.values,
      count: c.runs.length,
      share: round(c.runs.length / Math.max(1, ok.length), 4) as number,
      p50_duration_ms: round(quantile(sortedNumbers(durations(c.runs)), 0.5)),
    }))
  return {
    window: windowOf(filter),
    node_type: filter.nodeType,
    where,
    note: `statistics of ${ok.length} past successful runs, not a recommendation`,
    runs: matching.length,
    n: ok.length,
    parameters,
    combinations,
  }
}

/** `diff`: two sessions side by side (graph, models, seeds, per-node timing), and a workflow's last sessions. */
import type { JsonValue, SessionRecord } from '../../audit/types.js'
import type { NodeRunRow } from '../../store/store.js'
import {
  isObject,
  sessionMatches,
  sessionSqlFilter,
  type AnalysisFilter,
  type AnalysisStore,
} from './analysis-filter.js'
import { graphOf, isLinkValue } from './analysis-graph.js'

export interface DiffReport {
  readonly a: {
    readonly session_id: string
    readonly origin: string
    readonly status: string
    readonly queued_at: string | null
  }
  readonly b: {
    readonly session_id: string
    readonly origin: string
    readonly status: string
    readonly queued_at: string | null
  }
  readonly nodes_added: { node_id: string; node_type: string | null }[]
  readonly nodes_removed: { node_id: string; node_type: string | null }[]
  /** Links are shown as `{node, output}`. */
  readonly inputs_changed: {
    node_id: string
    node_type: string | null
    input: string
    before: JsonValue
    after: JsonValue
  }[]
  readonly models_changed: {
    node_id: string
    input_name: string
    folder: string
    before: { name: string; sha256: string | null } | null
    after: { name: string; sha256: string | null } | null
  }[]
  readonly seeds_changed: { node_id: string; input_name: string; before: JsonValue; after: JsonValue }[]
  readonly timing: {
    node_id: string
    node_type: string | null
    a: { status: string; duration_ms: number | null } | null
    b: { status: string; duration_ms: number | null } | null
    delta_ms: number | null
  }[]
  readonly total_delta_ms: number | null
}

function shownInput(v: JsonValue | undefined): JsonValue {
  if (v === undefined) return null
  return isLinkValue(v) ? { node: v[0], output: v[1] } : v
}

function sameJson(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  return (
    JSON.stringify(a, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ===
    JSON.stringify(b, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))
  )
}

/** `diff A B`: what differs between two sessions' graphs, models, seeds and per-node timing. */
export async function diffSessions(
  store: AnalysisStore,
  a: SessionRecord,
  b: SessionRecord,
): Promise<DiffReport> {
  const [runsA, runsB] = await Promise.all([
    store.nodeRuns({ sessionId: a.session_id, origin: a.origin }),
    store.nodeRuns({ sessionId: b.session_id, origin: b.origin }),
  ])
  const ga = graphOf(a) ?? {}
  const gb = graphOf(b) ?? {}
  const seedKeys = new Set([...a.seeds, ...b.seeds].map((s) => `${s.node_id}\u0000${s.input_name}`))
  const modelKeys = new Set([...a.models, ...b.models].map((m) => `${m.node_id}\u0000${m.input_name}`))
  const ids = [...new Set([...Object.keys(ga), ...Object.keys(gb)])].sort(compareNodeIds)
  const nodes_added: DiffReport['nodes_added'] = []
  const nodes_removed: DiffReport['nodes_removed'] = []
  const inputs_changed: DiffReport['inputs_changed'] = []
  for (const id of ids) {
    const na = ga[id]
    const nb = gb[id]
    if (!na && nb) nodes_added.push({ node_id: id, node_type: nb.class_type ?? null })
    else if (na && !nb) nodes_removed.push({ node_id: id, node_type: na.class_type ?? null })
    else if (na && nb) {
      const ia = isObject(na.inputs) ? na.inputs : {}
      const ib = isObject(nb.inputs) ? nb.inputs : {}
      for (const input of [...new Set([...Object.keys(ia), ...Object.keys(ib)])].sort()) {
        const k = `${id}\u0000${input}`
        // Seeds and models have their own sections.
        if (seedKeys.has(k) || modelKeys.has(k)) continue
        if (!sameJson(ia[input], ib[input])) {
          inputs_changed.push({
            node_id: id,
            node_type: nb.class_type ?? na.class_type ?? null,
            input,
            before: shownInput(ia[input]),
            after: shownInput(ib[input]),
          })
        }
      }
    }
  }
  const models_changed: DiffReport['models_changed'] = []
  for (const k of [...modelKeys].sort()) {
    const ma = a.models.find((m) => `${m.node_id}\u0000${m.input_name}` === k)
    const mb = b.models.find((m) => `${m.node_id}\u0000${m.input_name}` === k)
    if (ma && mb && ma.name === mb.name && (ma.sha256 ?? null) === (mb.sha256 ?? null)) continue
    const m = (mb ?? ma)!
    models_changed.push({
      node_id: m.node_id,
      input_name: m.input_name,
      folder: m.folder,
      before: ma ? { name: ma.name, sha256: ma.sha256 ?? null } : null,
      after: mb ? { name: mb.name, sha256: mb.sha256 ?? null } : null,
    })
  }
  const seeds_changed: DiffReport['seeds_changed'] = []
  for (const k of [...seedKeys].sort()) {
    const sa = a.seeds.find((s) => `${s.node_id}\u0000${s.input_name}` === k)
    const sb = b.seeds.find((s) => `${s.node_id}\u0000${s.input_name}` === k)
    if (sa && sb && sameJson(sa.value, sb.value)) continue
    const s = (sb ?? sa)!
    seeds_changed.push({
      node_id: s.node_id,
      input_name: s.input_name,
      before: sa?.value ?? null,
      after: sb?.value ?? null,
    })
  }
  const byId = (runs: NodeRunRow[]): Map<string, NodeRunRow> => new Map(runs.map((r) => [r.node_id, r]))
  const ra = byId(runsA)
  const rb = byId(runsB)
  const timing: DiffReport['timing'] = []
  for (const id of [...new Set([...ra.keys(), ...rb.keys()])].sort(compareNodeIds)) {
    const x = ra.get(id)
    const y = rb.get(id)
    timing.push({
      node_id: id,
      node_type: y?.node_type ?? x?.node_type ?? null,
      a: x ? { status: x.status, duration_ms: x.duration_ms } : null,
      b: y ? { status: y.status, duration_ms: y.duration_ms } : null,
      delta_ms: x?.duration_ms != null && y?.duration_ms != null ? y.duration_ms - x.duration_ms : null,
    })
  }
  const brief = (s: SessionRecord): DiffReport['a'] => ({
    session_id: s.session_id,
    origin: s.origin,
    status: s.status,
    queued_at: s.queued_at,
  })
  return {
    a: brief(a),
    b: brief(b),
    nodes_added,
    nodes_removed,
    inputs_changed,
    models_changed,
    seeds_changed,
    timing,
    total_delta_ms: a.duration_ms !== null && b.duration_ms !== null ? b.duration_ms - a.duration_ms : null,
  }
}

function compareNodeIds(a: string, b: string): number {
  const na = Number(a)
  const nb = Number(b)
  if (Number.isInteger(na) && Number.isInteger(nb)) return na - nb
  return a.localeCompare(b)
}

/** The last `count` sessions of a workflow (by queue time, oldest first), within the filter. */
export async function lastOfWorkflow(
  store: AnalysisStore,
  filter: AnalysisFilter & { readonly workflow: string },
  count: number,
): Promise<SessionRecord[]> {
  const sessions = (
    await store.sessions({
      ...(filter.since !== undefined ? { since: filter.since } : {}),
      ...(filter.until !== undefined ? { until: filter.until } : {}),
      ...sessionSqlFilter(filter),
      // The model filter is matched here, after the read; without it the index gives the newest directly.
      ...(filter.model === undefined ? { limit: count } : {}),
    })
  ).filter((s) => sessionMatches(s, filter))
  // store.sessions is newest first.
  return sessions.slice(0, count).reverse()
}

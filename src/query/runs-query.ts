/**
 * The dashboard's run table: the sessions that match a filter, sorted and paged, with counts per filter value
 * (facets). Every facet is counted over the sessions that match all the *other* filters, so a count says how
 * many rows picking that value would give. Pure: the HTTP route loads the sessions, this shapes the answer.
 */
import { SESSION_STATUSES, type JsonValue, type SessionRecord, type SessionStatus } from '../audit/types.js'
import { parseTimeSpec } from '../config/duration.js'
import { workflowId } from './analysis/analysis.js'

/** Columns the run table sorts by. */
const RUN_SORT_KEYS = ['queued_at', 'duration_ms', 'status', 'user', 'nodes'] as const
type RunSortKey = (typeof RUN_SORT_KEYS)[number]

/** Filters that get counts per value. */
const RUN_FACETS = ['user', 'status', 'node_type', 'model', 'workflow'] as const
export type RunFacet = (typeof RUN_FACETS)[number]

/** Largest page of runs one request returns. */
const MAX_RUNS_PAGE = 500

/**
 * A question to the run table (HTTP parameters of `GET /_audit/api/runs`, parsed). The person filter is the
 * `person` parameter; `user` is a scope the route applies before anything is counted (the access policy sets
 * it for an artist), so facets never count other people's runs for someone who may not see them.
 */
export interface RunsQuery {
  /** `person`: the submitter. */
  readonly user?: string
  readonly status?: readonly SessionStatus[]
  /** ISO time, inclusive, on the queue time. */
  readonly since?: string
  /** ISO time, exclusive. */
  readonly until?: string
  /** A node type (`class_type`) the prompt holds. */
  readonly nodeType?: string
  /** A model's name, SHA-256 or AutoV2 short hash. */
  readonly model?: string
  /** The UI workflow's id. */
  readonly workflow?: string
  /** Case-insensitive text anywhere in the prompt's string inputs or the session id. */
  readonly text?: string
  readonly sort: RunSortKey
  readonly order: 'asc' | 'desc'
  readonly limit: number
  readonly offset: number
}

/** One row of the run table. */
interface RunRow {
  readonly session_id: string
  readonly origin: string
  readonly status: SessionStatus
  readonly user: string | null
  readonly queued_at: string | null
  readonly started_at: string | null
  readonly ended_at: string | null
  readonly duration_ms: number | null
  readonly workflow: string | null
  /** Nodes in the prompt. */
  readonly nodes: number
  readonly node_types: string[]
  /** Model names as the prompt gives them. */
  readonly models: string[]
  /** The failing node's exception message (first line), or why the prompt was refused. */
  readonly error: string | null
  readonly flags: string[]
}

/** One value of a facet and how many sessions have it (within the other filters). */
export interface FacetCount {
  readonly value: string
  readonly count: number
}

/** The answer of `GET /_audit/api/runs`. */
export interface RunsPage {
  /** Sessions matching every filter (before paging). */
  readonly total: number
  readonly offset: number
  readonly limit: number
  readonly runs: RunRow[]
  readonly facets: Record<RunFacet, FacetCount[]>
}

type RunsQueryResult = { ok: true; value: RunsQuery } | { ok: false; reason: string }

/** Reads `GET /_audit/api/runs` parameters; the first bad one is named in the reason. */
export function parseRunsQuery(params: URLSearchParams, now: Date = new Date()): RunsQueryResult {
  const q: { -readonly [K in keyof RunsQuery]: RunsQuery[K] } = {
    sort: 'queued_at',
    order: 'desc',
    limit: 50,
    offset: 0,
  }
  for (const key of ['since', 'until'] as const) {
    const v = params.get(key)
    if (v === null || v === '') continue
    const t = parseTimeSpec(v, now)
    if (!t.ok) return { ok: false, reason: `${key}: ${t.reason}` }
    q[key] = t.value.toISOString()
  }
  const status = params.get('status')
  if (status !== null && status !== '') {
    const list = status.split(',')
    const unknown = list.find((s) => !(SESSION_STATUSES as readonly string[]).includes(s))
    if (unknown !== undefined) {
      return {
        ok: false,
        reason: `status: unknown status ${JSON.stringify(unknown)} (one of ${SESSION_STATUSES.join(', ')})`,
      }
    }
    q.status = list as SessionStatus[]
  }
  for (const [param, field] of [
    ['person', 'user'],
    ['node_type', 'nodeType'],
    ['model', 'model'],
    ['workflow', 'workflow'],
    ['q', 'text'],
  ] as const) {
    const v = params.get(param)
    if (v !== null && v.trim() !== '') q[field] = v.trim()
  }
  const sort = params.get('sort')
  if (sort !== null) {
    if (!(RUN_SORT_KEYS as readonly string[]).includes(sort))
      return { ok: false, reason: `sort: ${JSON.stringify(sort)} is not one of ${RUN_SORT_KEYS.join(', ')}` }
    q.sort = sort as RunSortKey
  }
  const order = params.get('order')
  if (order !== null) {
    if (order !== 'asc' && order !== 'desc')
      return { ok: false, reason: `order: expected asc or desc, got ${JSON.stringify(order)}` }
    q.order = order
  }
  for (const [key, min, max] of [
    ['limit', 1, MAX_RUNS_PAGE],
    ['offset', 0, Number.MAX_SAFE_INTEGER],
  ] as const) {
    const v = params.get(key)
    if (v === null) continue
    // Number('') is 0 and Number('1e2') is 100: only plain digits are a count.
    const n = /^\d+$/.test(v) ? Number(v) : NaN
    if (!Number.isSafeInteger(n) || n < min || n > max)
      return { ok: false, reason: `${key}: expected ${min}..${max}, got ${JSON.stringify(v)}` }
    q[key] = n
  }
  return { ok: true, value: q }
}

function isObject(v: JsonValue | null | undefined): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The prompt's nodes as `[node id, class_type, inputs]`. */
function promptNodes(prompt: JsonValue | null): [string, string, Record<string, JsonValue>][] {
  if (!isObject(prompt)) return []
  const out: [string, string, Record<string, JsonValue>][] = []
  for (const [id, node] of Object.entries(prompt)) {
    if (!isObject(node) || typeof node.class_type !== 'string') continue
    out.push([id, node.class_type, isObject(node.inputs) ? node.inputs : {}])
  }
  return out
}

/** What the table and the filters need of one session, worked out once. */
interface Indexed {
  readonly session: SessionRecord
  readonly row: RunRow
  /** Lower-cased prompt strings and the session id, for the text search. */
  readonly haystack: string
  /** Names, SHA-256s and AutoV2 hashes, lower-cased. */
  readonly modelKeys: ReadonlySet<string>
}

function errorLine(s: SessionRecord): string | null {
  if (isObject(s.error)) {
    const msg = s.error.exception_message ?? s.error.exception_type
    if (typeof msg === 'string' && msg.trim() !== '') return msg.trim().split('\n')[0]!
  }
  if (s.status === 'rejected' && isObject(s.validation) && isObject(s.validation.error)) {
    const m = s.validation.error.message ?? s.validation.error.type
    if (typeof m === 'string') return m
  }
  return s.status_reason
}

function index(s: SessionRecord): Indexed {
  const nodes = promptNodes(s.prompt)
  const texts: string[] = [s.session_id]
  for (const [, , inputs] of nodes) {
    for (const v of Object.values(inputs)) if (typeof v === 'string') texts.push(v)
  }
  const modelKeys = new Set<string>()
  for (const m of s.models) {
    modelKeys.add(m.name.toLowerCase())
    if (m.sha256) modelKeys.add(m.sha256.toLowerCase())
    if (m.autov2) modelKeys.add(m.autov2.toLowerCase())
  }
  return {
    session: s,
    haystack: texts.join('\n').toLowerCase(),
    modelKeys,
    row: {
      session_id: s.session_id,
      origin: s.origin,
      status: s.status,
      user: s.submitter?.user ?? null,
      queued_at: s.queued_at,
      started_at: s.started_at,
      ended_at: s.ended_at,
      duration_ms: s.duration_ms,
      workflow: workflowId(s),
      nodes: nodes.length,
      node_types: [...new Set(nodes.map(([, type]) => type))].sort(),
      models: [...new Set(s.models.map((m) => m.name))].sort(),
      error: errorLine(s),
      flags: [...s.flags],
    },
  }
}

type Test = (x: Indexed) => boolean

function tests(q: RunsQuery): Partial<Record<RunFacet | 'time' | 'text', Test>> {
  const t: Partial<Record<RunFacet | 'time' | 'text', Test>> = {}
  if (q.user !== undefined) t.user = (x) => x.row.user === q.user
  if (q.status !== undefined) {
    const set = new Set<string>(q.status)
    t.status = (x) => set.has(x.row.status)
  }
  if (q.nodeType !== undefined) t.node_type = (x) => x.row.node_types.includes(q.nodeType!)
  if (q.model !== undefined) {
    const m = q.model.toLowerCase()
    t.model = (x) => x.modelKeys.has(m)
  }
  if (q.workflow !== undefined) t.workflow = (x) => x.row.workflow === q.workflow
  if (q.since !== undefined || q.until !== undefined) {
    t.time = (x) => {
      const at = x.row.queued_at
      if (at === null) return false
      const ms = Date.parse(at)
      return (
        (q.since === undefined || ms >= Date.parse(q.since)) &&
        (q.until === undefined || ms < Date.parse(q.until))
      )
    }
  }
  if (q.text !== undefined) {
    const needle = q.text.toLowerCase()
    t.text = (x) => x.haystack.includes(needle)
  }
  return t
}

function facetValues(x: Indexed, facet: RunFacet): string[] {
  switch (facet) {
    case 'user':
      return x.row.user === null ? [] : [x.row.user]
    case 'status':
      return [x.row.status]
    case 'node_type':
      return x.row.node_types
    case 'model':
      return x.row.models
    case 'workflow':
      return x.row.workflow === null ? [] : [x.row.workflow]
  }
}

function sortValue(r: RunRow, key: RunSortKey): string | number | null {
  return r[key]
}

function compareValues(av: string | number | null, bv: string | number | null): number {
  return typeof av === 'number' && typeof bv === 'number' ? av - bv : String(av).localeCompare(String(bv))
}

/**
 * Filters, counts, sorts and pages sessions for the run table.
 *
 * @example
 * const q = parseRunsQuery(new URLSearchParams('status=failed&sort=duration_ms'))
 * if (q.ok) send(queryRuns(await store.sessions({ limit: 10_000 }), q.value))
 */
export function queryRuns(sessions: readonly SessionRecord[], q: RunsQuery): RunsPage {
  const all = sessions.map(index)
  const active = tests(q)
  const entries = Object.entries(active) as [RunFacet | 'time' | 'text', Test][]
  const passesExcept = (x: Indexed, skip: string | null): boolean =>
    entries.every(([name, test]) => name === skip || test(x))
  const facets = {} as Record<RunFacet, FacetCount[]>
  for (const facet of RUN_FACETS) {
    const counts = new Map<string, number>()
    for (const x of all) {
      if (!passesExcept(x, facet)) continue
      for (const v of facetValues(x, facet)) counts.set(v, (counts.get(v) ?? 0) + 1)
    }
    facets[facet] = [...counts]
      .map(([value, count]) => ({ value, count }))
      .sort((a, b) => b.count - a.count || a.value.localeCompare(b.value))
  }
  const matching = all.filter((x) => passesExcept(x, null)).map((x) => x.row)
  const sign = q.order === 'asc' ? 1 : -1
  matching.sort((a, b) => {
    const av = sortValue(a, q.sort)
    const bv = sortValue(b, q.sort)
    // Missing values sort last in either order, so an open run never hides the finished ones.
    if (av !== null && bv === null) return -1
    if (av === null && bv !== null) return 1
    const c = av === null || bv === null ? 0 : compareValues(av, bv) * sign
    // Ties keep a stable order: newest first, then by id.
    return (
      c || compareValues(b.queued_at ?? '', a.queued_at ?? '') || a.session_id.localeCompare(b.session_id)
    )
  })
  return {
    total: matching.length,
    offset: q.offset,
    limit: q.limit,
    runs: matching.slice(q.offset, q.offset + q.limit),
    facets,
  }
}

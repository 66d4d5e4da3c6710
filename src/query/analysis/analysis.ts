/**
 * Answers over the whole history: stats, usage, trends, regressions, correlate, diff and suggest. Each reads
 * sessions and node runs through the store's query API (any dialect) and returns plain JSON-ready objects,
 * so the CLI's `--json` and the HTTP API give the same answer.
 *
 * Session filters (`user`, `status`, `origin`, `model`, `workflow`) apply to a node run through its session;
 * `since`/`until` apply to a node run's `timestamp_start` and to a session's `queued_at` (inclusive / exclusive).
 */
import type { JsonObject, JsonValue, NodeRunRecord, SessionRecord, SessionStatus } from '../../audit/types.js'
import type { RuntimeStore } from '../../store/runtime-store.js'
import type { NodeRunRow } from '../../store/store.js'
import { LogSketch } from '../../store/log-sketch.js'
import {
  mannWhitneyGreater,
  mannWhitneyGreaterGrouped,
  mean,
  quantile,
  sortedNumbers,
  spearman,
  spearmanPValue,
} from './statistics.js'

/** The store calls analysis needs (`rollups` optional: without it every answer reads raw rows). */
export type AnalysisStore = Pick<RuntimeStore, 'sessions' | 'session' | 'nodeRuns'> &
  Partial<Pick<RuntimeStore, 'rollups' | 'workflowRollups' | 'usageRollups'>>

/** Windows longer than this (or open-ended ones) read rollups where the question allows. */
export const ROLLUP_MIN_WINDOW_MILLIS = 6 * 3_600_000

const HOUR = 3_600_000

/** Where an answer's numbers came from: exact raw rows, or hourly rollups (percentiles within 1%). */
export type AnswerSource = 'node_runs' | 'rollups'

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

/**
 * Rollup rows of the window merged per group, with the runs of partial edge hours (before the first whole hour
 * and after the last) read from node_runs and added exactly; undefined when the question needs raw rows
 * (session filters, a person or model grouping, a short window, or a store without rollups).
 */
async function fromRollups(
  store: AnalysisStore,
  filter: AnalysisFilter,
  groupOf: (origin: string, nodeType: string | null, hour: string) => Record<string, string | null>,
  now: number,
): Promise<Map<string, Bucketed> | undefined> {
  if (!store.rollups || hasSessionFilter(filter)) return undefined
  const since = filter.since === undefined ? undefined : Date.parse(filter.since)
  const until = filter.until === undefined ? undefined : Date.parse(filter.until)
  if (since !== undefined && (until ?? now) - since < ROLLUP_MIN_WINDOW_MILLIS) return undefined
  const firstWhole = since === undefined ? undefined : Math.ceil(since / HOUR) * HOUR
  const lastWhole = until === undefined ? undefined : Math.floor(until / HOUR) * HOUR
  const iso = (ms: number): string => new Date(ms).toISOString()
  const rows = await store.rollups({
    ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
    ...(filter.nodeType !== undefined ? { nodeType: filter.nodeType } : {}),
    ...(firstWhole !== undefined ? { since: iso(firstWhole) } : {}),
    ...(lastWhole !== undefined ? { until: iso(lastWhole) } : {}),
  })
  const edges: NodeRunRow[] = []
  const raw = (from: string, to: string): Promise<NodeRunRow[]> =>
    store.nodeRuns({
      since: from,
      until: to,
      ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
      ...(filter.nodeType !== undefined ? { nodeType: filter.nodeType } : {}),
    })
  if (since !== undefined && firstWhole !== since)
    edges.push(...(await raw(iso(since), iso(Math.min(firstWhole!, until ?? Infinity)))))
  if (until !== undefined && lastWhole !== until && (since === undefined || lastWhole! >= firstWhole!)) {
    edges.push(...(await raw(iso(Math.max(lastWhole!, since ?? -Infinity)), iso(until))))
  }
  const groups = new Map<string, Bucketed>()
  const entry = (key: Record<string, string | null>): Bucketed => {
    const k = JSON.stringify(key)
    let g = groups.get(k)
    if (!g) {
      g = {
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
      groups.set(k, g)
    }
    return g
  }
  const maxOf = (a: number | null, b: number | null): number | null =>
    a === null ? b : b === null ? a : Math.max(a, b)
  for (const r of rows) {
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
  for (const run of edges) {
    const hour = new Date(Math.floor(Date.parse(run.timestamp_start) / HOUR) * HOUR).toISOString()
    const g = entry(groupOf(run.origin, run.node_type, hour))
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
  return groups
}

function bucketedStats(g: Bucketed): Omit<StatsGroup, 'key'> {
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

/** Filters every analysis takes. */
export interface AnalysisFilter {
  /** ISO time, inclusive. */
  readonly since?: string
  /** ISO time, exclusive. */
  readonly until?: string
  readonly nodeType?: string
  readonly user?: string
  readonly origin?: string
  /** Session statuses. */
  readonly status?: readonly SessionStatus[]
  /** A model's SHA-256, AutoV2 short hash or name (as the prompt gives it). */
  readonly model?: string
  /** The UI workflow's `id`. */
  readonly workflow?: string
}

/** The window an answer covers, as given (null when open). */
export interface AnalysisWindow {
  readonly since: string | null
  readonly until: string | null
}

/** A node run with its session (undefined when the session row is missing). */
interface Fact {
  readonly run: NodeRunRow
  readonly session: SessionRecord | undefined
}

function isObject(value: JsonValue | undefined | null): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The UI workflow's id of a session, or null. */
export function workflowId(session: SessionRecord | undefined): string | null {
  const w = session?.workflow
  return isObject(w) && typeof w.id === 'string' ? w.id : null
}

function sessionKey(origin: string, id: string): string {
  return `${origin}\u0000${id}`
}

function sessionMatches(s: SessionRecord | undefined, f: AnalysisFilter): boolean {
  if (f.user !== undefined && s?.submitter?.user !== f.user) return false
  if (f.origin !== undefined && s?.origin !== f.origin) return false
  if (f.status !== undefined && (s === undefined || !f.status.includes(s.status))) return false
  if (f.workflow !== undefined && workflowId(s) !== f.workflow) return false
  if (f.model !== undefined) {
    const m = f.model.toLowerCase()
    const found = (s?.models ?? []).some(
      (x) => x.name.toLowerCase() === m || x.sha256?.toLowerCase() === m || x.autov2?.toLowerCase() === m,
    )
    if (!found) return false
  }
  return true
}

function hasSessionFilter(f: AnalysisFilter): boolean {
  return (
    f.user !== undefined ||
    f.origin !== undefined ||
    f.status !== undefined ||
    f.model !== undefined ||
    f.workflow !== undefined
  )
}

/** The SQL-side part of the session filters (the model filter is matched in code). */
function sessionSqlFilter(f: AnalysisFilter): {
  origin?: string
  user?: string
  status?: readonly SessionStatus[]
  workflow?: string
} {
  return {
    ...(f.origin !== undefined ? { origin: f.origin } : {}),
    ...(f.user !== undefined ? { user: f.user } : {}),
    ...(f.status !== undefined ? { status: f.status } : {}),
    ...(f.workflow !== undefined ? { workflow: f.workflow } : {}),
  }
}

/** Session ids per lookup: well under SQLite's and PostgreSQL's parameter limits. */
const SESSION_LOOKUP_CHUNK = 1000

/**
 * The sessions of these node runs that pass the filter's SQL-side part, by primary key: only the sessions an
 * answer needs are read, not every session of the history.
 */
async function sessionsOf(
  store: AnalysisStore,
  runs: readonly NodeRunRow[],
  f: AnalysisFilter,
): Promise<Map<string, SessionRecord>> {
  const ids = new Map<string, Set<string>>()
  for (const run of runs) {
    let set = ids.get(run.origin)
    if (!set) ids.set(run.origin, (set = new Set()))
    set.add(run.session_id)
  }
  const map = new Map<string, SessionRecord>()
  for (const [origin, set] of ids) {
    const list = [...set]
    for (let i = 0; i < list.length; i += SESSION_LOOKUP_CHUNK) {
      const chunk = list.slice(i, i + SESSION_LOOKUP_CHUNK)
      for (const s of await store.sessions({ ...sessionSqlFilter(f), origin, sessionIds: chunk }))
        map.set(sessionKey(s.origin, s.session_id), s)
    }
  }
  return map
}

/** Node runs in the window with their sessions, filtered. */
async function loadFacts(store: AnalysisStore, f: AnalysisFilter): Promise<Fact[]> {
  const runs = await store.nodeRuns({
    ...(f.since !== undefined ? { since: f.since } : {}),
    ...(f.until !== undefined ? { until: f.until } : {}),
    ...(f.nodeType !== undefined ? { nodeType: f.nodeType } : {}),
    ...(f.origin !== undefined ? { origin: f.origin } : {}),
    ...(f.workflow !== undefined ? { workflow: f.workflow } : {}),
  })
  const sessions = await sessionsOf(store, runs, f)
  const filtered = hasSessionFilter(f)
  const facts: Fact[] = []
  for (const run of runs) {
    const session = sessions.get(sessionKey(run.origin, run.session_id))
    if (filtered && (session === undefined || !sessionMatches(session, f))) continue
    facts.push({ run, session })
  }
  return facts
}

function executed(run: NodeRunRecord): boolean {
  return run.status !== 'cached'
}

/** Durations of executed runs that have one. */
function durations(facts: readonly Fact[]): number[] {
  const out: number[] = []
  for (const { run } of facts) if (executed(run) && run.duration_ms !== null) out.push(run.duration_ms)
  return out
}

function round(value: number | null, digits = 3): number | null {
  if (value === null) return null
  const f = 10 ** digits
  return Math.round(value * f) / f
}

// ---------------------------------------------------------------------------------------------------------
// stats

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

function windowOf(f: AnalysisFilter): AnalysisWindow {
  return { since: f.since ?? null, until: f.until ?? null }
}

// ---------------------------------------------------------------------------------------------------------
// usage

export const USAGE_GROUPINGS = ['user', 'day', 'origin', 'model'] as const
export type UsageGrouping = (typeof USAGE_GROUPINGS)[number]

/** One group of `usage`. */
export interface UsageGroup {
  readonly key: Record<string, string | null>
  /** Sessions (prompts). */
  readonly runs: number
  readonly successes: number
  readonly errors: number
  /** Sum of executed node durations, in seconds. */
  readonly gpu_seconds: number
  readonly node_runs: number
  readonly outputs: number
}

export interface UsageReport {
  readonly window: AnalysisWindow
  readonly by: UsageGrouping
  /** `rollups` for long windows without node type, status, model or workflow filters, else `node_runs`. */
  readonly source: AnswerSource
  readonly groups: UsageGroup[]
}

type UsageSums = { -readonly [K in Exclude<keyof UsageGroup, 'key' | 'gpu_seconds'>]: number } & {
  gpuMs: number
}

/** Adds one session (or a rollup bucket of them) to its group. */
function addUsage(
  groups: Map<string, { key: Record<string, string | null>; g: UsageSums }>,
  key: Record<string, string | null>,
  add: UsageSums,
): void {
  const k = JSON.stringify(key)
  let entry = groups.get(k)
  if (!entry) {
    entry = { key, g: { runs: 0, successes: 0, errors: 0, gpuMs: 0, node_runs: 0, outputs: 0 } }
    groups.set(k, entry)
  }
  entry.g.runs += add.runs
  entry.g.successes += add.successes
  entry.g.errors += add.errors
  entry.g.gpuMs += add.gpuMs
  entry.g.node_runs += add.node_runs
  entry.g.outputs += add.outputs
}

function usageKeys(s: SessionRecord, by: UsageGrouping): Record<string, string | null>[] {
  if (by === 'user') return [{ user: s.submitter?.user ?? null }]
  if (by === 'day') return [{ day: s.queued_at?.slice(0, 10) ?? null }]
  if (by === 'origin') return [{ origin: s.origin }]
  if (s.models.length === 0) return [{ model: null, sha256: null }]
  return [...new Map(s.models.map((m) => [`${m.name}\u0000${m.sha256 ?? ''}`, m])).values()].map((m) => ({
    model: m.name,
    sha256: m.sha256 ?? null,
  }))
}

/** Adds the given sessions with their node runs (GPU-ms, counts) to the groups. */
function addSessions(
  groups: Map<string, { key: Record<string, string | null>; g: UsageSums }>,
  sessions: readonly SessionRecord[],
  runs: readonly NodeRunRow[],
  by: UsageGrouping,
): void {
  const perSession = new Map<string, { gpuMs: number; nodeRuns: number }>()
  for (const run of runs) {
    const k = sessionKey(run.origin, run.session_id)
    let p = perSession.get(k)
    if (!p) perSession.set(k, (p = { gpuMs: 0, nodeRuns: 0 }))
    p.nodeRuns++
    if (executed(run) && run.duration_ms !== null) p.gpuMs += run.duration_ms
  }
  for (const s of sessions) {
    const p = perSession.get(sessionKey(s.origin, s.session_id)) ?? { gpuMs: 0, nodeRuns: 0 }
    for (const key of usageKeys(s, by)) {
      addUsage(groups, key, {
        runs: 1,
        successes: s.status === 'success' ? 1 : 0,
        errors: s.status === 'error' ? 1 : 0,
        gpuMs: p.gpuMs,
        node_runs: p.nodeRuns,
        outputs: s.outputs.length,
      })
    }
  }
}

/** Sessions queued in [since, until) with all their node runs, read by key (for the partial edge hours). */
async function sessionsWithRuns(
  store: AnalysisStore,
  filter: AnalysisFilter,
  since: string,
  until: string,
): Promise<{ sessions: SessionRecord[]; runs: NodeRunRow[] }> {
  const sessions = await store.sessions({ ...sessionSqlFilter(filter), since, until })
  const runs: NodeRunRow[] = []
  const byOrigin = new Map<string, string[]>()
  for (const s of sessions) byOrigin.set(s.origin, [...(byOrigin.get(s.origin) ?? []), s.session_id])
  for (const [origin, ids] of byOrigin) {
    for (let i = 0; i < ids.length; i += SESSION_LOOKUP_CHUNK)
      runs.push(...(await store.nodeRuns({ origin, sessionIds: ids.slice(i, i + SESSION_LOOKUP_CHUNK) })))
  }
  return { sessions, runs }
}

/**
 * Usage from usage_rollups: whole hours of queue time from the rollups, the partial hours at the window's edges
 * from the sessions themselves. Undefined when the question needs raw rows (a node type, status, model or
 * workflow filter, grouping by model, a short window, or a store without these rollups).
 */
async function usageFromRollups(
  store: AnalysisStore,
  filter: AnalysisFilter,
  by: UsageGrouping,
  now: number,
): Promise<Map<string, { key: Record<string, string | null>; g: UsageSums }> | undefined> {
  if (!store.usageRollups || by === 'model') return undefined
  if (filter.nodeType !== undefined || filter.status !== undefined) return undefined
  if (filter.model !== undefined || filter.workflow !== undefined) return undefined
  const since = filter.since === undefined ? undefined : Date.parse(filter.since)
  const until = filter.until === undefined ? undefined : Date.parse(filter.until)
  if (since !== undefined && (until ?? now) - since < ROLLUP_MIN_WINDOW_MILLIS) return undefined
  const iso = (ms: number): string => new Date(ms).toISOString()
  const firstWhole = since === undefined ? undefined : Math.ceil(since / HOUR) * HOUR
  const lastWhole = until === undefined ? undefined : Math.floor(until / HOUR) * HOUR
  const groups = new Map<string, { key: Record<string, string | null>; g: UsageSums }>()
  const rows = await store.usageRollups({
    ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
    ...(filter.user !== undefined ? { user: filter.user } : {}),
    ...(firstWhole !== undefined ? { since: iso(firstWhole) } : {}),
    ...(lastWhole !== undefined ? { until: iso(lastWhole) } : {}),
  })
  for (const r of rows) {
    const key: Record<string, string | null> =
      by === 'user'
        ? { user: r.user === '' ? null : r.user }
        : by === 'day'
          ? { day: r.hour === '' ? null : r.hour.slice(0, 10) }
          : { origin: r.origin }
    addUsage(groups, key, {
      runs: r.sessions,
      successes: r.successes,
      errors: r.errors,
      gpuMs: r.gpu_ms,
      node_runs: r.node_runs,
      outputs: r.outputs,
    })
  }
  const edges: [number, number][] = []
  if (since !== undefined && firstWhole !== since)
    edges.push([since, Math.min(firstWhole!, until ?? Infinity)])
  if (until !== undefined && lastWhole !== until && (since === undefined || lastWhole! >= firstWhole!))
    edges.push([Math.max(lastWhole!, since ?? -Infinity), until])
  for (const [a, b] of edges) {
    const { sessions, runs } = await sessionsWithRuns(store, filter, iso(a), iso(b))
    addSessions(groups, sessions, runs, by)
  }
  return groups
}

/** `usage`: per person (or day, origin, model), prompts, successes, errors, GPU-seconds, node runs, outputs. */
export async function usage(
  store: AnalysisStore,
  filter: AnalysisFilter,
  by: UsageGrouping = 'user',
  options: { readonly exact?: boolean; readonly now?: Date } = {},
): Promise<UsageReport> {
  let groups = options.exact
    ? undefined
    : await usageFromRollups(store, filter, by, options.now?.getTime() ?? Date.now())
  const source: AnswerSource = groups ? 'rollups' : 'node_runs'
  if (!groups) {
    groups = new Map()
    const sessions = (
      await store.sessions({
        ...(filter.since !== undefined ? { since: filter.since } : {}),
        ...(filter.until !== undefined ? { until: filter.until } : {}),
        ...sessionSqlFilter(filter),
      })
    ).filter((s) => sessionMatches(s, filter))
    const runs = await store.nodeRuns({
      ...(filter.since !== undefined ? { since: filter.since } : {}),
      ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
      ...(filter.nodeType !== undefined ? { nodeType: filter.nodeType } : {}),
    })
    addSessions(groups, sessions, runs, by)
  }
  const out: UsageGroup[] = [...groups.values()].map(({ key, g }) => ({
    key,
    runs: g.runs,
    successes: g.successes,
    errors: g.errors,
    gpu_seconds: round(g.gpuMs / 1000) as number,
    node_runs: g.node_runs,
    outputs: g.outputs,
  }))
  out.sort((a, b) =>
    by === 'day'
      ? String(a.key.day).localeCompare(String(b.key.day))
      : b.gpu_seconds - a.gpu_seconds || JSON.stringify(a.key).localeCompare(JSON.stringify(b.key)),
  )
  return { window: windowOf(filter), by, source, groups: out }
}

// ---------------------------------------------------------------------------------------------------------
// trends

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

// ---------------------------------------------------------------------------------------------------------
// regressions

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

/**
 * Successful durations per node type and node type + workflow, as sketches of the baseline and the recent
 * window: whole hours inside either window from workflow_rollups, the rest (partial hours at the window
 * edges and at the split) from node_runs. Undefined when the question needs raw rows (a person, status or
 * model filter, a window under a few hours, or a store without these rollups).
 */
async function regressionsFromRollups(
  store: AnalysisStore,
  filter: AnalysisFilter,
  from: number,
  split: number,
  now: number,
): Promise<
  | Map<string, { node_type: string | null; workflow: string | null; base: LogSketch; recent: LogSketch }>
  | undefined
> {
  if (!store.workflowRollups) return undefined
  if (filter.user !== undefined || filter.status !== undefined || filter.model !== undefined) return undefined
  if (now - from < ROLLUP_MIN_WINDOW_MILLIS) return undefined
  const iso = (ms: number): string => new Date(ms).toISOString()
  const groups = new Map<
    string,
    { node_type: string | null; workflow: string | null; base: LogSketch; recent: LogSketch }
  >()
  const group = (nodeType: string | null, workflow: string | null) => {
    const k = JSON.stringify([nodeType, workflow])
    let g = groups.get(k)
    if (!g)
      groups.set(k, (g = { node_type: nodeType, workflow, base: new LogSketch(), recent: new LogSketch() }))
    return g
  }
  const whole: [number, number, 'base' | 'recent'][] = []
  const baseWhole: [number, number] = [Math.ceil(from / HOUR) * HOUR, Math.floor(split / HOUR) * HOUR]
  const recentWhole: [number, number] = [Math.ceil(split / HOUR) * HOUR, Math.floor(now / HOUR) * HOUR]
  if (baseWhole[0] < baseWhole[1]) whole.push([...baseWhole, 'base'])
  if (recentWhole[0] < recentWhole[1]) whole.push([...recentWhole, 'recent'])
  const raw: [number, number][] = []
  let cursor = from
  for (const [a, b] of whole) {
    if (cursor < a) raw.push([cursor, a])
    cursor = b
  }
  if (cursor < now) raw.push([cursor, now])
  const scope = {
    ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
    ...(filter.nodeType !== undefined ? { nodeType: filter.nodeType } : {}),
    ...(filter.workflow !== undefined ? { workflow: filter.workflow } : {}),
  }
  for (const [a, b, side] of whole) {
    for (const r of await store.workflowRollups({ ...scope, since: iso(a), until: iso(b) })) {
      const type = r.node_type === '' ? null : r.node_type
      group(type, null)[side].merge(r.duration_sketch)
      if (r.workflow !== '') group(type, r.workflow)[side].merge(r.duration_sketch)
    }
  }
  for (const [a, b] of raw) {
    for (const { run, session } of await loadFacts(store, { ...filter, since: iso(a), until: iso(b) })) {
      if (run.status !== 'success' || run.duration_ms === null) continue
      const side = Date.parse(run.timestamp_start) >= split ? 'recent' : 'base'
      group(run.node_type, null)[side].add(run.duration_ms)
      const workflow = workflowId(session)
      if (workflow !== null) group(run.node_type, workflow)[side].add(run.duration_ms)
    }
  }
  return groups
}

// ---------------------------------------------------------------------------------------------------------
// correlate

/** Factors `correlate` always knows, besides any numeric input by name. */
export const BUILTIN_FACTORS = [
  'gpu_memory_used',
  'gpu_memory_fraction',
  'pixels',
  'batch_size',
  'steps',
  'steps_x_pixels',
] as const

type Graph = Record<string, { class_type?: string; inputs?: JsonObject }>

function graphOf(session: SessionRecord | undefined): Graph | null {
  return isObject(session?.prompt) ? (session.prompt as unknown as Graph) : null
}

function isLinkValue(v: JsonValue | undefined): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number'
}

function asNumber(v: JsonValue | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/**
 * The nearest node (breadth-first through links, starting at the node itself) whose literal inputs hold
 * every one of `names` as numbers: how `pixels` finds the EmptyLatentImage (or image size) feeding a sampler.
 */
function upstreamNumbers(graph: Graph, nodeId: string, names: readonly string[]): number[] | null {
  const seen = new Set<string>()
  let frontier = [nodeId]
  while (frontier.length > 0) {
    const next: string[] = []
    for (const id of frontier) {
      if (seen.has(id)) continue
      seen.add(id)
      const inputs = graph[id]?.inputs
      if (!isObject(inputs)) continue
      const values = names.map((n) => asNumber(inputs[n]))
      if (values.every((v) => v !== null)) return values as number[]
      for (const v of Object.values(inputs)) if (isLinkValue(v)) next.push(v[0])
    }
    frontier = next
  }
  return null
}

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

// ---------------------------------------------------------------------------------------------------------
// diff

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

// ---------------------------------------------------------------------------------------------------------
// suggest

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

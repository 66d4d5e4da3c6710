/** `usage`: per person (or day, origin, model), prompts, successes, errors, GPU-seconds, node runs, outputs. */
import type { SessionRecord } from '../../audit/types.js'
import type { UsageRollupRow } from '../../store/analysis-rollups.js'
import type { NodeRunRow } from '../../store/store.js'
import {
  SESSION_LOOKUP_CHUNK,
  executed,
  round,
  sessionKey,
  sessionMatches,
  sessionSqlFilter,
  windowOf,
  type AnalysisFilter,
  type AnalysisStore,
  type AnalysisWindow,
  type AnswerSource,
} from './analysis-filter.js'
import { isoSpan, planFilterWindow, rollupReads } from './analysis-window.js'

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
      runs.push(
        ...(await store.nodeRuns({ origin, sessionIds: ids.slice(i, i + SESSION_LOOKUP_CHUNK), lean: true })),
      )
  }
  return { sessions, runs }
}

/** A usage rollup row's group key. */
function rollupUsageKey(r: UsageRollupRow, by: UsageGrouping): Record<string, string | null> {
  if (by === 'user') return { user: r.user === '' ? null : r.user }
  if (by === 'day') return { day: r.hour === '' ? null : r.hour.slice(0, 10) }
  if (by === 'origin') return { origin: r.origin }
  return { model: r.model ? r.model : null, sha256: r.sha256 ? r.sha256 : null }
}

/**
 * Usage from usage_rollups (model_usage_rollups for `--by model`): the window's whole days of queue time from
 * the daily tables, the whole hours at its ends from the hourly ones, the partial hours at its edges from the
 * sessions themselves. Undefined when the question needs raw rows: a filter that is not a key of these
 * rollups (node type, status, model, workflow), a short window, or a store without them.
 */
async function usageFromRollups(
  store: AnalysisStore,
  filter: AnalysisFilter,
  by: UsageGrouping,
  now: number,
): Promise<Map<string, { key: Record<string, string | null>; g: UsageSums }> | undefined> {
  if (!store.usageRollups) return undefined
  if (filter.nodeType !== undefined || filter.status !== undefined) return undefined
  if (filter.model !== undefined || filter.workflow !== undefined) return undefined
  const plan = planFilterWindow(filter, now, true)
  if (!plan) return undefined
  const groups = new Map<string, { key: Record<string, string | null>; g: UsageSums }>()
  for (const read of rollupReads(plan)) {
    const rows = await store.usageRollups({
      ...(filter.origin !== undefined ? { origin: filter.origin } : {}),
      ...(filter.user !== undefined ? { user: filter.user } : {}),
      ...(by === 'model' ? { byModel: true } : {}),
      ...read,
    })
    for (const r of rows) {
      addUsage(groups, rollupUsageKey(r, by), {
        runs: r.sessions,
        successes: r.successes,
        errors: r.errors,
        gpuMs: r.gpu_ms,
        node_runs: r.node_runs,
        outputs: r.outputs,
      })
    }
  }
  for (const span of plan.raw) {
    const { since, until } = isoSpan(span)
    const { sessions, runs } = await sessionsWithRuns(store, filter, since!, until!)
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

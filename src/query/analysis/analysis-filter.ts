/**
 * What every analysis shares: the store calls it needs, the filters, and reading node runs with their sessions.
 *
 * Session filters (`user`, `status`, `origin`, `model`, `workflow`) apply to a node run through its session;
 * `since`/`until` apply to a node run's `timestamp_start` and to a session's `queued_at` (inclusive / exclusive).
 */
import type { JsonObject, JsonValue, NodeRunRecord, SessionRecord, SessionStatus } from '../../audit/types.js'
import type { RuntimeStore } from '../../store/runtime-store.js'
import type { NodeRunRow } from '../../store/store.js'

/** The store calls analysis needs (`rollups` optional: without it every answer reads raw rows). */
export type AnalysisStore = Pick<RuntimeStore, 'sessions' | 'session' | 'nodeRuns'> &
  Partial<Pick<RuntimeStore, 'rollups' | 'workflowRollups' | 'usageRollups'>>

/** Where an answer's numbers came from: exact raw rows, or rollups (percentiles within 1%). */
export type AnswerSource = 'node_runs' | 'rollups'

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
export interface Fact {
  readonly run: NodeRunRow
  readonly session: SessionRecord | undefined
}

export function isObject(value: JsonValue | undefined | null): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The UI workflow's id of a session, or null. */
export function workflowId(session: SessionRecord | undefined): string | null {
  const w = session?.workflow
  return isObject(w) && typeof w.id === 'string' ? w.id : null
}

export function sessionKey(origin: string, id: string): string {
  return `${origin}\u0000${id}`
}

export function sessionMatches(s: SessionRecord | undefined, f: AnalysisFilter): boolean {
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

export function hasSessionFilter(f: AnalysisFilter): boolean {
  return (
    f.user !== undefined ||
    f.origin !== undefined ||
    f.status !== undefined ||
    f.model !== undefined ||
    f.workflow !== undefined
  )
}

/** The SQL-side part of the session filters (the model filter is matched in code). */
export function sessionSqlFilter(f: AnalysisFilter): {
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
export const SESSION_LOOKUP_CHUNK = 1000

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

/** Node runs in the window with their sessions, filtered; `lean` reads only what sums need (see NodeRunFilter). */
export async function loadFacts(store: AnalysisStore, f: AnalysisFilter, lean = false): Promise<Fact[]> {
  const runs = await store.nodeRuns({
    ...(lean ? { lean } : {}),
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

export function executed(run: NodeRunRecord): boolean {
  return run.status !== 'cached'
}

/** Durations of executed runs that have one. */
export function durations(facts: readonly Fact[]): number[] {
  const out: number[] = []
  for (const { run } of facts) if (executed(run) && run.duration_ms !== null) out.push(run.duration_ms)
  return out
}

export function round(value: number | null, digits = 3): number | null {
  if (value === null) return null
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** The window an answer reports. */
export function windowOf(f: AnalysisFilter): AnalysisWindow {
  return { since: f.since ?? null, until: f.until ?? null }
}

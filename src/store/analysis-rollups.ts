/**
 * The rollups `regressions` and `usage` read, besides node_run_rollups (rollups.ts), which cannot answer them:
 * - `workflow_rollups`: per origin × node type × UI workflow id × hour of start, the successful runs and a
 *   sketch of their durations. `regressions` compares successful durations per node type and per node type +
 *   workflow; a node type's figures are the merge over its workflows (`''` when the session has none).
 * - `usage_rollups`: per origin × person × hour of queue time, prompts, successes, errors, GPU-ms (executed
 *   node durations of those prompts), node runs and outputs: what `usage --by user|day|origin` sums.
 *
 * Like node_run_rollups they are derived data: the dialects recompute every bucket an append touches from the
 * sessions and node_runs rows in the same transaction, a rebuild recomputes them all, and `verify` compares
 * them with the rollups a replay of the log gives. The recomputation is written once here as a plan of SQL
 * steps (a generator yielding statements and receiving their rows), so the synchronous SQLite transaction and
 * the asynchronous PostgreSQL one run the same steps.
 */
import { parseJson } from '../audit/json.js'
import type { SessionRecord } from '../audit/types.js'
import type { ColumnValue } from './derived-columns.js'
import { LogSketch, parseSketch, type LogSketchData } from './log-sketch.js'
import type { DerivedChanges } from './project.js'
import { sessionWorkflowId, type SqlQuery, type SqlRow } from './sql-common.js'
import type { NodeRunRow } from './store.js'

/** One `workflow_rollups` bucket. */
export interface WorkflowRollupRow {
  readonly origin: string
  /** `''` for runs of unknown type. */
  readonly node_type: string
  /** The session's UI workflow id, `''` when it has none. */
  readonly workflow: string
  /** ISO hour of `timestamp_start`. */
  readonly hour: string
  /** Successful runs with a duration. */
  readonly successes: number
  /** Their durations (ms). */
  readonly duration_sketch: LogSketchData
}

/** One `usage_rollups` bucket. */
export interface UsageRollupRow {
  readonly origin: string
  /** `submitter.user`, `''` when unknown. */
  readonly user: string
  /** ISO hour of `queued_at`; `''` for sessions without one. */
  readonly hour: string
  readonly sessions: number
  readonly successes: number
  readonly errors: number
  /** Sum of the executed (not cached) node durations of these sessions, ms. */
  readonly gpu_ms: number
  readonly node_runs: number
  readonly outputs: number
}

/** Which analysis rollups to read; `since`/`until` compare with `hour` (inclusive / exclusive). */
export interface AnalysisRollupFilter {
  readonly origin?: string
  readonly nodeType?: string
  readonly workflow?: string
  readonly user?: string
  readonly since?: string
  readonly until?: string
}

/** A plan of SQL steps: yields each statement (`?` placeholders) and receives its rows (none for writes). */
export type RollupPlan<T> = Generator<SqlQuery, T, SqlRow[]>

/** The ISO hour holding an ISO time; `''` for null, undefined for a time that does not parse. */
export function hourOf(time: string | null): string | undefined {
  if (time === null) return ''
  const ms = Date.parse(time)
  return Number.isNaN(ms)
    ? undefined
    : new Date(ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000)).toISOString()
}

function hourEnd(hour: string): string {
  return new Date(Date.parse(hour) + 3_600_000).toISOString()
}

type WorkflowKey = readonly [origin: string, nodeType: string, workflow: string, hour: string]
type UsageKey = readonly [origin: string, user: string, hour: string]

const SELECT_SESSION_KEY_SQL =
  'SELECT origin, session_id, submitter_user, workflow_id, queued_at FROM sessions WHERE origin = ? AND session_id = ?'
const SELECT_RUN_KEY_SQL =
  'SELECT origin, session_id, node_type, timestamp_start FROM node_runs WHERE origin = ? AND session_id = ? AND node_id = ?'
const SELECT_SESSION_RUNS_SQL =
  'SELECT origin, session_id, node_type, timestamp_start FROM node_runs WHERE origin = ? AND session_id = ?'
/**
 * The bucket reads below compare `origin || ''`, not `origin`: with a plain `origin = ?` the planner reads
 * through the primary key (origin first) and scans every row of the origin; this way it takes the
 * timestamp_start / queued_at index and reads one hour.
 */
const WORKFLOW_BUCKET_SQL =
  'SELECT n.duration_ms FROM node_runs n LEFT JOIN sessions s ON s.origin = n.origin AND s.session_id = n.session_id ' +
  "WHERE n.origin || '' = ? AND COALESCE(n.node_type, '') = ? AND n.timestamp_start >= ? AND n.timestamp_start < ? " +
  "AND n.status = 'success' AND n.duration_ms IS NOT NULL AND COALESCE(s.workflow_id, '') = ?"
// Per-session subqueries rather than a join with GROUP BY, which would make the planner walk the sessions
// primary key (origin first) for its order instead of the (origin, queued_at) index.
const USAGE_BUCKET_SQL = (nullHour: boolean): string =>
  'SELECT s.session_id, s.status, s.outputs, ' +
  '(SELECT COUNT(*) FROM node_runs n WHERE n.origin = s.origin AND n.session_id = s.session_id) AS node_runs, ' +
  "(SELECT SUM(CASE WHEN n.status <> 'cached' THEN n.duration_ms END) FROM node_runs n " +
  'WHERE n.origin = s.origin AND n.session_id = s.session_id) AS gpu_ms ' +
  "FROM sessions s WHERE s.origin || '' = ? AND COALESCE(s.submitter_user, '') = ? AND " +
  (nullHour ? 's.queued_at IS NULL' : 's.queued_at >= ? AND s.queued_at < ?')

const WORKFLOW_COLUMNS = ['origin', 'node_type', 'workflow', 'hour', 'successes', 'duration_sketch'] as const
const USAGE_COLUMNS = [
  'origin',
  'submitter_user',
  'hour',
  'sessions',
  'successes',
  'errors',
  'gpu_ms',
  'node_runs',
  'outputs',
] as const

function upsert(table: string, columns: readonly string[], keyCount: number): string {
  return (
    `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ` +
    `ON CONFLICT (${columns.slice(0, keyCount).join(', ')}) DO UPDATE SET ${columns
      .slice(keyCount)
      .map((c) => `${c} = excluded.${c}`)
      .join(', ')}`
  )
}

const UPSERT_WORKFLOW_SQL = upsert('workflow_rollups', WORKFLOW_COLUMNS, 4)
const UPSERT_USAGE_SQL = upsert('usage_rollups', USAGE_COLUMNS, 3)
const DELETE_WORKFLOW_SQL =
  'DELETE FROM workflow_rollups WHERE origin = ? AND node_type = ? AND workflow = ? AND hour = ?'
const DELETE_USAGE_SQL = 'DELETE FROM usage_rollups WHERE origin = ? AND submitter_user = ? AND hour = ?'

/** The two tables, for rebuilds that empty them. */
export const ANALYSIS_ROLLUP_TABLES = ['workflow_rollups', 'usage_rollups'] as const

function text(v: unknown): string {
  return v === null || v === undefined ? '' : String(v)
}

function outputCount(v: unknown): number {
  if (v === null || v === undefined) return 0
  const parsed = parseJson(String(v))
  return parsed.ok && Array.isArray(parsed.value) ? parsed.value.length : 0
}

/** A workflow bucket from its successful durations. */
export function computeWorkflowRollup(key: WorkflowKey, durations: Iterable<number>): WorkflowRollupRow {
  const sketch = new LogSketch()
  for (const d of durations) sketch.add(d)
  return {
    origin: key[0],
    node_type: key[1],
    workflow: key[2],
    hour: key[3],
    successes: sketch.count,
    duration_sketch: sketch.toJSON(),
  }
}

/** A usage bucket from its sessions, each with its node-run count and GPU-ms. */
export function computeUsageRollup(
  key: UsageKey,
  sessions: Iterable<{ status: string; outputs: number; nodeRuns: number; gpuMs: number }>,
): UsageRollupRow {
  let n = 0
  let successes = 0
  let errors = 0
  let gpu = 0
  let runs = 0
  let outputs = 0
  for (const s of sessions) {
    n++
    if (s.status === 'success') successes++
    if (s.status === 'error') errors++
    gpu += s.gpuMs
    runs += s.nodeRuns
    outputs += s.outputs
  }
  return {
    origin: key[0],
    user: key[1],
    hour: key[2],
    sessions: n,
    successes,
    errors,
    gpu_ms: gpu,
    node_runs: runs,
    outputs,
  }
}

/** Bucket keys an append touches, gathered before and after its rows are written. */
export interface TouchedRollups {
  readonly workflow: Map<string, WorkflowKey>
  readonly usage: Map<string, UsageKey>
  /** Each changed session's workflow id before the append (`''` when none or no row). */
  readonly workflowBefore: Map<string, string>
}

function addWorkflowKey(
  t: TouchedRollups,
  run: Readonly<Record<string, unknown>> | NodeRunRow,
  workflow: string,
): void {
  const r = run as Readonly<Record<string, unknown>>
  const hour = hourOf(text(r.timestamp_start))
  if (hour === undefined || hour === '') return
  const key: WorkflowKey = [text(r.origin), text(r.node_type), workflow, hour]
  t.workflow.set(JSON.stringify(key), key)
}

function addUsageKey(t: TouchedRollups, session: SqlRow): void {
  const hour = hourOf(session.queued_at === null ? null : text(session.queued_at))
  if (hour === undefined) return
  const key: UsageKey = [text(session.origin), text(session.submitter_user), hour]
  t.usage.set(JSON.stringify(key), key)
}

function* sessionLookup(
  cache: Map<string, SqlRow | null>,
  origin: string,
  sessionId: string,
): Generator<SqlQuery, SqlRow | null, SqlRow[]> {
  const k = JSON.stringify([origin, sessionId])
  if (!cache.has(k)) {
    const rows = yield { sql: SELECT_SESSION_KEY_SQL, params: [origin, sessionId] }
    cache.set(k, rows[0] ?? null)
  }
  return cache.get(k) ?? null
}

/** Before the append's rows are written: the buckets its replaced rows are in. */
export function* touchedBefore(changes: DerivedChanges): RollupPlan<TouchedRollups> {
  const t: TouchedRollups = { workflow: new Map(), usage: new Map(), workflowBefore: new Map() }
  const cache = new Map<string, SqlRow | null>()
  for (const c of changes.sessions) {
    const row = yield* sessionLookup(cache, c.origin, c.session_id)
    t.workflowBefore.set(JSON.stringify([c.origin, c.session_id]), row ? text(row.workflow_id) : '')
    if (row) addUsageKey(t, row)
  }
  for (const run of changes.nodeRuns) {
    const old = (yield { sql: SELECT_RUN_KEY_SQL, params: [run.origin, run.session_id, run.node_id] })[0]
    if (!old) continue
    const session = yield* sessionLookup(cache, run.origin, run.session_id)
    addWorkflowKey(t, old, session ? text(session.workflow_id) : '')
    if (session) addUsageKey(t, session)
  }
  return t
}

/** After the append's rows are written: adds the buckets the new rows are in and recomputes every one. */
export function* recomputeTouched(changes: DerivedChanges, t: TouchedRollups): RollupPlan<void> {
  const cache = new Map<string, SqlRow | null>()
  for (const c of changes.sessions) {
    const row = yield* sessionLookup(cache, c.origin, c.session_id)
    if (row) addUsageKey(t, row)
    const before = t.workflowBefore.get(JSON.stringify([c.origin, c.session_id])) ?? ''
    const now = row ? text(row.workflow_id) : ''
    if (before !== now) {
      // The session's workflow changed: its runs move from one workflow's buckets to the other's.
      for (const run of yield { sql: SELECT_SESSION_RUNS_SQL, params: [c.origin, c.session_id] }) {
        addWorkflowKey(t, run, before)
        addWorkflowKey(t, run, now)
      }
    }
  }
  for (const run of changes.nodeRuns) {
    const session = yield* sessionLookup(cache, run.origin, run.session_id)
    addWorkflowKey(t, run, session ? text(session.workflow_id) : '')
    if (session) addUsageKey(t, session)
  }
  yield* recomputeBuckets(t)
}

function* recomputeBuckets(t: TouchedRollups): RollupPlan<void> {
  for (const key of t.workflow.values()) {
    const rows = yield {
      sql: WORKFLOW_BUCKET_SQL,
      params: [key[0], key[1], key[3], hourEnd(key[3]), key[2]],
    }
    if (rows.length === 0) yield { sql: DELETE_WORKFLOW_SQL, params: [...key] }
    else {
      const r = computeWorkflowRollup(
        key,
        rows.map((row) => Number(row.duration_ms)),
      )
      yield { sql: UPSERT_WORKFLOW_SQL, params: workflowParams(r) }
    }
  }
  for (const key of t.usage.values()) {
    const rows = yield {
      sql: USAGE_BUCKET_SQL(key[2] === ''),
      params: key[2] === '' ? [key[0], key[1]] : [key[0], key[1], key[2], hourEnd(key[2])],
    }
    if (rows.length === 0) yield { sql: DELETE_USAGE_SQL, params: [...key] }
    else {
      const r = computeUsageRollup(
        key,
        rows.map((row) => ({
          status: text(row.status),
          outputs: outputCount(row.outputs),
          nodeRuns: Number(row.node_runs),
          gpuMs: row.gpu_ms === null || row.gpu_ms === undefined ? 0 : Number(row.gpu_ms),
        })),
      )
      yield { sql: UPSERT_USAGE_SQL, params: usageParams(r) }
    }
  }
}

/**
 * Recomputes both tables from the stored sessions and node runs (all origins): run once when the migration
 * that creates them is applied to a store that already holds rows.
 */
export function* recomputeAllAnalysisRollups(): RollupPlan<void> {
  for (const table of ANALYSIS_ROLLUP_TABLES) yield { sql: `DELETE FROM ${table}`, params: [] }
  const t: TouchedRollups = { workflow: new Map(), usage: new Map(), workflowBefore: new Map() }
  for (const s of yield {
    sql: 'SELECT origin, submitter_user, queued_at FROM sessions',
    params: [],
  })
    addUsageKey(t, s)
  for (const run of yield {
    sql:
      'SELECT n.origin, n.node_type, n.timestamp_start, s.workflow_id FROM node_runs n ' +
      "LEFT JOIN sessions s ON s.origin = n.origin AND s.session_id = n.session_id WHERE n.status = 'success'",
    params: [],
  })
    addWorkflowKey(t, run, text(run.workflow_id))
  yield* recomputeBuckets(t)
}

function workflowParams(r: WorkflowRollupRow): ColumnValue[] {
  return [r.origin, r.node_type, r.workflow, r.hour, r.successes, JSON.stringify(r.duration_sketch)]
}

function usageParams(r: UsageRollupRow): ColumnValue[] {
  return [r.origin, r.user, r.hour, r.sessions, r.successes, r.errors, r.gpu_ms, r.node_runs, r.outputs]
}

function sketchOf(where: string, value: unknown): LogSketchData {
  try {
    return parseSketch(String(value))
  } catch (error) {
    throw new Error(
      `${where}: stored sketch does not parse: ${error instanceof Error ? error.message : String(error)}`,
    )
  }
}

/** A stored `workflow_rollups` row back; throws naming the bucket when its sketch does not parse. */
export function rowToWorkflowRollup(row: SqlRow): WorkflowRollupRow {
  return {
    origin: text(row.origin),
    node_type: text(row.node_type),
    workflow: text(row.workflow),
    hour: text(row.hour),
    successes: Number(row.successes),
    duration_sketch: sketchOf(
      `workflow rollup ${text(row.origin)} ${text(row.node_type)} ${text(row.workflow)} ${text(row.hour)}`,
      row.duration_sketch,
    ),
  }
}

/** A stored `usage_rollups` row back. */
export function rowToUsageRollup(row: SqlRow): UsageRollupRow {
  return {
    origin: text(row.origin),
    user: text(row.submitter_user),
    hour: text(row.hour),
    sessions: Number(row.sessions),
    successes: Number(row.successes),
    errors: Number(row.errors),
    gpu_ms: Number(row.gpu_ms),
    node_runs: Number(row.node_runs),
    outputs: Number(row.outputs),
  }
}

function readQuery(
  table: string,
  columns: Record<'origin' | 'nodeType' | 'workflow' | 'user', string | undefined>,
  filter: AnalysisRollupFilter,
  order: string,
): SqlQuery {
  const where: string[] = []
  const params: ColumnValue[] = []
  for (const [field, column] of Object.entries(columns) as [keyof typeof columns, string | undefined][]) {
    const value = filter[field]
    if (value === undefined) continue
    if (column === undefined) throw new Error(`${table} has no ${field} to filter on`)
    where.push(`${column} = ?`)
    params.push(value)
  }
  if (filter.since !== undefined) {
    where.push('hour >= ?')
    params.push(filter.since)
  } else if (filter.until !== undefined) {
    // The '' bucket (no queue time) lies outside every bounded window.
    where.push("hour <> ''")
  }
  if (filter.until !== undefined) {
    where.push('hour < ?')
    params.push(filter.until)
  }
  return {
    sql: `SELECT * FROM ${table}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order}`,
    params,
  }
}

/** The read query of `workflow_rollups`. */
export function workflowRollupsQuery(filter: AnalysisRollupFilter): SqlQuery {
  return readQuery(
    'workflow_rollups',
    { origin: 'origin', nodeType: 'node_type', workflow: 'workflow', user: undefined },
    filter,
    'hour, origin, node_type, workflow',
  )
}

/** The read query of `usage_rollups`. */
export function usageRollupsQuery(filter: AnalysisRollupFilter): SqlQuery {
  return readQuery(
    'usage_rollups',
    { origin: 'origin', nodeType: undefined, workflow: undefined, user: 'submitter_user' },
    filter,
    'hour, origin, submitter_user',
  )
}

/** What a replay of the log gives for both tables, from its sessions and node runs (for `verify`). */
export function replayAnalysisRollups(
  sessions: readonly SessionRecord[],
  runs: readonly NodeRunRow[],
): { workflow: WorkflowRollupRow[]; usage: UsageRollupRow[] } {
  const bySession = new Map<string, SessionRecord>()
  for (const s of sessions) bySession.set(JSON.stringify([s.origin, s.session_id]), s)
  const workflow = new Map<string, { key: WorkflowKey; durations: number[] }>()
  const perSession = new Map<string, { nodeRuns: number; gpuMs: number }>()
  for (const run of runs) {
    const sk = JSON.stringify([run.origin, run.session_id])
    let p = perSession.get(sk)
    if (!p) perSession.set(sk, (p = { nodeRuns: 0, gpuMs: 0 }))
    p.nodeRuns++
    if (run.status !== 'cached' && run.duration_ms !== null) p.gpuMs += run.duration_ms
    if (run.status !== 'success' || run.duration_ms === null) continue
    const hour = hourOf(run.timestamp_start)
    if (hour === undefined || hour === '') continue
    const session = bySession.get(sk)
    const key: WorkflowKey = [
      run.origin,
      run.node_type ?? '',
      session ? (sessionWorkflowId(session) ?? '') : '',
      hour,
    ]
    const k = JSON.stringify(key)
    let b = workflow.get(k)
    if (!b) workflow.set(k, (b = { key, durations: [] }))
    b.durations.push(run.duration_ms)
  }
  const usage = new Map<
    string,
    { key: UsageKey; sessions: { status: string; outputs: number; nodeRuns: number; gpuMs: number }[] }
  >()
  for (const s of sessions) {
    const hour = hourOf(s.queued_at)
    if (hour === undefined) continue
    const user = s.submitter && typeof s.submitter.user === 'string' ? s.submitter.user : ''
    const key: UsageKey = [s.origin, user, hour]
    const k = JSON.stringify(key)
    let b = usage.get(k)
    if (!b) usage.set(k, (b = { key, sessions: [] }))
    const p = perSession.get(JSON.stringify([s.origin, s.session_id])) ?? { nodeRuns: 0, gpuMs: 0 }
    b.sessions.push({ status: s.status, outputs: s.outputs.length, ...p })
  }
  return {
    workflow: [...workflow.values()].map((b) => computeWorkflowRollup(b.key, b.durations)),
    usage: [...usage.values()].map((b) => computeUsageRollup(b.key, b.sessions)),
  }
}

/** The first difference between replayed and stored analysis rollups, naming table, bucket and field. */
export function firstAnalysisRollupDifference(
  want: { workflow: readonly WorkflowRollupRow[]; usage: readonly UsageRollupRow[] },
  have: { workflow: readonly WorkflowRollupRow[]; usage: readonly UsageRollupRow[] },
): string | undefined {
  const tables = [
    [
      'workflow_rollups',
      (r: WorkflowRollupRow | UsageRollupRow): string => {
        const w = r as WorkflowRollupRow
        return `${w.origin} / ${w.node_type || '(no type)'} / ${w.workflow || '(no workflow)'} / ${w.hour}`
      },
      want.workflow,
      have.workflow,
    ],
    [
      'usage_rollups',
      (r: WorkflowRollupRow | UsageRollupRow): string => {
        const u = r as UsageRollupRow
        return `${u.origin} / ${u.user || '(no user)'} / ${u.hour || '(no queue time)'}`
      },
      want.usage,
      have.usage,
    ],
  ] as const
  for (const [table, keyOf, wantRows, haveRows] of tables) {
    const w = new Map<string, Record<string, unknown>>(wantRows.map((r) => [keyOf(r), { ...r }]))
    const h = new Map<string, Record<string, unknown>>(haveRows.map((r) => [keyOf(r), { ...r }]))
    for (const key of [...new Set([...w.keys(), ...h.keys()])].sort()) {
      const a = w.get(key)
      const b = h.get(key)
      if (!a) return `${table} row (${key}) is not produced by the log`
      if (!b) return `${table} row (${key}) is missing, though the log produces it`
      for (const field of Object.keys(a)) {
        const x = a[field]
        const y = b[field]
        const same =
          field === 'gpu_ms'
            ? Math.abs(Number(x) - Number(y)) <= 1e-9 * Math.max(1, Math.abs(Number(x)))
            : JSON.stringify(x) === JSON.stringify(y)
        if (!same) {
          return `${table} row (${key}) field ${field} is ${JSON.stringify(y).slice(0, 80)}, the log gives ${JSON.stringify(x).slice(0, 80)}`
        }
      }
    }
  }
  return undefined
}

/** The migration statements (same text for both dialects: text, integer and double columns). */
export function analysisRollupMigration(types: { text: string; int: string; real: string }): string[] {
  return [
    `CREATE TABLE workflow_rollups (
      origin ${types.text} NOT NULL,
      node_type ${types.text} NOT NULL,
      workflow ${types.text} NOT NULL,
      hour ${types.text} NOT NULL,
      successes ${types.int} NOT NULL,
      duration_sketch text NOT NULL,
      PRIMARY KEY (origin, node_type, workflow, hour)
    )`,
    `CREATE INDEX workflow_rollups_hour ON workflow_rollups (hour)`,
    `CREATE TABLE usage_rollups (
      origin ${types.text} NOT NULL,
      submitter_user ${types.text} NOT NULL,
      hour ${types.text} NOT NULL,
      sessions ${types.int} NOT NULL,
      successes ${types.int} NOT NULL,
      errors ${types.int} NOT NULL,
      gpu_ms ${types.real} NOT NULL,
      node_runs ${types.int} NOT NULL,
      outputs ${types.int} NOT NULL,
      PRIMARY KEY (origin, submitter_user, hour)
    )`,
    `CREATE INDEX usage_rollups_hour ON usage_rollups (hour)`,
    // Dropped again by migration 7 (see ANALYSIS_INDEX_FIX): they made session-scoped reads scan an origin.
    `CREATE INDEX node_runs_origin_start ON node_runs (origin, timestamp_start)`,
    `CREATE INDEX sessions_origin_queued_at ON sessions (origin, queued_at)`,
  ]
}

/** Migration 7: drops the (origin, time) indexes of migration 6, which the planner also chose for reads of one
 * session's node runs (ordering by start time), scanning the whole origin; the bucket reads use the time
 * indexes instead (see WORKFLOW_BUCKET_SQL). */
export const ANALYSIS_INDEX_FIX = [
  'DROP INDEX node_runs_origin_start',
  'DROP INDEX sessions_origin_queued_at',
] as const

/** Runs a plan synchronously (SQLite's transaction functions must not await). */
export function runPlanSync<T>(plan: RollupPlan<T>, exec: (query: SqlQuery) => SqlRow[]): T {
  let step = plan.next()
  while (!step.done) step = plan.next(exec(step.value))
  return step.value
}

/** Runs a plan step by step on an asynchronous connection. */
export async function runPlan<T>(
  plan: RollupPlan<T>,
  exec: (query: SqlQuery) => Promise<SqlRow[]>,
): Promise<T> {
  let step = plan.next()
  while (!step.done) step = plan.next(await exec(step.value))
  return step.value
}

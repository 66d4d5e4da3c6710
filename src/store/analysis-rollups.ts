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
import {
  DAILY_ROLLUP_TABLES,
  DAILY_SPECS,
  MODEL_DAILY,
  NODE_DAILY,
  USAGE_DAILY,
  WORKFLOW_DAILY,
  dailyKeys,
  grainTable,
  recomputeAllDaily,
  recomputeDaily,
  recomputeModelHours,
  type RollupGrain,
  type RollupPlan,
} from './daily-rollups.js'
import type { ColumnValue } from './derived-columns.js'
import { LogSketch, parseSketch, type LogSketchData } from './log-sketch.js'
import type { DerivedChanges } from './project.js'
import type { SqlQuery, SqlRow } from './sql-common.js'
import type { NodeRunRow } from './store.js'

export { ANALYSIS_INDEX_FIX, analysisRollupMigration } from './analysis-rollup-migrations.js'
export { firstAnalysisRollupDifference, replayAnalysisRollups } from './rollup-replay.js'
export { runPlan, runPlanSync } from './daily-rollups.js'

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
  /** Only in rows read with `byModel`: the model's name (`''`: sessions without models) and SHA-256 (or `''`). */
  readonly model?: string
  readonly sha256?: string
}

/** Which analysis rollups to read; `since`/`until` compare with `hour` (inclusive / exclusive). */
export interface AnalysisRollupFilter {
  readonly origin?: string
  readonly nodeType?: string
  readonly workflow?: string
  readonly user?: string
  readonly since?: string
  readonly until?: string
  /** `day`: the daily tables (`hour` then holds the day's midnight); default `hour`. */
  readonly grain?: RollupGrain
  /** Usage per person × model (model_usage_rollups) instead of per person. */
  readonly byModel?: boolean
}

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

export type WorkflowKey = readonly [origin: string, nodeType: string, workflow: string, hour: string]
export type UsageKey = readonly [origin: string, user: string, hour: string]

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

/** The tables of this file and of daily-rollups.ts, for rebuilds that empty them. */
export const ANALYSIS_ROLLUP_TABLES = ['workflow_rollups', 'usage_rollups', ...DAILY_ROLLUP_TABLES] as const

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
interface TouchedRollups {
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
  yield* recomputeCoarse(t)
}

/**
 * After the hourly rows: the model buckets of the touched hours, and the daily rows of every touched day. The
 * node_run_rollups hours an append touches are among the workflow keys (every replaced and new run's origin,
 * node type and hour is one), and the dialects recompute them before this plan runs.
 */
function* recomputeCoarse(t: TouchedRollups): RollupPlan<void> {
  const workflowKeys = [...t.workflow.values()]
  yield* recomputeDaily(NODE_DAILY, dailyKeys(workflowKeys.map((k) => [k[0], k[1], k[3]])).values())
  yield* recomputeDaily(WORKFLOW_DAILY, dailyKeys(workflowKeys).values())
  const usageKeys = [...t.usage.values()]
  yield* recomputeDaily(USAGE_DAILY, dailyKeys(usageKeys).values())
  const hours = new Map<string, [string, string]>()
  for (const k of usageKeys) hours.set(JSON.stringify([k[0], k[2]]), [k[0], k[2]])
  yield* recomputeModelHours(hours.values())
  yield* recomputeDaily(MODEL_DAILY, dailyKeys(hours.values()).values())
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
 * Recomputes every table here and in daily-rollups.ts from the stored sessions, node runs and (for the daily
 * node_run_rollups) hourly node_run_rollups, all origins: run once when a migration that creates them is
 * applied to a store that already holds rows.
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
  const hours = new Map<string, [string, string]>()
  for (const k of t.usage.values()) hours.set(JSON.stringify([k[0], k[2]]), [k[0], k[2]])
  yield* recomputeModelHours(hours.values())
  for (const spec of DAILY_SPECS) yield* recomputeAllDaily(spec)
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
    ...(row.model !== undefined ? { model: text(row.model), sha256: text(row.sha256) } : {}),
  }
}

function readQuery(
  table: string,
  time: string,
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
    where.push(`${time} >= ?`)
    params.push(filter.since)
  } else if (filter.until !== undefined) {
    // The '' bucket (no queue time) lies outside every bounded window.
    where.push(`${time} <> ''`)
  }
  if (filter.until !== undefined) {
    where.push(`${time} < ?`)
    params.push(filter.until)
  }
  const select = time === 'hour' ? '*' : `*, ${time} AS hour`
  return {
    sql: `SELECT ${select} FROM ${table}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${time}, ${order}`,
    params,
  }
}

/** The read query of `workflow_rollups` (or its daily table). */
export function workflowRollupsQuery(filter: AnalysisRollupFilter): SqlQuery {
  const { table, time } = grainTable(WORKFLOW_DAILY, filter.grain)
  return readQuery(
    table,
    time,
    { origin: 'origin', nodeType: 'node_type', workflow: 'workflow', user: undefined },
    filter,
    'origin, node_type, workflow',
  )
}

/** The read query of `usage_rollups` or, with `byModel`, `model_usage_rollups` (or their daily tables). */
export function usageRollupsQuery(filter: AnalysisRollupFilter): SqlQuery {
  const { table, time } = grainTable(filter.byModel ? MODEL_DAILY : USAGE_DAILY, filter.grain)
  return readQuery(
    table,
    time,
    { origin: 'origin', nodeType: undefined, workflow: undefined, user: 'submitter_user' },
    filter,
    filter.byModel ? 'origin, submitter_user, model, sha256' : 'origin, submitter_user',
  )
}

/**
 * Daily rollups: for each hourly rollup table, a table with the same columns per UTC day, so a 30-day answer
 * merges about 30 rows per group instead of 720 (hours then serve only the window's ragged edges).
 *
 * A daily row is the merge of the hourly rows of its day (counts and sums added, maxima taken, sketches merged
 * exactly), recomputed in the same transaction as the hourly rows it covers, right after them; so it always
 * equals a computation over the node runs, and `verify` checks it by merging the replayed hourly rows.
 *
 * `model_usage_rollups` (hourly and daily) is here too: per origin × person × model (name, SHA-256) × hour of
 * queue time, what `usage --by model` sums. A session with several models counts once under each; one without
 * models is under model `''`. Its hourly buckets are recomputed per origin × hour (every person and model of
 * the hour at once), since an append cannot tell which models a session had before.
 */
import { parseJson } from '../audit/json.js'
import type { ColumnValue } from './derived-columns.js'
import { LogSketch, parseSketch, type LogSketchData } from './log-sketch.js'
import type { SqlQuery, SqlRow } from './sql-common.js'

/** A plan of SQL steps: yields each statement (`?` placeholders) and receives its rows (none for writes). */
export type RollupPlan<T> = Generator<SqlQuery, T, SqlRow[]>

/** How coarse a rollup read is: the hourly tables or the daily ones. */
export type RollupGrain = 'hour' | 'day'

/** An hourly table and its daily twin, by the role of each column. */
export interface DailySpec {
  readonly hourly: string
  readonly daily: string
  /** Key columns (besides the time) a daily row is recomputed by. */
  readonly keys: readonly string[]
  /** Further key columns, grouped in code (all groups of a `keys` × day are rewritten together). */
  readonly groups: readonly string[]
  readonly sums: readonly string[]
  readonly maxes: readonly string[]
  readonly sketches: readonly string[]
}

const USAGE_SUMS = ['sessions', 'successes', 'errors', 'gpu_ms', 'node_runs', 'outputs'] as const

export const NODE_DAILY: DailySpec = {
  hourly: 'node_run_rollups',
  daily: 'node_run_rollups_daily',
  keys: ['origin', 'node_type'],
  groups: [],
  sums: ['runs', 'executed', 'cached', 'errors', 'duration_sum_ms'],
  maxes: ['duration_max_ms', 'gpu_max_mib'],
  sketches: ['duration_sketch', 'gpu_sketch'],
}

export const WORKFLOW_DAILY: DailySpec = {
  hourly: 'workflow_rollups',
  daily: 'workflow_rollups_daily',
  keys: ['origin', 'node_type', 'workflow'],
  groups: [],
  sums: ['successes'],
  maxes: [],
  sketches: ['duration_sketch'],
}

export const USAGE_DAILY: DailySpec = {
  hourly: 'usage_rollups',
  daily: 'usage_rollups_daily',
  keys: ['origin', 'submitter_user'],
  groups: [],
  sums: USAGE_SUMS,
  maxes: [],
  sketches: [],
}

export const MODEL_DAILY: DailySpec = {
  hourly: 'model_usage_rollups',
  daily: 'model_usage_rollups_daily',
  keys: ['origin'],
  groups: ['submitter_user', 'model', 'sha256'],
  sums: USAGE_SUMS,
  maxes: [],
  sketches: [],
}

export const DAILY_SPECS: readonly DailySpec[] = [NODE_DAILY, WORKFLOW_DAILY, USAGE_DAILY, MODEL_DAILY]

/** The tables this file adds, for rebuilds that empty them (hourly model table before the daily ones). */
export const DAILY_ROLLUP_TABLES = ['model_usage_rollups', ...DAILY_SPECS.map((s) => s.daily)] as const

/** The migration creating the tables here; the drivers fill them when it is applied. */
export const DAILY_ROLLUPS_VERSION = 9

const DAY = 86_400_000

/** The ISO day (midnight UTC) holding an ISO hour; `''` (no queue time) stays `''`. */
function dayOf(hour: string): string {
  return hour === '' ? '' : `${hour.slice(0, 10)}T00:00:00.000Z`
}

function dayEnd(day: string): string {
  return new Date(Date.parse(day) + DAY).toISOString()
}

function columnsOf(spec: DailySpec, time: 'hour' | 'day'): string[] {
  return [...spec.keys, ...spec.groups, time, ...spec.sums, ...spec.maxes, ...spec.sketches]
}

function insertSql(table: string, columns: readonly string[]): string {
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`
}

/**
 * Daily rows from hourly rows (any order, any days): one per keys × groups × day, as plain column objects
 * (sketches as data). What the recompute stores and what `verify` replays.
 */
export function mergeDaily(spec: DailySpec, hourly: Iterable<SqlRow>): Record<string, unknown>[] {
  const out = new Map<string, { row: Record<string, unknown>; sketches: LogSketch[] }>()
  for (const h of hourly) {
    const day = dayOf(String(h.hour))
    const id = JSON.stringify([...spec.keys, ...spec.groups].map((c) => String(h[c])).concat(day))
    let e = out.get(id)
    if (!e) {
      const row: Record<string, unknown> = { day }
      for (const c of [...spec.keys, ...spec.groups]) row[c] = String(h[c])
      for (const c of spec.sums) row[c] = 0
      for (const c of spec.maxes) row[c] = null
      e = { row, sketches: spec.sketches.map(() => new LogSketch()) }
      out.set(id, e)
    }
    for (const c of spec.sums) e.row[c] = (e.row[c] as number) + Number(h[c])
    for (const c of spec.maxes) {
      const v = h[c] === null || h[c] === undefined ? null : Number(h[c])
      const m = e.row[c] as number | null
      e.row[c] = m === null ? v : v === null ? m : Math.max(m, v)
    }
    spec.sketches.forEach((c, i) => {
      const v = h[c]
      e.sketches[i]!.merge(typeof v === 'string' ? parseSketch(v) : (v as LogSketchData))
    })
  }
  return [...out.values()].map(({ row, sketches }) => {
    spec.sketches.forEach((c, i) => (row[c] = sketches[i]!.toJSON()))
    return row
  })
}

function dailyParams(spec: DailySpec, row: Record<string, unknown>): ColumnValue[] {
  return columnsOf(spec, 'day').map((c) =>
    spec.sketches.includes(c) ? JSON.stringify(row[c]) : (row[c] as ColumnValue),
  )
}

/** Rewrites the daily rows of each `keys` × day given (`[...key values, day]`) from the hourly rows. */
export function* recomputeDaily(spec: DailySpec, touched: Iterable<readonly string[]>): RollupPlan<void> {
  const where = spec.keys.map((c) => `${c} = ?`).join(' AND ')
  const insert = insertSql(spec.daily, columnsOf(spec, 'day'))
  for (const key of touched) {
    const values = key.slice(0, spec.keys.length)
    const day = key[spec.keys.length]!
    const rows = yield day === ''
      ? { sql: `SELECT * FROM ${spec.hourly} WHERE ${where} AND hour = ''`, params: values }
      : {
          sql: `SELECT * FROM ${spec.hourly} WHERE ${where} AND hour >= ? AND hour < ?`,
          params: [...values, day, dayEnd(day)],
        }
    yield { sql: `DELETE FROM ${spec.daily} WHERE ${where} AND day = ?`, params: [...values, day] }
    for (const row of mergeDaily(spec, rows)) yield { sql: insert, params: dailyParams(spec, row) }
  }
}

/** Recomputes a whole daily table from its hourly one (after a migration or a full recompute). */
export function* recomputeAllDaily(spec: DailySpec): RollupPlan<void> {
  yield { sql: `DELETE FROM ${spec.daily}`, params: [] }
  const insert = insertSql(spec.daily, columnsOf(spec, 'day'))
  for (const row of mergeDaily(spec, yield { sql: `SELECT * FROM ${spec.hourly}`, params: [] }))
    yield { sql: insert, params: dailyParams(spec, row) }
}

/** Deduplicated `[...keys, day]` of hourly keys given as `[...keys, hour]`. */
export function dailyKeys(hourly: Iterable<readonly string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const k of hourly) {
    const key = [...k.slice(0, -1), dayOf(k[k.length - 1]!)]
    out.set(JSON.stringify(key), key)
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------
// model_usage_rollups

/** Sessions of one origin × hour with what a model bucket needs (`origin || ''`: see analysis-rollups.ts). */
const MODEL_BUCKET_SQL = (nullHour: boolean): string =>
  'SELECT s.submitter_user, s.status, s.outputs, s.models, ' +
  '(SELECT COUNT(*) FROM node_runs n WHERE n.origin = s.origin AND n.session_id = s.session_id) AS node_runs, ' +
  "(SELECT SUM(CASE WHEN n.status <> 'cached' THEN n.duration_ms END) FROM node_runs n " +
  'WHERE n.origin = s.origin AND n.session_id = s.session_id) AS gpu_ms ' +
  "FROM sessions s WHERE s.origin || '' = ? AND " +
  (nullHour ? 's.queued_at IS NULL' : 's.queued_at >= ? AND s.queued_at < ?')

const MODEL_HOURLY_COLUMNS = columnsOf(MODEL_DAILY, 'hour')
const INSERT_MODEL_SQL = insertSql('model_usage_rollups', MODEL_HOURLY_COLUMNS)

function jsonArray(v: unknown): unknown[] {
  if (v === null || v === undefined) return []
  const parsed = parseJson(String(v))
  return parsed.ok && Array.isArray(parsed.value) ? parsed.value : []
}

/** A session's distinct `[name, sha256]` models (`['', '']` when none), as `usage --by model` groups them. */
function sessionModelKeys(models: readonly unknown[]): [string, string][] {
  const out = new Map<string, [string, string]>()
  for (const m of models) {
    if (typeof m !== 'object' || m === null) continue
    const r = m as { name?: unknown; sha256?: unknown }
    const key: [string, string] = [String(r.name ?? ''), typeof r.sha256 === 'string' ? r.sha256 : '']
    out.set(JSON.stringify(key), key)
  }
  return out.size === 0 ? [['', '']] : [...out.values()]
}

/** One session's contribution to the model buckets of its hour. */
export interface ModelUsageSession {
  readonly user: string
  readonly status: string
  readonly outputs: number
  readonly models: readonly unknown[]
  readonly nodeRuns: number
  readonly gpuMs: number
}

/** The model buckets (rows of `model_usage_rollups`) of the sessions of one origin × hour. */
export function computeModelUsage(
  origin: string,
  hour: string,
  sessions: Iterable<ModelUsageSession>,
): Record<string, unknown>[] {
  const out = new Map<string, Record<string, unknown>>()
  for (const s of sessions) {
    for (const [model, sha256] of sessionModelKeys(s.models)) {
      const id = JSON.stringify([s.user, model, sha256])
      let row = out.get(id)
      if (!row) {
        row = { origin, submitter_user: s.user, model, sha256, hour }
        for (const c of USAGE_SUMS) row[c] = 0
        out.set(id, row)
      }
      ;(row.sessions as number)++
      if (s.status === 'success') (row.successes as number)++
      if (s.status === 'error') (row.errors as number)++
      row.gpu_ms = (row.gpu_ms as number) + s.gpuMs
      row.node_runs = (row.node_runs as number) + s.nodeRuns
      row.outputs = (row.outputs as number) + s.outputs
    }
  }
  return [...out.values()]
}

/** Rewrites the model buckets of each `[origin, hour]` from the sessions and node runs. */
export function* recomputeModelHours(touched: Iterable<readonly [string, string]>): RollupPlan<void> {
  for (const [origin, hour] of touched) {
    const rows = yield {
      sql: MODEL_BUCKET_SQL(hour === ''),
      params: hour === '' ? [origin] : [origin, hour, new Date(Date.parse(hour) + 3_600_000).toISOString()],
    }
    yield { sql: 'DELETE FROM model_usage_rollups WHERE origin = ? AND hour = ?', params: [origin, hour] }
    const sessions = rows.map((r) => ({
      user: r.submitter_user === null || r.submitter_user === undefined ? '' : String(r.submitter_user),
      status: String(r.status),
      outputs: jsonArray(r.outputs).length,
      models: jsonArray(r.models),
      nodeRuns: Number(r.node_runs),
      gpuMs: r.gpu_ms === null || r.gpu_ms === undefined ? 0 : Number(r.gpu_ms),
    }))
    for (const row of computeModelUsage(origin, hour, sessions))
      yield { sql: INSERT_MODEL_SQL, params: MODEL_HOURLY_COLUMNS.map((c) => row[c] as ColumnValue) }
  }
}

/** The migration statements (same text for both dialects: text, integer and double columns). */
export function dailyRollupMigration(types: { text: string; int: string; real: string }): string[] {
  const type = (spec: DailySpec, c: string): string =>
    spec.sketches.includes(c)
      ? 'text NOT NULL'
      : spec.maxes.includes(c)
        ? types.real
        : spec.sums.includes(c)
          ? `${c === 'gpu_ms' || c === 'duration_sum_ms' ? types.real : types.int} NOT NULL`
          : `${types.text} NOT NULL`
  const table = (spec: DailySpec, name: string, time: 'hour' | 'day'): string =>
    `CREATE TABLE ${name} (\n  ${columnsOf(spec, time)
      .map((c) => `${c} ${type(spec, c)}`)
      .join(',\n  ')},\n  PRIMARY KEY (${[...spec.keys, ...spec.groups, time].join(', ')})\n)`
  return [
    table(MODEL_DAILY, 'model_usage_rollups', 'hour'),
    // Recomputes read one origin's hour (the primary key has the person and model before the hour).
    'CREATE INDEX model_usage_rollups_origin_hour ON model_usage_rollups (origin, hour)',
    'CREATE INDEX model_usage_rollups_hour ON model_usage_rollups (hour)',
    ...DAILY_SPECS.flatMap((spec) => [
      table(spec, spec.daily, 'day'),
      `CREATE INDEX ${spec.daily}_day ON ${spec.daily} (day)`,
    ]),
  ]
}

/** Reads of a rollup table at a grain: the daily table's `day` read back as `hour`. */
export function grainTable(spec: DailySpec, grain: RollupGrain | undefined): { table: string; time: string } {
  return grain === 'day' ? { table: spec.daily, time: 'day' } : { table: spec.hourly, time: 'hour' }
}

/** Canonical text of a stored or replayed field, for comparisons (sketches re-sorted). */
export function canonicalField(spec: DailySpec, column: string, value: unknown): string {
  if (spec.sketches.includes(column)) {
    const data = typeof value === 'string' ? parseSketch(value) : (value as LogSketchData)
    return JSON.stringify(LogSketch.from(data).toJSON())
  }
  if (value === null || value === undefined) return 'null'
  return spec.sums.includes(column) || spec.maxes.includes(column) ? String(Number(value)) : String(value)
}

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

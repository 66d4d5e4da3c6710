/**
 * Rollups: per origin × node type × hour, the counts of node runs and mergeable sketches (see
 * src/query/analysis/log-sketch.ts, 1% relative error) of executed durations and GPU memory. They are derived
 * data like node_runs: each dialect recomputes the buckets an append touches from the node_runs rows, in the
 * same transaction, and a rebuild recomputes them all; so they always equal a computation over the rows.
 */
import { NODE_DAILY, grainTable, type RollupGrain } from './daily-rollups.js'
import { LogSketch, parseSketch, type LogSketchData } from './log-sketch.js'
import type { ColumnValue } from './derived-columns.js'
import type { NodeRunRow } from './store.js'

/** One rollup bucket as stored. */
export interface RollupRow {
  readonly origin: string
  /** `''` for runs of unknown type. */
  readonly node_type: string
  /** Bucket start, ISO hour (`2026-11-01T13:00:00.000Z`). */
  readonly hour: string
  readonly runs: number
  readonly executed: number
  readonly cached: number
  readonly errors: number
  /** Sum of executed durations, ms (for GPU-seconds and means). */
  readonly duration_sum_ms: number
  readonly duration_max_ms: number | null
  readonly gpu_max_mib: number | null
  readonly duration_sketch: LogSketchData
  readonly gpu_sketch: LogSketchData
}

/** Which rollups to read; `since`/`until` compare with `hour` (inclusive / exclusive). */
export interface RollupFilter {
  readonly origin?: string
  readonly nodeType?: string
  readonly since?: string
  readonly until?: string
  /** `day`: node_run_rollups_daily (`hour` then holds the day's midnight); default `hour`. */
  readonly grain?: RollupGrain
}

/** Bucket key of a node run: `[origin, node_type, hour]`. */
export function rollupKey(
  run: Pick<NodeRunRow, 'origin' | 'node_type' | 'timestamp_start'>,
): [string, string, string] {
  const ms = Date.parse(run.timestamp_start)
  const hour = Number.isNaN(ms)
    ? run.timestamp_start.slice(0, 13)
    : new Date(ms - (ms % 3_600_000)).toISOString()
  return [run.origin, run.node_type ?? '', hour]
}

/** The end of the hour starting at `hour` (exclusive), ISO. */
export function hourEnd(hour: string): string {
  return new Date(Date.parse(hour) + 3_600_000).toISOString()
}

/** A bucket's rollup from its node runs (columns as read from node_runs). */
export function computeRollup(
  key: readonly [string, string, string],
  runs: readonly { status: unknown; duration_ms: unknown; gpu_memory_used: unknown }[],
): RollupRow {
  const durations = new LogSketch()
  const gpu = new LogSketch()
  let cached = 0
  let errors = 0
  let sum = 0
  let dmax: number | null = null
  let gmax: number | null = null
  for (const r of runs) {
    if (r.status === 'cached') cached++
    if (r.status === 'error') errors++
    const d = r.duration_ms === null ? null : Number(r.duration_ms)
    if (r.status !== 'cached' && d !== null && Number.isFinite(d)) {
      durations.add(d)
      sum += d
      dmax = dmax === null ? d : Math.max(dmax, d)
    }
    const g = r.gpu_memory_used === null ? null : Number(r.gpu_memory_used)
    if (g !== null && Number.isFinite(g)) {
      gpu.add(g)
      gmax = gmax === null ? g : Math.max(gmax, g)
    }
  }
  return {
    origin: key[0],
    node_type: key[1],
    hour: key[2],
    runs: runs.length,
    executed: runs.length - cached,
    cached,
    errors,
    duration_sum_ms: sum,
    duration_max_ms: dmax,
    gpu_max_mib: gmax,
    duration_sketch: durations.toJSON(),
    gpu_sketch: gpu.toJSON(),
  }
}

/**
 * Node runs of one bucket (`?` placeholders: origin, node_type, hour start, hour end). `origin || ''` keeps the
 * planner off the primary key (origin first), which would scan every row of the origin, and on the
 * timestamp_start index: one hour.
 */
export const SELECT_BUCKET_RUNS_SQL =
  "SELECT status, duration_ms, gpu_memory_used FROM node_runs WHERE origin || '' = ? AND COALESCE(node_type, '') = ? AND timestamp_start >= ? AND timestamp_start < ?"

/** Old bucket keys of node runs about to be replaced (`?`: origin, session_id, node_id). */
export const SELECT_RUN_BUCKET_SQL =
  'SELECT origin, node_type, timestamp_start FROM node_runs WHERE origin = ? AND session_id = ? AND node_id = ?'

export const DELETE_ROLLUP_SQL =
  'DELETE FROM node_run_rollups WHERE origin = ? AND node_type = ? AND hour = ?'

const ROLLUP_COLUMNS = [
  'origin',
  'node_type',
  'hour',
  'runs',
  'executed',
  'cached',
  'errors',
  'duration_sum_ms',
  'duration_max_ms',
  'gpu_max_mib',
  'duration_sketch',
  'gpu_sketch',
] as const

export const UPSERT_ROLLUP_SQL =
  `INSERT INTO node_run_rollups (${ROLLUP_COLUMNS.join(', ')}) VALUES (${ROLLUP_COLUMNS.map(() => '?').join(', ')}) ` +
  `ON CONFLICT (origin, node_type, hour) DO UPDATE SET ${ROLLUP_COLUMNS.slice(3)
    .map((c) => `${c} = excluded.${c}`)
    .join(', ')}`

/** Parameters of {@link UPSERT_ROLLUP_SQL}. */
export function rollupParams(r: RollupRow): ColumnValue[] {
  return [
    r.origin,
    r.node_type,
    r.hour,
    r.runs,
    r.executed,
    r.cached,
    r.errors,
    r.duration_sum_ms,
    r.duration_max_ms,
    r.gpu_max_mib,
    JSON.stringify(r.duration_sketch),
    JSON.stringify(r.gpu_sketch),
  ]
}

/** A stored row back; throws naming the bucket when a sketch does not parse. */
export function rowToRollup(row: Record<string, unknown>): RollupRow {
  const where = `rollup ${String(row.origin)} ${String(row.node_type)} ${String(row.hour)}`
  const sketch = (text: unknown): LogSketchData => {
    try {
      return parseSketch(String(text))
    } catch (error) {
      throw new Error(
        `${where}: stored sketch does not parse: ${error instanceof Error ? error.message : String(error)}`,
      )
    }
  }
  const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
  return {
    origin: String(row.origin),
    node_type: String(row.node_type),
    hour: String(row.hour),
    runs: Number(row.runs),
    executed: Number(row.executed),
    cached: Number(row.cached),
    errors: Number(row.errors),
    duration_sum_ms: Number(row.duration_sum_ms),
    duration_max_ms: num(row.duration_max_ms),
    gpu_max_mib: num(row.gpu_max_mib),
    duration_sketch: sketch(row.duration_sketch),
    gpu_sketch: sketch(row.gpu_sketch),
  }
}

/** The read query of {@link RollupFilter}, ordered by hour (or day). */
export function rollupsQuery(filter: RollupFilter): { sql: string; params: ColumnValue[] } {
  const where: string[] = []
  const params: ColumnValue[] = []
  const add = (clause: string, value: string): void => {
    where.push(clause)
    params.push(value)
  }
  if (filter.origin !== undefined) add('origin = ?', filter.origin)
  if (filter.nodeType !== undefined) add('node_type = ?', filter.nodeType)
  const { table, time } = grainTable(NODE_DAILY, filter.grain)
  if (filter.since !== undefined) add(`${time} >= ?`, filter.since)
  if (filter.until !== undefined) add(`${time} < ?`, filter.until)
  const select = time === 'hour' ? '*' : `*, ${time} AS hour`
  return {
    sql: `SELECT ${select} FROM ${table}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${time}, origin, node_type`,
    params,
  }
}

/** Bucket keys (deduplicated) that a set of node-run rows touches. */
export function bucketKeys(
  runs: Iterable<Pick<NodeRunRow, 'origin' | 'node_type' | 'timestamp_start'>>,
): Map<string, [string, string, string]> {
  const out = new Map<string, [string, string, string]>()
  for (const r of runs) {
    const k = rollupKey(r)
    out.set(JSON.stringify(k), k)
  }
  return out
}

/**
 * The rollups a set of node-run rows gives, computed in memory in the order {@link rollupsQuery} reads them
 * (hour, origin, node type): what `verify` compares the stored rollups with.
 */
export function replayRollups(runs: Iterable<NodeRunRow>): RollupRow[] {
  const buckets = new Map<string, { key: [string, string, string]; runs: NodeRunRow[] }>()
  for (const run of runs) {
    const key = rollupKey(run)
    const k = JSON.stringify(key)
    let b = buckets.get(k)
    if (!b) buckets.set(k, (b = { key, runs: [] }))
    b.runs.push(run)
  }
  return [...buckets.values()]
    .map((b) => computeRollup(b.key, b.runs))
    .sort(
      (a, b) =>
        compareText(a.hour, b.hour) ||
        compareText(a.origin, b.origin) ||
        compareText(a.node_type, b.node_type),
    )
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * The first difference between the rollups a log gives (`want`) and the stored ones (`have`), as a sentence
 * naming the bucket and the field, or undefined when they agree. Sums of durations may differ in the last bits
 * (floating-point addition depends on the order the rows were read in), so they compare with a tolerance.
 */
export function firstRollupDifference(
  want: readonly RollupRow[],
  have: readonly RollupRow[],
): string | undefined {
  const keyOf = (r: RollupRow): string =>
    `${r.origin} / ${r.node_type === '' ? '(no type)' : r.node_type} / ${r.hour}`
  const w = new Map(want.map((r) => [keyOf(r), r]))
  const h = new Map(have.map((r) => [keyOf(r), r]))
  for (const key of [...new Set([...w.keys(), ...h.keys()])].sort()) {
    const a = w.get(key)
    const b = h.get(key)
    if (!a) return `node_run_rollups row (${key}) is not produced by any node run of the log`
    if (!b) return `node_run_rollups row (${key}) is missing, though the log's node runs produce it`
    for (const field of ROLLUP_COLUMNS.slice(3)) {
      const x = a[field]
      const y = b[field]
      const same =
        field === 'duration_sum_ms'
          ? Math.abs((x as number) - (y as number)) <= 1e-9 * Math.max(1, Math.abs(x as number))
          : JSON.stringify(x) === JSON.stringify(y)
      if (!same) {
        return `node_run_rollups row (${key}) field ${field} is ${JSON.stringify(y).slice(0, 80)}, the log's node runs give ${JSON.stringify(x).slice(0, 80)}`
      }
    }
  }
  return undefined
}

/** The migration statements (same text for both dialects: text, integer and double columns). */
export function rollupMigration(types: { text: string; int: string; real: string }): string[] {
  return [
    `CREATE TABLE node_run_rollups (
      origin ${types.text} NOT NULL,
      node_type ${types.text} NOT NULL,
      hour ${types.text} NOT NULL,
      runs ${types.int} NOT NULL,
      executed ${types.int} NOT NULL,
      cached ${types.int} NOT NULL,
      errors ${types.int} NOT NULL,
      duration_sum_ms ${types.real} NOT NULL,
      duration_max_ms ${types.real},
      gpu_max_mib ${types.real},
      duration_sketch text NOT NULL,
      gpu_sketch text NOT NULL,
      PRIMARY KEY (origin, node_type, hour)
    )`,
    `CREATE INDEX node_run_rollups_hour ON node_run_rollups (hour)`,
  ]
}

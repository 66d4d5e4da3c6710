// Derived-table writes of the PostgreSQL driver: keyed reads, chunked upserts and applying projected changes.
import { applyOutputChange, applySessionChange, type DerivedChanges } from '../project.js'
import {
  NODE_RUN_UPSERT,
  OUTPUT_UPSERT,
  SESSION_UPSERT,
  nodeRunParams,
  outputParams,
  rowToOutput,
  rowToSession,
  sessionParams,
  upsertSql,
  type SqlQuery,
  type SqlRow,
  type UpsertSpec,
} from '../sql-common.js'
import { recomputeTouched, runPlan, touchedBefore } from '../analysis-rollups.js'
import {
  DELETE_ROLLUP_SQL,
  SELECT_BUCKET_RUNS_SQL,
  UPSERT_ROLLUP_SQL,
  bucketKeys,
  computeRollup,
  hourEnd,
  rollupParams,
} from '../rollups.js'
import type { ColumnValue } from '../derived-columns.js'

import { MAX_PARAMS, numbered, type PgClient } from './pg-client.js'

/** Reads the rows of `spec.table` whose keys are listed, in one statement. */
async function selectByKeys(
  client: PgClient,
  spec: UpsertSpec,
  keys: readonly (readonly string[])[],
): Promise<SqlRow[]> {
  if (keys.length === 0) return []
  const keyColumns = spec.columns.slice(0, spec.keyCount)
  const arrays = keyColumns.map((_, i) => keys.map((key) => key[i]))
  const sql =
    `SELECT * FROM ${spec.table} WHERE (${keyColumns.join(', ')}) IN ` +
    `(SELECT * FROM unnest(${keyColumns.map((_, i) => `$${i + 1}::text[]`).join(', ')}))`
  return (await client.query(sql, arrays)).rows
}

/** Upserts rows (distinct keys) in as few statements as the parameter limit allows. */
async function upsertMany(client: PgClient, spec: UpsertSpec, rows: readonly ColumnValue[][]): Promise<void> {
  const perStatement = Math.max(1, Math.floor(MAX_PARAMS / spec.columns.length))
  for (let i = 0; i < rows.length; i += perStatement) {
    const chunk = rows.slice(i, i + perStatement)
    await client.query(numbered(upsertSql(spec, chunk.length)), chunk.flat())
  }
}

function keyOf(row: object, spec: UpsertSpec): string {
  const fields = row as Readonly<Record<string, unknown>>
  return JSON.stringify(spec.columns.slice(0, spec.keyCount).map((c) => String(fields[c])))
}

/** Runs plan steps (`?` placeholders) on the connection. */
export function planExecutor(client: PgClient): (query: SqlQuery) => Promise<SqlRow[]> {
  return async (query) => (await client.query(numbered(query.sql), query.params)).rows ?? []
}

/** Applies projected changes with read-merge-write, batched per table; runs inside the caller's transaction. */
export async function applyChanges(client: PgClient, changes: DerivedChanges): Promise<void> {
  // Analysis rollup buckets of the rows about to be replaced (see analysis-rollups.ts).
  const exec = planExecutor(client)
  const analysisTouched = await runPlan(touchedBefore(changes), exec)
  if (changes.sessions.length > 0) {
    const existing = new Map<string, SqlRow>()
    const keys = changes.sessions.map((c) => [c.origin, c.session_id])
    for (const row of await selectByKeys(client, SESSION_UPSERT, keys))
      existing.set(keyOf(row, SESSION_UPSERT), row)
    const rows = changes.sessions.map((change) => {
      const row = existing.get(keyOf(change, SESSION_UPSERT))
      return sessionParams(applySessionChange(row ? rowToSession(row) : undefined, change))
    })
    await upsertMany(client, SESSION_UPSERT, rows)
  }
  if (changes.nodeRuns.length > 0) {
    // Rollup buckets the replaced rows were in and the new rows are in, recomputed after the upsert.
    const touched = bucketKeys(changes.nodeRuns)
    const keys = changes.nodeRuns.map((r) => [r.origin, r.session_id, r.node_id])
    for (const row of await selectByKeys(client, NODE_RUN_UPSERT, keys)) {
      for (const [k, v] of bucketKeys([
        {
          origin: String(row.origin),
          node_type: row.node_type === null ? null : String(row.node_type),
          timestamp_start: String(row.timestamp_start),
        },
      ]))
        touched.set(k, v)
    }
    await upsertMany(client, NODE_RUN_UPSERT, changes.nodeRuns.map(nodeRunParams))
    for (const key of touched.values()) {
      const runs = (await client.query(numbered(SELECT_BUCKET_RUNS_SQL), [...key, hourEnd(key[2])])).rows
      if (runs.length === 0) await client.query(numbered(DELETE_ROLLUP_SQL), key)
      else await client.query(numbered(UPSERT_ROLLUP_SQL), rollupParams(computeRollup(key, runs as never)))
    }
  }
  await runPlan(recomputeTouched(changes, analysisTouched), exec)
  if (changes.outputs.length > 0) {
    const existing = new Map<string, SqlRow>()
    const keys = changes.outputs.map((c) => [
      c.origin,
      c.session_id,
      c.node_id,
      c.type,
      c.subfolder,
      c.filename,
    ])
    for (const row of await selectByKeys(client, OUTPUT_UPSERT, keys))
      existing.set(keyOf(row, OUTPUT_UPSERT), row)
    const rows = changes.outputs.map((change) => {
      const row = existing.get(keyOf(change, OUTPUT_UPSERT))
      return outputParams(applyOutputChange(row ? rowToOutput(row) : undefined, change))
    })
    await upsertMany(client, OUTPUT_UPSERT, rows)
  }
}

/**
 * The analysis benchmark's bulk form of the store's write path: what the generator emits is projected with
 * the store's own projection (`projectEvents`, `applySessionChange`) and written as derived rows with the
 * store's own row encoders and upserts, many rows per statement and many per transaction; then every rollup
 * bucket is computed with the store's own code (`computeRollup`, and the analysis rollups' recompute plan).
 * It skips the event log itself (no events rows, leaf hashes or checkpoints, so `verify` has nothing to check
 * here) and the per-append bucket recomputation: that is what makes 3M node runs loadable on a small machine.
 * The analysis commands read only derived rows and rollups, so the timings do not depend on how they got there.
 */
import type { AuditEvent, AuditEventInput } from '../src/audit/types.js'
import { recomputeAllAnalysisRollups, runPlan } from '../src/store/analysis-rollups.js'
import { applyOutputChange, applySessionChange, projectEvents } from '../src/store/project.js'
import {
  SELECT_BUCKET_RUNS_SQL,
  UPSERT_ROLLUP_SQL,
  computeRollup,
  hourEnd,
  rollupParams,
} from '../src/store/rollups.js'
import {
  NODE_RUN_UPSERT,
  OUTPUT_UPSERT,
  SESSION_UPSERT,
  nodeRunParams,
  outputParams,
  sessionParams,
  upsertSql,
  type SqlQuery,
  type SqlRow,
  type UpsertSpec,
} from '../src/store/sql-common.js'
import type { ColumnValue } from '../src/store/derived-columns.js'
import type { HistoryTarget } from '../test/helpers/history-generator.js'

/** Runs statements; `rows` statements return rows, the others nothing. */
export interface BulkConnection {
  exec(query: SqlQuery): Promise<SqlRow[]>
  /** Runs `fn` in one transaction. */
  transaction(fn: () => Promise<void>): Promise<void>
  /** Most parameters one statement may take. */
  readonly maxParams: number
}

/** A generator target that writes whole sessions as derived rows. */
export function createBulkLoader(
  conn: BulkConnection,
  origin: string,
): HistoryTarget & { finish(): Promise<void>; rows: { sessions: number; nodeRuns: number } } {
  let seq = 0
  let held: AuditEvent[] = []
  const rows = { sessions: 0, nodeRuns: 0 }
  const write = async (spec: UpsertSpec, values: ColumnValue[][]): Promise<void> => {
    const per = Math.max(1, Math.min(500, Math.floor(conn.maxParams / spec.columns.length)))
    for (let i = 0; i < values.length; i += per) {
      const chunk = values.slice(i, i + per)
      await conn.exec({ sql: upsertSql(spec, chunk.length), params: chunk.flat() })
    }
  }
  const commit = async (events: AuditEvent[]): Promise<void> => {
    // Whole sessions only, so each session's changes fold into one complete row with no read-merge-write.
    const changes = projectEvents(events)
    await conn.transaction(async () => {
      await write(
        SESSION_UPSERT,
        changes.sessions.map((c) => sessionParams(applySessionChange(undefined, c))),
      )
      await write(NODE_RUN_UPSERT, changes.nodeRuns.map(nodeRunParams))
      await write(
        OUTPUT_UPSERT,
        changes.outputs.map((c) => outputParams(applyOutputChange(undefined, c))),
      )
    })
    rows.sessions += changes.sessions.length
    rows.nodeRuns += changes.nodeRuns.length
  }
  return {
    rows,
    async append(inputs: readonly AuditEventInput[]) {
      const events = inputs.map((e) => ({ ...e, origin, seq: seq++ }) as AuditEvent)
      held.push(...events)
      let cut = -1
      for (let i = held.length - 1; i >= 0; i--) {
        if (held[i]!.kind === 'execution.finished') {
          cut = i
          break
        }
      }
      if (cut >= 0 && cut + 1 >= 2000) {
        const ready = held.slice(0, cut + 1)
        held = held.slice(cut + 1)
        await commit(ready)
      }
      return events
    },
    async flush() {
      if (held.length > 0) await commit(held.splice(0))
    },
    async finish() {
      if (held.length > 0) await commit(held.splice(0))
      // node_run_rollups: every bucket the rows give, computed as the dialects compute it on append.
      const buckets = await conn.exec({
        sql: "SELECT DISTINCT origin, COALESCE(node_type, '') AS node_type, substr(timestamp_start, 1, 13) AS h FROM node_runs",
        params: [],
      })
      await conn.transaction(async () => {
        for (const b of buckets) {
          const hour = `${String(b.h)}:00:00.000Z`
          const key: [string, string, string] = [String(b.origin), String(b.node_type), hour]
          const runs = await conn.exec({ sql: SELECT_BUCKET_RUNS_SQL, params: [...key, hourEnd(hour)] })
          await conn.exec({ sql: UPSERT_ROLLUP_SQL, params: rollupParams(computeRollup(key, runs as never)) })
        }
        await runPlan(recomputeAllAnalysisRollups(), (q) => conn.exec(q))
      })
    },
  }
}

/** The subset of better-sqlite3 the SQLite connection uses. */
interface SqliteDb {
  prepare(sql: string): { reader: boolean; all(...p: unknown[]): unknown[]; run(...p: unknown[]): unknown }
  exec(sql: string): unknown
}

/** A bulk connection over a better-sqlite3 database. */
export function sqliteBulkConnection(db: SqliteDb): BulkConnection {
  const cache = new Map<string, ReturnType<SqliteDb['prepare']>>()
  return {
    maxParams: 32_766,
    async exec(q) {
      let stmt = cache.get(q.sql)
      if (!stmt) cache.set(q.sql, (stmt = db.prepare(q.sql)))
      if (stmt.reader) return stmt.all(...q.params) as SqlRow[]
      stmt.run(...q.params)
      return []
    },
    async transaction(fn) {
      // Plain BEGIN/COMMIT: the steps are awaited, which better-sqlite3's transaction() does not allow.
      db.exec('BEGIN IMMEDIATE')
      try {
        await fn()
        db.exec('COMMIT')
      } catch (error) {
        db.exec('ROLLBACK')
        throw error
      }
    },
  }
}

/** The subset of a pg client the PostgreSQL connection uses. */
interface PgClientLike {
  query(sql: string, params?: unknown[]): Promise<{ rows: SqlRow[] }>
}

/** A bulk connection over one pg client (`?` placeholders become `$n`). */
export function postgresBulkConnection(client: PgClientLike): BulkConnection {
  const numbered = (sql: string): string => {
    let n = 0
    return sql.replace(/\?/g, () => `$${++n}`)
  }
  return {
    maxParams: 65_535,
    async exec(q) {
      return (await client.query(numbered(q.sql), q.params)).rows ?? []
    },
    async transaction(fn) {
      await client.query('BEGIN')
      try {
        await fn()
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK')
        throw error
      }
    },
  }
}

/**
 * PostgreSQL store dialect (node-postgres): one database shared by many gateways, each its own log origin.
 * `pg` is imported lazily in `init()`, so SQLite users never load it.
 */
import { reportError } from '../../audit/report-error.js'
import type { AuditEvent, JsonValue, OutputRecord, SessionRecord } from '../../audit/types.js'
import { pendingMigrations, type MigrationOutcome, type MigrationResult } from '../migrations.js'
import type { AppendBatch } from '../append-batch.js'
import { projectEvents } from '../project.js'
import {
  DERIVED_TABLES,
  EVENT_PARAM_COUNT,
  INSERT_CHECKPOINT_SQL,
  PRUNE_RANGE_SQL,
  SELECT_CHECKPOINTS_SQL,
  ORDER_DERIVED_SQL,
  SELECT_DERIVED_SQL,
  SELECT_SESSION_SQL,
  checkpointParams,
  decodeState,
  encodeState,
  eventParams,
  insertEventsSql,
  rowToCheckpoint,
  rowToNodeRun,
  rowToOutput,
  rowToSession,
  rowToStoredEvent,
  storedToEvent,
  type SqlQuery,
  type SqlRow,
} from '../sql-common.js'
import {
  SESSION_COUNTS_SQL,
  eventsPageQuery,
  nodeRunsQuery,
  pagedEvents,
  rowToSessionCount,
  sessionsQuery,
} from '../sql-queries.js'
import type {
  DerivedRows,
  EventFilter,
  NodeRunFilter,
  NodeRunRow,
  ProjectionOutcome,
  PruneRequest,
  RebuildOutcome,
  SessionCount,
  SessionFilter,
  StoreDialect,
  StoreDriver,
  StoredCheckpoint,
  StoredEventRow,
} from '../store.js'
import {
  ANALYSIS_ROLLUP_TABLES,
  recomputeAllAnalysisRollups,
  rowToUsageRollup,
  rowToWorkflowRollup,
  runPlan,
  usageRollupsQuery,
  workflowRollupsQuery,
  type AnalysisRollupFilter,
  type UsageRollupRow,
  type WorkflowRollupRow,
} from '../analysis-rollups.js'
import { DAILY_ROLLUPS_VERSION } from '../daily-rollups.js'
import { QUERY_INDEXES_VERSION, backfillPromptGraphHashes } from '../query-indexes.js'
import { ANALYSIS_ROLLUPS_VERSION, POSTGRES_MIGRATIONS } from './postgres-migrations.js'
import { rollupsQuery, rowToRollup, type RollupFilter, type RollupRow } from '../rollups.js'
import {
  MAX_PARAMS,
  errorText,
  numbered,
  textSafePool,
  type PgClient,
  type PgPool,
  type PgPoolConstructor,
  type PgResult,
} from './pg-client.js'
import { applyChanges, planExecutor } from './pg-derived-writes.js'

/** Options of {@link createPostgresDialect}. */
export interface PostgresDialectOptions {
  /** `postgres://user:password@host:port/database` (take the password from the environment; never log it). */
  readonly url: string
  /** Pool size (default 4): one connection writes, the others serve queries. */
  readonly maxConnections?: number
  /** Receives errors of idle pooled connections (default: reportError). */
  readonly onError?: (error: unknown, context: string) => void
  /**
   * false: the store must already exist. `init()` then refuses a database without comfy-audit's tables instead
   * of creating them (read-only commands must not leave an empty store behind a mistyped URL); an existing
   * store is still migrated to this version's schema. Default true.
   */
  readonly create?: boolean
  /** How long connecting may take before `init()` gives up, ms (default 10 s). */
  readonly connectTimeoutMillis?: number
}

/** The store URL without its password, for messages. */
export function describePostgresUrl(url: string): string {
  try {
    const u = new URL(url)
    u.password = ''
    return u.toString()
  } catch {
    return 'the postgres store URL (unparsable)'
  }
}

/** Any value of int8 range works; this one spells "comfyaud" so it is recognisable in pg_locks. */
const MIGRATION_LOCK_KEY = '7237970109966541156'
/** PostgreSQL allows 65535 bind parameters per statement; stay well below. */
const REBUILD_PAGE_SIZE = 1000

/**
 * A PostgreSQL dialect; several writers may commit at once (`concurrentWriters: true`).
 * @example
 * const store = createRuntimeStore(createPostgresDialect({ url: process.env.AUDIT_DB_URL! }), { origin: 'comfy-audit/a' })
 */
export function createPostgresDialect(options: PostgresDialectOptions): StoreDialect {
  return {
    name: 'postgres',
    capabilities: { transactions: true, concurrentWriters: true },
    createDriver: () => new PostgresDriver(options),
  }
}

class PostgresDriver implements StoreDriver {
  readonly #options: PostgresDialectOptions
  #pool: PgPool | undefined

  constructor(options: PostgresDialectOptions) {
    this.#options = options
  }

  async init(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    const mod = await import('pg')
    const Pool: PgPoolConstructor = mod.default.Pool
    const pool = textSafePool(
      new Pool({
        connectionString: this.#options.url,
        max: this.#options.maxConnections ?? 4,
        connectionTimeoutMillis: this.#options.connectTimeoutMillis ?? 10_000,
      }),
    )
    // Without a listener an idle connection's error (server restart) would crash the process.
    pool.on('error', (error) =>
      (this.#options.onError ?? reportError)(error, 'postgres store: idle connection'),
    )
    const where = describePostgresUrl(this.#options.url)
    try {
      signal?.throwIfAborted()
      let found: PgResult
      try {
        found = await pool.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
      } catch (error) {
        // One line naming the store (never its password) and what the server or the network said.
        throw new Error(`postgres store ${where}: cannot connect: ${errorText(error)}`, { cause: error })
      }
      if (this.#options.create === false && found.rows[0]?.present !== true) {
        throw new Error(
          `no audit store in ${where} (the database has no comfy-audit tables; check --store, the gateway creates them at first start)`,
        )
      }
      signal?.throwIfAborted()
      const outcome = await migrate(pool)
      if (outcome.error) throw outcome.error
      if (
        outcome.results.some(
          (r) =>
            (r.version === ANALYSIS_ROLLUPS_VERSION || r.version === DAILY_ROLLUPS_VERSION) &&
            r.status === 'applied',
        )
      ) {
        // The tables are new: fill them from the rows already stored (nothing to do in a new database).
        await transaction(pool, (client) => runPlan(recomputeAllAnalysisRollups(), planExecutor(client)))
      }
      if (outcome.results.some((r) => r.version === QUERY_INDEXES_VERSION && r.status === 'applied'))
        await transaction(pool, (client) => runPlan(backfillPromptGraphHashes(), planExecutor(client)))
    } catch (error) {
      await pool.end().catch(() => {})
      throw error
    }
    this.#pool = pool
  }

  async append(batch: AppendBatch): Promise<ProjectionOutcome> {
    return this.#transaction(async (client) => {
      const { events, leafHashes } = batch
      const perStatement = Math.floor(MAX_PARAMS / EVENT_PARAM_COUNT)
      for (let i = 0; i < events.length; i += perStatement) {
        const chunk = events.slice(i, i + perStatement)
        const params = chunk.flatMap((event, j) => eventParams(event, leafHashes[i + j]!))
        await client.query(numbered(insertEventsSql(chunk.length)), params)
      }
      await applyChanges(client, batch.changes)
      return { problems: batch.changes.problems }
    })
  }

  async lastSeq(origin: string): Promise<number> {
    const rows = await this.#all({
      sql: 'SELECT MAX(seq) AS seq FROM events WHERE origin = ?',
      params: [origin],
    })
    const seq = rows[0]?.seq
    return seq === null || seq === undefined ? -1 : Number(seq)
  }

  async origins(): Promise<string[]> {
    const rows = await this.#all({ sql: 'SELECT DISTINCT origin FROM events ORDER BY origin', params: [] })
    return rows.map((row) => String(row.origin))
  }

  async sessionIds(origin: string): Promise<string[]> {
    const rows = await this.#all({
      sql: 'SELECT DISTINCT session_id FROM events WHERE origin = ? AND session_id IS NOT NULL',
      params: [origin],
    })
    return rows.map((row) => String(row.session_id))
  }

  async *events(filter: EventFilter): AsyncGenerator<AuditEvent> {
    for await (const row of this.rawEvents(filter)) yield storedToEvent(row)
  }

  rawEvents(filter: EventFilter): AsyncGenerator<StoredEventRow> {
    return pagedEvents(filter, (query) => this.#all(query))
  }

  async sessions(filter: SessionFilter): Promise<SessionRecord[]> {
    return (await this.#all(sessionsQuery(filter))).map(rowToSession)
  }

  async session(sessionId: string, origin?: string): Promise<SessionRecord | undefined> {
    const query: SqlQuery =
      origin === undefined
        ? { sql: 'SELECT * FROM sessions WHERE session_id = ? ORDER BY origin LIMIT 1', params: [sessionId] }
        : { sql: SELECT_SESSION_SQL, params: [origin, sessionId] }
    const row = (await this.#all(query))[0]
    return row ? rowToSession(row) : undefined
  }

  async nodeRuns(filter: NodeRunFilter): Promise<NodeRunRow[]> {
    return (await this.#all(nodeRunsQuery(filter))).map(rowToNodeRun)
  }

  async rollups(filter: RollupFilter): Promise<RollupRow[]> {
    return (await this.#all(rollupsQuery(filter))).map(rowToRollup)
  }

  async workflowRollups(filter: AnalysisRollupFilter): Promise<WorkflowRollupRow[]> {
    return (await this.#all(workflowRollupsQuery(filter))).map(rowToWorkflowRollup)
  }

  async usageRollups(filter: AnalysisRollupFilter): Promise<UsageRollupRow[]> {
    return (await this.#all(usageRollupsQuery(filter))).map(rowToUsageRollup)
  }

  async outputsBySha256(sha256: string): Promise<OutputRecord[]> {
    const query = {
      sql: `${SELECT_DERIVED_SQL.outputs} WHERE sha256 = ? ${ORDER_DERIVED_SQL.outputs}`,
      params: [sha256],
    }
    return (await this.#all(query)).map(rowToOutput)
  }

  async derivedRows(origin?: string): Promise<DerivedRows> {
    // One REPEATABLE READ transaction: the three tables from one snapshot, even while gateways append.
    return this.#transaction(async (client) => {
      const read = async (table: (typeof DERIVED_TABLES)[number]): Promise<SqlRow[]> => {
        const sql = `${SELECT_DERIVED_SQL[table]}${origin === undefined ? '' : ' WHERE origin = ?'} ${ORDER_DERIVED_SQL[table]}`
        return (await client.query(numbered(sql), origin === undefined ? [] : [origin])).rows
      }
      return {
        sessions: (await read('sessions')).map(rowToSession),
        nodeRuns: (await read('node_runs')).map(rowToNodeRun),
        outputs: (await read('outputs')).map(rowToOutput),
      }
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
  }

  async sessionCounts(): Promise<SessionCount[]> {
    return (await this.#all({ sql: SESSION_COUNTS_SQL, params: [] })).map(rowToSessionCount)
  }

  async rebuildDerived(origin?: string): Promise<RebuildOutcome> {
    return this.#transaction((client) => rebuildWith(client, origin))
  }

  async addCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    await this.#all({ sql: INSERT_CHECKPOINT_SQL, params: checkpointParams(checkpoint) })
  }

  async checkpoints(origin: string): Promise<StoredCheckpoint[]> {
    return (await this.#all({ sql: SELECT_CHECKPOINTS_SQL, params: [origin] })).map(rowToCheckpoint)
  }

  async prunePayloads(request: PruneRequest): Promise<number> {
    return this.#transaction(async (client) => {
      let count = 0
      for (const [from, to] of request.ranges) {
        const params = [request.prunedBy, request.origin, from, to]
        count += (await client.query(numbered(PRUNE_RANGE_SQL), params)).rowCount ?? 0
      }
      await rebuildWith(client, request.origin)
      return count
    })
  }

  async getState(key: string): Promise<JsonValue | undefined> {
    const rows = await this.#all({ sql: 'SELECT value FROM state WHERE key = ?', params: [key] })
    return rows[0] === undefined ? undefined : decodeState(key, rows[0].value)
  }

  async setState(key: string, value: JsonValue): Promise<void> {
    await this.#all({
      sql: 'INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      params: [key, encodeState(value)],
    })
  }

  async close(): Promise<void> {
    const pool = this.#pool
    this.#pool = undefined
    await pool?.end()
  }

  #open(): PgPool {
    if (!this.#pool) throw new Error('postgres store is not open (init() not called, or closed)')
    return this.#pool
  }

  async #all(query: SqlQuery): Promise<SqlRow[]> {
    return (await this.#open().query(numbered(query.sql), query.params)).rows
  }

  async #transaction<T>(fn: (client: PgClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    return transaction(this.#open(), fn, begin)
  }
}

/** Deletes and recomputes derived rows inside the caller's transaction. */
async function rebuildWith(client: PgClient, origin: string | undefined): Promise<RebuildOutcome> {
  // EXCLUSIVE blocks other writers (appends of any gateway) but not readers, until the rebuild commits;
  // events first, in the order appends take them, so the two cannot deadlock.
  await client.query(
    `LOCK TABLE events, sessions, node_runs, outputs, node_run_rollups, ${ANALYSIS_ROLLUP_TABLES.join(', ')} IN EXCLUSIVE MODE`,
  )
  for (const table of [...DERIVED_TABLES, 'node_run_rollups', ...ANALYSIS_ROLLUP_TABLES]) {
    if (origin === undefined) await client.query(`DELETE FROM ${table}`)
    else await client.query(`DELETE FROM ${table} WHERE origin = $1`, [origin])
  }
  const problems: string[] = []
  let count = 0
  let after: { origin: string; seq: number } | undefined
  for (;;) {
    const query = eventsPageQuery(origin === undefined ? {} : { origin }, after, REBUILD_PAGE_SIZE)
    const rows = (await client.query(numbered(query.sql), query.params)).rows
    if (rows.length === 0) break
    const events = rows.map((row) => storedToEvent(rowToStoredEvent(row)))
    const changes = projectEvents(events)
    await applyChanges(client, changes)
    problems.push(...changes.problems)
    count += events.length
    const last = events[events.length - 1] as AuditEvent
    after = { origin: last.origin, seq: last.seq }
    if (rows.length < REBUILD_PAGE_SIZE) break
  }
  return { events: count, problems }
}

async function transaction<T>(
  pool: PgPool,
  fn: (client: PgClient) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  // A checked-out connection that the server ends (restart, admin shutdown) emits 'error' between queries;
  // the pool listens only to idle ones, and an unheard 'error' would crash the gateway. The next query
  // fails anyway, and the store retries the commit.
  const onError = (error: Error): void => {
    broken = error
  }
  client.on('error', onError)
  try {
    await client.query(begin)
    try {
      const result = await fn(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        // A connection that cannot even roll back is discarded rather than returned to the pool.
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError))
      })
      throw error
    }
  } finally {
    client.off('error', onError)
    client.release(broken)
  }
}

/**
 * Applies pending migrations in one transaction under a transaction-level advisory lock: a second gateway
 * starting at the same moment waits, then finds them applied.
 */
async function migrate(pool: PgPool): Promise<MigrationOutcome> {
  const results: MigrationResult[] = []
  try {
    await transaction(pool, async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`)
      await client.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL)',
      )
      const rows = (await client.query('SELECT version FROM schema_migrations')).rows
      const applied = new Set(rows.map((r) => Number(r.version)))
      const done: MigrationResult[] = []
      for (const m of POSTGRES_MIGRATIONS) {
        if (applied.has(m.version)) done.push({ version: m.version, name: m.name, status: 'already-applied' })
      }
      for (const m of pendingMigrations(POSTGRES_MIGRATIONS, applied)) {
        for (const statement of m.statements) await client.query(statement)
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          m.version,
          m.name,
          new Date().toISOString(),
        ])
        done.push({ version: m.version, name: m.name, status: 'applied' })
      }
      results.push(...done)
    })
    return { results }
  } catch (error) {
    return { results, error: error instanceof Error ? error : new Error(String(error)) }
  }
}

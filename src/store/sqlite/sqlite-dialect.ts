/**
 * SQLite store dialect (better-sqlite3): the default, one file per gateway.
 *
 * Durability: WAL journal with `synchronous=FULL` by default. In WAL mode NORMAL survives a process crash
 * but may roll back the last commits on power loss or an OS crash, because it fsyncs the WAL only at
 * checkpoints. comfy-audit acknowledges an event only once it is committed and promises never to lose an
 * acknowledged event, so every commit fsyncs the WAL; group commits (see runtime-store.ts) spread that one
 * fsync over many events. `synchronous: 'normal'` is available for throwaway data.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { AuditEvent, JsonValue, OutputRecord, SessionRecord } from '../../audit/types.js'
import type { AppendBatch } from '../append-batch.js'
import { pendingMigrations, type MigrationOutcome, type MigrationResult } from '../migrations.js'
import { applyOutputChange, applySessionChange, projectEvents, type DerivedChanges } from '../project.js'
import {
  DERIVED_TABLES,
  INSERT_CHECKPOINT_SQL,
  INSERT_EVENT_SQL,
  PRUNE_RANGE_SQL,
  SELECT_CHECKPOINTS_SQL,
  ORDER_DERIVED_SQL,
  SELECT_DERIVED_SQL,
  SELECT_OUTPUT_SQL,
  SELECT_SESSION_SQL,
  UPSERT_NODE_RUN_SQL,
  UPSERT_OUTPUT_SQL,
  UPSERT_SESSION_SQL,
  checkpointParams,
  decodeState,
  derivedTableQuery,
  encodeState,
  eventParams,
  nodeRunParams,
  outputParams,
  rowToCheckpoint,
  rowToNodeRun,
  rowToOutput,
  rowToSession,
  rowToStoredEvent,
  sessionParams,
  sessionQuery,
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
  DELETE_ROLLUP_SQL,
  SELECT_BUCKET_RUNS_SQL,
  SELECT_RUN_BUCKET_SQL,
  UPSERT_ROLLUP_SQL,
  bucketKeys,
  computeRollup,
  hourEnd,
  rollupParams,
  rollupsQuery,
  rowToRollup,
  type RollupFilter,
  type RollupRow,
} from '../rollups.js'
import {
  ANALYSIS_ROLLUP_TABLES,
  recomputeAllAnalysisRollups,
  recomputeTouched,
  runPlanSync,
  touchedBefore,
  usageRollupsQuery,
  workflowRollupsQuery,
  type AnalysisRollupFilter,
  type UsageRollupRow,
  type WorkflowRollupRow,
  rowToUsageRollup,
  rowToWorkflowRollup,
} from '../analysis-rollups.js'
import { DAILY_ROLLUPS_VERSION } from '../daily-rollups.js'
import { QUERY_INDEXES_VERSION, backfillPromptGraphHashes } from '../query-indexes.js'
import { ANALYSIS_ROLLUPS_VERSION, SQLITE_MIGRATIONS } from './sqlite-migrations.js'
import { loadBetterSqlite3, textSafe, type SqliteDatabase, type SqliteStatement } from './sqlite-database.js'
import { createWorkerSqliteDriver } from './sqlite-worker-driver.js'

/** Options of {@link createSqliteDialect}. */
export interface SqliteDialectOptions {
  /** Database file (parent folders are created), or `:memory:`. */
  readonly path: string
  /** `full` (default): every commit is fsynced. `normal`: may lose the last commits on power loss. */
  readonly synchronous?: 'full' | 'normal'
  /** How long to wait for another process's write lock, in ms (default 5000). */
  readonly busyTimeoutMillis?: number
  /**
   * `main` (default): the database runs on the calling thread. `worker`: it runs on a worker thread, so commits
   * (and their fsync) never block the caller's event loop: the gateway's proxy path must not wait for disk.
   */
  readonly thread?: 'main' | 'worker'
}

/**
 * A SQLite dialect. One writer at a time (`concurrentWriters: false`), so the runtime store serializes writes.
 * @example
 * const store = createRuntimeStore(createSqliteDialect({ path: './data/audit.db' }), { origin: 'comfy-audit/a' })
 */
export function createSqliteDialect(options: SqliteDialectOptions): StoreDialect {
  return {
    name: 'sqlite',
    capabilities: { transactions: true, concurrentWriters: false },
    createDriver: () =>
      options.thread === 'worker' ? createWorkerSqliteDriver(options) : new SqliteDriver(options),
  }
}

interface Statements {
  insertEvent: SqliteStatement
  selectSession: SqliteStatement
  upsertSession: SqliteStatement
  upsertNodeRun: SqliteStatement
  selectOutput: SqliteStatement
  upsertOutput: SqliteStatement
  lastSeq: SqliteStatement
  getState: SqliteStatement
  setState: SqliteStatement
  insertCheckpoint: SqliteStatement
  selectCheckpoints: SqliteStatement
  pruneRange: SqliteStatement
  selectRunBucket: SqliteStatement
  selectBucketRuns: SqliteStatement
  upsertRollup: SqliteStatement
  deleteRollup: SqliteStatement
}

/** The driver itself; {@link createWorkerSqliteDriver} runs one of these on a worker thread. */
export class SqliteDriver implements StoreDriver {
  readonly #options: SqliteDialectOptions
  #db: SqliteDatabase | undefined
  #statements: Statements | undefined
  #appendTx: ((batch: AppendBatch) => readonly string[]) | undefined
  #rebuildTx: ((origin: string | undefined) => RebuildOutcome) | undefined
  #pruneTx: ((request: PruneRequest) => number) | undefined

  constructor(options: SqliteDialectOptions) {
    this.#options = options
  }

  async init(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    const { path } = this.#options
    if (path !== ':memory:' && !path.startsWith('file:')) mkdirSync(dirname(path), { recursive: true })
    const Database = await loadBetterSqlite3()
    signal?.throwIfAborted()
    const db = textSafe(new Database(path))
    try {
      db.pragma('journal_mode = WAL')
      db.pragma(`synchronous = ${this.#options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`)
      db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(this.#options.busyTimeoutMillis ?? 5000))}`)
      const outcome = migrate(db)
      if (outcome.error) throw outcome.error
      if (
        outcome.results.some(
          (r) =>
            (r.version === ANALYSIS_ROLLUPS_VERSION || r.version === DAILY_ROLLUPS_VERSION) &&
            r.status === 'applied',
        )
      ) {
        // The tables are new: fill them from the rows already stored (nothing to do in a new database).
        const cache = new Map<string, SqliteStatement>()
        db.transaction(() => runPlanSync(recomputeAllAnalysisRollups(), planExecutor(db, cache))).immediate()
      }
      if (outcome.results.some((r) => r.version === QUERY_INDEXES_VERSION && r.status === 'applied'))
        db.transaction(() =>
          runPlanSync(backfillPromptGraphHashes(), planExecutor(db, new Map())),
        ).immediate()
    } catch (error) {
      db.close()
      throw error
    }
    const statements: Statements = {
      insertEvent: db.prepare(INSERT_EVENT_SQL),
      selectSession: db.prepare(SELECT_SESSION_SQL),
      upsertSession: db.prepare(UPSERT_SESSION_SQL),
      upsertNodeRun: db.prepare(UPSERT_NODE_RUN_SQL),
      selectOutput: db.prepare(SELECT_OUTPUT_SQL),
      upsertOutput: db.prepare(UPSERT_OUTPUT_SQL),
      lastSeq: db.prepare('SELECT MAX(seq) AS seq FROM events WHERE origin = ?'),
      getState: db.prepare('SELECT value FROM state WHERE key = ?'),
      setState: db.prepare(
        'INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      insertCheckpoint: db.prepare(INSERT_CHECKPOINT_SQL),
      selectCheckpoints: db.prepare(SELECT_CHECKPOINTS_SQL),
      pruneRange: db.prepare(PRUNE_RANGE_SQL),
      selectRunBucket: db.prepare(SELECT_RUN_BUCKET_SQL),
      selectBucketRuns: db.prepare(SELECT_BUCKET_RUNS_SQL),
      upsertRollup: db.prepare(UPSERT_ROLLUP_SQL),
      deleteRollup: db.prepare(DELETE_ROLLUP_SQL),
    }
    const exec = planExecutor(db, new Map())
    const apply = (changes: DerivedChanges): void => applyChanges(statements, changes, exec)
    const append = db.transaction((batch: AppendBatch): readonly string[] => {
      const leaves = batch.leafHashes
      batch.events.forEach((event, i) => statements.insertEvent.run(...eventParams(event, leaves[i]!)))
      apply(batch.changes)
      return batch.changes.problems
    })
    const rebuild = db.transaction((origin: string | undefined): RebuildOutcome => {
      for (const table of [...DERIVED_TABLES, 'node_run_rollups', ...ANALYSIS_ROLLUP_TABLES]) {
        if (origin === undefined) db.prepare(`DELETE FROM ${table}`).run()
        else db.prepare(`DELETE FROM ${table} WHERE origin = ?`).run(origin)
      }
      const problems: string[] = []
      let count = 0
      let after: { origin: string; seq: number } | undefined
      const pageSize = 1000
      for (;;) {
        const query = eventsPageQuery(origin === undefined ? {} : { origin }, after, pageSize)
        const rows = db.prepare(query.sql).all(...query.params) as SqlRow[]
        if (rows.length === 0) break
        const events = rows.map((row) => storedToEvent(rowToStoredEvent(row)))
        const changes = projectEvents(events)
        apply(changes)
        problems.push(...changes.problems)
        count += events.length
        const last = events[events.length - 1] as AuditEvent
        after = { origin: last.origin, seq: last.seq }
        if (rows.length < pageSize) break
      }
      return { events: count, problems }
    })
    const prune = db.transaction((request: PruneRequest): number => {
      let count = 0
      for (const [from, to] of request.ranges) {
        const result = statements.pruneRange.run(request.prunedBy, request.origin, from, to) as {
          changes: number
        }
        count += result.changes
      }
      // Nested: better-sqlite3 runs it as a savepoint of this transaction.
      rebuild(request.origin)
      return count
    })
    // IMMEDIATE takes the write lock at BEGIN, so a transaction never fails halfway on another process's lock.
    this.#appendTx = (batch) => append.immediate(batch)
    this.#rebuildTx = (origin) => rebuild.immediate(origin)
    this.#pruneTx = (request) => prune.immediate(request)
    this.#db = db
    this.#statements = statements
  }

  async append(batch: AppendBatch): Promise<ProjectionOutcome> {
    const append = this.#appendTx
    if (!append) throw notOpen()
    return { problems: append(batch) }
  }

  async lastSeq(origin: string): Promise<number> {
    const row = this.#stmts().lastSeq.get(origin) as { seq: number | null } | undefined
    return row?.seq ?? -1
  }

  async origins(): Promise<string[]> {
    const rows = this.#all({ sql: 'SELECT DISTINCT origin FROM events ORDER BY origin', params: [] })
    return rows.map((row) => String(row.origin))
  }

  async sessionIds(origin: string): Promise<string[]> {
    const rows = this.#all({
      sql: 'SELECT DISTINCT session_id FROM events WHERE origin = ? AND session_id IS NOT NULL',
      params: [origin],
    })
    return rows.map((row) => String(row.session_id))
  }

  async *events(filter: EventFilter): AsyncGenerator<AuditEvent> {
    for await (const row of this.rawEvents(filter)) yield storedToEvent(row)
  }

  rawEvents(filter: EventFilter): AsyncGenerator<StoredEventRow> {
    return pagedEvents(filter, async (query) => this.#all(query))
  }

  async sessions(filter: SessionFilter): Promise<SessionRecord[]> {
    return this.#all(sessionsQuery(filter)).map(rowToSession)
  }

  async session(sessionId: string, origin?: string): Promise<SessionRecord | undefined> {
    const row = this.#all(sessionQuery(sessionId, origin))[0]
    return row ? rowToSession(row) : undefined
  }

  async nodeRuns(filter: NodeRunFilter): Promise<NodeRunRow[]> {
    return this.#all(nodeRunsQuery(filter)).map(rowToNodeRun)
  }

  async rollups(filter: RollupFilter): Promise<RollupRow[]> {
    return this.#all(rollupsQuery(filter)).map(rowToRollup)
  }

  async workflowRollups(filter: AnalysisRollupFilter): Promise<WorkflowRollupRow[]> {
    return this.#all(workflowRollupsQuery(filter)).map(rowToWorkflowRollup)
  }

  async usageRollups(filter: AnalysisRollupFilter): Promise<UsageRollupRow[]> {
    return this.#all(usageRollupsQuery(filter)).map(rowToUsageRollup)
  }

  async outputsBySha256(sha256: string): Promise<OutputRecord[]> {
    const query = {
      sql: `${SELECT_DERIVED_SQL.outputs} WHERE sha256 = ? ${ORDER_DERIVED_SQL.outputs}`,
      params: [sha256],
    }
    return this.#all(query).map(rowToOutput)
  }

  async derivedRows(origin?: string): Promise<DerivedRows> {
    const read = (table: (typeof DERIVED_TABLES)[number]): SqlRow[] =>
      this.#all(derivedTableQuery(table, origin))
    return {
      sessions: read('sessions').map(rowToSession),
      nodeRuns: read('node_runs').map(rowToNodeRun),
      outputs: read('outputs').map(rowToOutput),
    }
  }

  async sessionCounts(): Promise<SessionCount[]> {
    return this.#all({ sql: SESSION_COUNTS_SQL, params: [] }).map(rowToSessionCount)
  }

  async rebuildDerived(origin?: string): Promise<RebuildOutcome> {
    const rebuild = this.#rebuildTx
    if (!rebuild) throw notOpen()
    return rebuild(origin)
  }

  async addCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    this.#stmts().insertCheckpoint.run(...checkpointParams(checkpoint))
  }

  async checkpoints(origin: string): Promise<StoredCheckpoint[]> {
    return (this.#stmts().selectCheckpoints.all(origin) as SqlRow[]).map(rowToCheckpoint)
  }

  async prunePayloads(request: PruneRequest): Promise<number> {
    const prune = this.#pruneTx
    if (!prune) throw notOpen()
    return prune(request)
  }

  async getState(key: string): Promise<JsonValue | undefined> {
    const row = this.#stmts().getState.get(key) as { value: string } | undefined
    return row === undefined ? undefined : decodeState(key, row.value)
  }

  async setState(key: string, value: JsonValue): Promise<void> {
    this.#stmts().setState.run(key, encodeState(value))
  }

  async close(): Promise<void> {
    const db = this.#db
    this.#db = undefined
    this.#statements = undefined
    this.#appendTx = undefined
    this.#rebuildTx = undefined
    this.#pruneTx = undefined
    db?.close()
  }

  #stmts(): Statements {
    if (!this.#statements) throw notOpen()
    return this.#statements
  }

  /** Runs one read query (the worker-thread driver pages events through it). */
  async queryRows(query: SqlQuery): Promise<SqlRow[]> {
    return this.#all(query)
  }

  #all(query: SqlQuery): SqlRow[] {
    if (!this.#db) throw notOpen()
    // Whole pages, not iterate(): a cursor left open between awaits would block every other statement.
    return this.#db.prepare(query.sql).all(...query.params) as SqlRow[]
  }
}

function notOpen(): Error {
  return new Error('sqlite store is not open (init() not called, or closed)')
}

/** Runs plan steps on the database, preparing each distinct statement once. */
function planExecutor(
  db: SqliteDatabase,
  cache: Map<string, SqliteStatement>,
): (query: SqlQuery) => SqlRow[] {
  return (query) => {
    let stmt = cache.get(query.sql)
    if (!stmt) cache.set(query.sql, (stmt = db.prepare(query.sql)))
    if (stmt.reader) return stmt.all(...query.params) as SqlRow[]
    stmt.run(...query.params)
    return []
  }
}

/** Applies projected changes with read-merge-write per row; runs inside the caller's transaction. */
function applyChanges(s: Statements, changes: DerivedChanges, exec: (query: SqlQuery) => SqlRow[]): void {
  // Analysis rollup buckets of the rows about to be replaced (see analysis-rollups.ts).
  const analysisTouched = runPlanSync(touchedBefore(changes), exec)
  for (const change of changes.sessions) {
    const row = s.selectSession.get(change.origin, change.session_id) as SqlRow | undefined
    const next = applySessionChange(row ? rowToSession(row) : undefined, change)
    s.upsertSession.run(...sessionParams(next))
  }
  // Rollup buckets the replaced rows were in and the new rows are in, recomputed after the upserts.
  const touched = bucketKeys(changes.nodeRuns)
  for (const run of changes.nodeRuns) {
    const old = s.selectRunBucket.get(run.origin, run.session_id, run.node_id) as SqlRow | undefined
    if (old) {
      for (const [k, v] of bucketKeys([
        {
          origin: String(old.origin),
          node_type: old.node_type === null ? null : String(old.node_type),
          timestamp_start: String(old.timestamp_start),
        },
      ]))
        touched.set(k, v)
    }
  }
  for (const run of changes.nodeRuns) s.upsertNodeRun.run(...nodeRunParams(run))
  for (const key of touched.values()) {
    const runs = s.selectBucketRuns.all(key[0], key[1], key[2], hourEnd(key[2])) as SqlRow[]
    if (runs.length === 0) s.deleteRollup.run(...key)
    else s.upsertRollup.run(...rollupParams(computeRollup(key, runs as never)))
  }
  runPlanSync(recomputeTouched(changes, analysisTouched), exec)
  for (const change of changes.outputs) {
    const key = [
      change.origin,
      change.session_id,
      change.node_id,
      change.type,
      change.subfolder,
      change.filename,
    ]
    const row = s.selectOutput.get(...key) as SqlRow | undefined
    const next = applyOutputChange(row ? rowToOutput(row) : undefined, change)
    s.upsertOutput.run(...outputParams(next))
  }
}

/** Applies pending migrations inside one IMMEDIATE transaction, so two processes cannot both apply one. */
function migrate(db: SqliteDatabase): MigrationOutcome {
  const results: MigrationResult[] = []
  try {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    )
    const run = db.transaction(() => {
      const rows = db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]
      const applied = new Set(rows.map((r) => r.version))
      // Collected aside and published only after COMMIT, so a failed run reports nothing as applied.
      const done: MigrationResult[] = []
      for (const m of SQLITE_MIGRATIONS) {
        if (applied.has(m.version)) done.push({ version: m.version, name: m.name, status: 'already-applied' })
      }
      for (const m of pendingMigrations(SQLITE_MIGRATIONS, applied)) {
        for (const statement of m.statements) db.exec(statement)
        db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
          m.version,
          m.name,
          new Date().toISOString(),
        )
        done.push({ version: m.version, name: m.name, status: 'applied' })
      }
      return done
    })
    results.push(...run.immediate())
    return { results }
  } catch (error) {
    return { results, error: error instanceof Error ? error : new Error(String(error)) }
  }
}

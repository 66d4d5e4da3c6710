/**
 * `comfy-audit export --format sqlite`: a standalone SQLite file holding the sessions, node runs, outputs and
 * events of a store (SQLite or PostgreSQL, every origin). The file is itself a comfy-audit SQLite store (same
 * schema, same migrations), so every command reads it with `--store sqlite:FILE`, and with a full export
 * `verify` checks it against the checkpoints it carries: events are copied exactly as stored (payload text,
 * leaf hash, prune mark), never re-serialized.
 *
 * The file is written under a temporary name beside the target and renamed into place when complete, so a
 * failed export never leaves a half-written file under the requested name.
 */
import { loadBetterSqlite3 } from '../store/sqlite/sqlite-database.js'
import { rename, rm } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import type { OutputRecord, SessionRecord } from '../audit/types.js'
import { sessionKey } from '../store/project.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { createRuntimeStore } from '../store/runtime-store.js'
import {
  INSERT_CHECKPOINT_SQL,
  UPSERT_NODE_RUN_SQL,
  UPSERT_OUTPUT_SQL,
  UPSERT_SESSION_SQL,
  checkpointParams,
  nodeRunParams,
  outputParams,
  sessionParams,
} from '../store/sql-common.js'
import type { NodeRunRow } from '../store/store.js'
import { encodeStoredParams } from '../store/stored-text.js'
import { createSqliteDialect } from '../store/sqlite/sqlite-dialect.js'

/** What the export reads: any runtime store. */
export type ExportSource = Pick<RuntimeStore, 'derivedRows' | 'rawEvents' | 'checkpoints' | 'origins'>

/** Options of {@link exportToSqlite}. */
export interface ExportSqliteOptions {
  /**
   * Only sessions queued at or after this ISO time, with their node runs, outputs and events (sessions
   * without a queue time are left out once a window is given); events of no session are kept by their own time.
   */
  readonly since?: string
  /** Only sessions queued before this ISO time (exclusive); see `since`. */
  readonly until?: string
}

/** What went into the file. */
export interface ExportSqliteSummary {
  readonly file: string
  readonly sessions: number
  readonly nodeRuns: number
  readonly outputs: number
  readonly events: number
  readonly checkpoints: number
}

const INSERT_RAW_EVENT_SQL =
  'INSERT INTO events (origin, seq, kind, time, session_id, payload, leaf_hash, pruned, payload_format) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'

/** Rows per transaction: big enough to be fast, small enough that memory stays flat on a large log. */
const ROWS_PER_TRANSACTION = 5000

function inWindow(time: string | null | undefined, options: ExportSqliteOptions): boolean {
  if (time === null || time === undefined) return false
  if (options.since !== undefined && time < options.since) return false
  if (options.until !== undefined && time >= options.until) return false
  return true
}

/**
 * Writes the store's records to a new standalone SQLite file (replacing `file` once complete).
 * @example
 * const summary = await exportToSqlite(store, './audit-2026-11.sqlite', { since: '2026-11-01T00:00:00.000Z' })
 */
export async function exportToSqlite(
  store: ExportSource,
  file: string,
  options: ExportSqliteOptions = {},
): Promise<ExportSqliteSummary> {
  const target = resolve(file)
  const tmp = resolve(dirname(target), `.${basename(target)}.${process.pid}.tmp`)
  const windowed = options.since !== undefined || options.until !== undefined
  await removeDatabase(tmp)

  // The schema comes from the SQLite dialect's own migrations, so the file opens as a store.
  const schema = createRuntimeStore(createSqliteDialect({ path: tmp, synchronous: 'normal' }), {
    origin: 'comfy-audit/export',
  })
  await schema.init()
  await schema.close()

  const Database = await loadBetterSqlite3()
  const db = new Database(tmp)
  let committed = false
  try {
    // One self-contained file: no WAL beside it.
    db.pragma('journal_mode = DELETE')
    db.pragma('synchronous = OFF')
    // Strings are stored the way the store's own driver stores them (lone surrogates kept, see stored-text.ts).
    const prepare = (sql: string): { run(...params: unknown[]): unknown } => {
      const statement = db.prepare(sql)
      return { run: (...params) => statement.run(...encodeStoredParams(params)) }
    }
    const insertSession = prepare(UPSERT_SESSION_SQL)
    const insertNodeRun = prepare(UPSERT_NODE_RUN_SQL)
    const insertOutput = prepare(UPSERT_OUTPUT_SQL)
    const insertEvent = prepare(INSERT_RAW_EVENT_SQL)
    const insertCheckpoint = prepare(INSERT_CHECKPOINT_SQL)

    const rows = await store.derivedRows()
    const sessions: SessionRecord[] = windowed
      ? rows.sessions.filter((s) => inWindow(s.queued_at, options))
      : rows.sessions
    const kept = new Set(sessions.map((s) => sessionKey(s.origin, s.session_id)))
    const nodeRuns: NodeRunRow[] = rows.nodeRuns.filter((r) => kept.has(sessionKey(r.origin, r.session_id)))
    const outputs: OutputRecord[] = rows.outputs.filter((o) => kept.has(sessionKey(o.origin, o.session_id)))

    let pending = 0
    db.exec('BEGIN')
    const step = (): void => {
      if (++pending < ROWS_PER_TRANSACTION) return
      db.exec('COMMIT')
      db.exec('BEGIN')
      pending = 0
    }
    for (const s of sessions) {
      insertSession.run(...sessionParams(s))
      step()
    }
    for (const r of nodeRuns) {
      insertNodeRun.run(...nodeRunParams(r))
      step()
    }
    for (const o of outputs) {
      insertOutput.run(...outputParams(o))
      step()
    }
    let events = 0
    for await (const e of store.rawEvents()) {
      const keep = !windowed
        ? true
        : e.session_id === null
          ? inWindow(e.time, options)
          : kept.has(sessionKey(e.origin, e.session_id))
      if (!keep) continue
      // The payload's format travels with its text: the same bytes read as another format are another value.
      insertEvent.run(
        e.origin,
        e.seq,
        e.kind,
        e.time,
        e.session_id,
        e.payload,
        e.leaf_hash,
        e.pruned,
        e.payload_format ?? 0,
      )
      events++
      step()
    }
    let checkpoints = 0
    for (const origin of await store.origins()) {
      for (const cp of await store.checkpoints(origin)) {
        insertCheckpoint.run(...checkpointParams(cp))
        checkpoints++
        step()
      }
    }
    db.exec('COMMIT')
    committed = true
    db.close()
    await rename(tmp, target)
    return {
      file: target,
      sessions: sessions.length,
      nodeRuns: nodeRuns.length,
      outputs: outputs.length,
      events,
      checkpoints,
    }
  } finally {
    if (!committed) {
      try {
        db.close()
      } catch {
        // Already closed or never opened: the file is removed below either way.
      }
      await removeDatabase(tmp)
    }
  }
}

async function removeDatabase(path: string): Promise<void> {
  await Promise.all(['', '-wal', '-shm', '-journal'].map((suffix) => rm(`${path}${suffix}`, { force: true })))
}

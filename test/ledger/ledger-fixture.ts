/**
 * A populated SQLite audit store with a ledger, for the ledger, evidence and retention tests.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { AuditEventInput, JsonObject } from '../../src/audit/types.js'
import { loadOrCreateSigningKey, type SigningKey } from '../../src/ledger/key-store.js'
import { createLedger } from '../../src/ledger/ledger.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

export const ORIGIN = 'comfy-audit/test'
const T0 = Date.parse('2026-01-01T00:00:00.000Z')

/** ISO time `seconds` after a fixed start. */
export function at(seconds: number): string {
  return new Date(T0 + seconds * 1000).toISOString()
}

/** The seven events of a small successful session with one output hashed. */
export function sessionEvents(sessionId: string, user: string, start: number): AuditEventInput[] {
  const ev = (kind: AuditEventInput['kind'], payload: JsonObject, t: number): AuditEventInput => ({
    kind,
    time: at(start + t),
    session_id: sessionId,
    payload,
  })
  const file = { node_id: '9', type: 'output', subfolder: '', filename: `${sessionId}_00001_.png` }
  const run = (nodeId: string, status: string): JsonObject => ({
    session_id: sessionId,
    node_id: nodeId,
    node_type: nodeId === '4' ? 'CheckpointLoaderSimple' : 'KSampler',
    timestamp_start: at(start + 1),
    timestamp_end: at(start + 2),
    duration_ms: 1000,
    inputs: { seed: 2n ** 64n - 1n },
    outputs: null,
    status,
    error_message: null,
    exception_type: null,
    traceback: null,
    gpu_memory_used: 100,
    gpu_memory_torch: 90,
    display_node: nodeId,
    real_node_id: nodeId,
    parent_node_id: null,
    progress: null,
  })
  return [
    ev(
      'prompt.submitted',
      {
        session: {
          status: 'queued',
          queued_at: at(start),
          submitter: { user, auth_method: 'token', client_address: null, user_agent: null, client_id: null },
          models: [
            { folder: 'checkpoints', name: 'sd15.safetensors', node_id: '4', input_name: 'ckpt_name' },
          ],
        },
      },
      0,
    ),
    ev('prompt.accepted', { session: { http_status: 200 } }, 0),
    ev('execution.started', { session: { status: 'running', started_at: at(start + 1) } }, 1),
    ev('node.finished', { node_run: run('4', 'success') }, 2),
    ev('node.finished', { node_run: run('3', 'success'), outputs: [file] }, 3),
    ev('execution.finished', { session: { status: 'success', ended_at: at(start + 4) } }, 4),
    ev(
      'output.hashed',
      { outputs: [{ ...file, sha256: 'ab'.repeat(32), bytes: 10, width: 8, height: 8 }] },
      5,
    ),
  ]
}

/** A data dir with a SQLite store holding `sessions` sessions, checkpointed every `every` events. */
export interface Populated {
  readonly dir: string
  readonly dbPath: string
  readonly key: SigningKey
  readonly events: number
  open(): RuntimeStore
}

export async function populate(sessions = 3, every = 5): Promise<Populated> {
  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-ledger-'))
  const dbPath = join(dir, 'audit.sqlite')
  const key = await loadOrCreateSigningKey(dir, ORIGIN)
  const open = (): RuntimeStore =>
    createRuntimeStore(createSqliteDialect({ path: dbPath }), { origin: ORIGIN })
  const store = open()
  await store.init()
  const ledger = createLedger({
    store,
    signer: key.signer,
    checkpointEvery: every,
    checkpointIntervalMillis: 0,
  })
  await ledger.start()
  let count = 0
  for (let i = 0; i < sessions; i++) {
    // One append per event: commits (and so checkpoints) fall at predictable sizes.
    for (const e of sessionEvents(`s${i + 1}`, i % 2 ? 'bob' : 'alice', i * 100)) {
      await store.append([e])
      count++
    }
  }
  await ledger.close()
  await store.close()
  return { dir, dbPath, key, events: count, open }
}

/** A stored events row. */
export interface EventRow {
  origin: string
  seq: number
  kind: string
  time: string
  session_id: string | null
  payload: string
  leaf_hash: string | null
  pruned: number | null
}

/** Opens the SQLite file directly, as an attacker with file access would. */
export function withDb<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path)
  try {
    return fn(db)
  } finally {
    db.close()
  }
}

/** Rewrites the whole events table through a transform of its rows. */
export function rewriteEvents(path: string, transform: (rows: EventRow[]) => EventRow[]): void {
  withDb(path, (db) => {
    const rows = db.prepare('SELECT * FROM events ORDER BY origin, seq').all() as EventRow[]
    const next = transform(rows.map((r) => ({ ...r })))
    db.transaction(() => {
      db.prepare('DELETE FROM events').run()
      const insert = db.prepare(
        'INSERT INTO events (origin, seq, kind, time, session_id, payload, leaf_hash, pruned) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      for (const r of next)
        insert.run(r.origin, r.seq, r.kind, r.time, r.session_id, r.payload, r.leaf_hash, r.pruned)
    })()
  })
}

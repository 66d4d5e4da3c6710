/**
 * `exportToSqlite` from both store dialects: the file it writes is a standalone comfy-audit SQLite store
 * holding exactly what the source holds (every origin), or the sessions of a time window with their rows.
 */
import { existsSync, readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson, stringifyJson } from '../../src/audit/json.js'
import type { AuditEventInput, JsonObject } from '../../src/audit/types.js'
import { exportToSqlite } from '../../src/query/export-sqlite.js'
import { sessionEvents } from '../../src/sinks/sink-test-kit.js'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import type { StoreDialect, StoredEventRow } from '../../src/store/store.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'

/** A whole run (submitted … finished, with an output file) on `day` (YYYY-MM-DD), as capture would emit it. */
function run(sessionId: string, day: string): AuditEventInput[] {
  const text = stringifyJson(sessionEvents({ sessionId }) as unknown as JsonObject[]).replaceAll(
    '2026-11-26',
    day,
  )
  const parsed = parseJson(text)
  if (!parsed.ok) throw new Error(parsed.reason)
  const events = (parsed.value as unknown as AuditEventInput[]).map(
    ({ kind, time, session_id, payload }) => ({
      kind,
      time,
      session_id,
      payload,
    }),
  )
  events.push({
    kind: 'output.hashed',
    time: `${day}T04:34:06.000Z`,
    session_id: sessionId,
    payload: {
      outputs: [
        {
          node_id: '9',
          filename: `${sessionId}.png`,
          subfolder: '',
          type: 'output',
          sha256: 'ab'.repeat(32),
        },
      ],
    },
  })
  return events
}

async function all<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of iterable) out.push(x)
  return out
}

interface Source {
  name: string
  dialect: () => Promise<StoreDialect>
}

let cluster: PostgresCluster | undefined
let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'export-sqlite-'))
  cluster = await startPostgres()
})
afterAll(async () => {
  await cluster?.stop()
  await rm(dir, { recursive: true, force: true })
})

const sources: Source[] = [
  {
    name: 'sqlite',
    dialect: async () =>
      createSqliteDialect({ path: join(await mkdtemp(join(dir, 'src-')), 'audit.sqlite') }),
  },
  {
    name: 'postgres',
    dialect: async () => createPostgresDialect({ url: await cluster!.createDatabase() }),
  },
]

describe.each(sources)('exportToSqlite from $name', ({ dialect }) => {
  let a: RuntimeStore
  let b: RuntimeStore
  let prunedSeq = -1

  beforeAll(async () => {
    // Two gateways (origins) writing to one store, as in a render farm.
    const d = await dialect()
    a = createRuntimeStore(d, { origin: 'gw-a' })
    b = createRuntimeStore(d, { origin: 'gw-b' })
    await a.init()
    await b.init()
    await a.append([...run('a-1', '2026-11-01'), ...run('a-2', '2026-11-03')])
    await b.append(run('b-1', '2026-11-02'))
    const [cleared] = await b.append([
      { kind: 'action.queue_clear', time: '2026-11-02T10:00:00.000Z', session_id: null, payload: {} },
      { kind: 'action.queue_clear', time: '2026-11-04T10:00:00.000Z', session_id: null, payload: {} },
    ])
    // A pruned payload and a checkpoint must come across exactly as stored.
    const [pruneEvent] = await b.append([
      {
        kind: 'audit.pruned',
        time: '2026-11-05T00:00:00.000Z',
        session_id: null,
        payload: { ranges: [[cleared!.seq, cleared!.seq]] },
      },
    ])
    prunedSeq = cleared!.seq
    await b.prunePayloads({ origin: 'gw-b', ranges: [[prunedSeq, prunedSeq]], prunedBy: pruneEvent!.seq })
    await a.addCheckpoint({
      origin: 'gw-a',
      size: 5,
      root_hash: 'cm9vdA==',
      note: 'gw-a\n5\ncm9vdA==\n\n— key sig\n',
      created_at: '2026-11-05T00:00:00.000Z',
    })
  })

  afterAll(async () => {
    await a?.close()
    await b?.close()
  })

  async function openExport(file: string): Promise<RuntimeStore> {
    const store = createRuntimeStore(createSqliteDialect({ path: file }), { origin: 'reader' })
    await store.init()
    return store
  }

  it('writes every origin exactly as stored into a file that opens as a store', async () => {
    const file = join(dir, `full-${Math.random().toString(36).slice(2)}.sqlite`)
    const summary = await exportToSqlite(a, file)
    expect(summary).toMatchObject({ sessions: 3, nodeRuns: 3, outputs: 3, checkpoints: 1 })
    // A standalone file (checked before a store opens it in WAL mode): the tables a user expects, no journal or WAL beside it, no temporary left.
    const db = new Database(file, { readonly: true })
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
        name: string
      }[]
      expect(tables.map((t) => t.name)).toEqual(
        expect.arrayContaining(['sessions', 'node_runs', 'outputs', 'events', 'checkpoints']),
      )
      expect(db.pragma('journal_mode', { simple: true })).toBe('delete')
    } finally {
      db.close()
    }
    expect(readdirSync(dir).filter((f) => f.includes('.tmp') || f.endsWith('-wal'))).toEqual([])
    const copy = await openExport(file)
    try {
      expect(await copy.derivedRows()).toEqual(await a.derivedRows())
      const events: StoredEventRow[] = await all(copy.rawEvents())
      expect(events).toEqual(await all(a.rawEvents()))
      expect(summary.events).toBe(events.length)
      const pruned = events.find((e) => e.origin === 'gw-b' && e.seq === prunedSeq)
      expect(pruned).toMatchObject({ payload: '{}', kind: 'action.queue_clear' })
      expect(pruned!.pruned).not.toBeNull()
      expect(events.every((e) => typeof e.leaf_hash === 'string')).toBe(true)
      expect(await copy.origins()).toEqual(['gw-a', 'gw-b'])
      expect(await copy.checkpoints('gw-a')).toEqual(await a.checkpoints('gw-a'))
      expect((await copy.sessions()).map((s) => `${s.origin}/${s.session_id}/${s.status}`)).toEqual([
        'gw-a/a-2/success',
        'gw-b/b-1/success',
        'gw-a/a-1/success',
      ])
    } finally {
      await copy.close()
    }
  })

  it('keeps only the sessions of a time window, with their rows and events', async () => {
    const file = join(dir, `window-${Math.random().toString(36).slice(2)}.sqlite`)
    const summary = await exportToSqlite(a, file, {
      since: '2026-11-02T00:00:00.000Z',
      until: '2026-11-03T00:00:00.000Z',
    })
    expect(summary).toMatchObject({ sessions: 1, nodeRuns: 1, outputs: 1, checkpoints: 1 })
    const copy = await openExport(file)
    try {
      expect((await copy.sessions()).map((s) => s.session_id)).toEqual(['b-1'])
      expect((await copy.nodeRuns()).map((r) => r.session_id)).toEqual(['b-1'])
      const events = await all(copy.rawEvents())
      // b-1's events and the one session-less event of Nov 2 (pruned, still there with its hash).
      expect(new Set(events.map((e) => e.session_id))).toEqual(new Set(['b-1', null]))
      expect(events.filter((e) => e.session_id === null).map((e) => e.time)).toEqual([
        '2026-11-02T10:00:00.000Z',
      ])
      expect(summary.events).toBe(events.length)
    } finally {
      await copy.close()
    }
  })

  it('replaces an existing file only once the new one is complete, and leaves nothing when it fails', async () => {
    const file = join(dir, `again-${Math.random().toString(36).slice(2)}.sqlite`)
    await exportToSqlite(a, file, { since: '2026-11-03T00:00:00.000Z' })
    await exportToSqlite(a, file)
    const copy = await openExport(file)
    expect((await copy.sessions()).length).toBe(3)
    await copy.close()
    const failing = { ...pick(a), rawEvents: () => failingEvents() }
    const other = join(dir, `failed-${Math.random().toString(36).slice(2)}.sqlite`)
    await expect(exportToSqlite(failing, other)).rejects.toThrow('source went away')
    expect(existsSync(other)).toBe(false)
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([])
  })
})

function pick(store: RuntimeStore): Parameters<typeof exportToSqlite>[0] {
  return {
    derivedRows: (o) => store.derivedRows(o),
    rawEvents: (f) => store.rawEvents(f),
    checkpoints: (o) => store.checkpoints(o),
    origins: () => store.origins(),
  }
}

// eslint-disable-next-line require-yield
async function* failingEvents(): AsyncGenerator<StoredEventRow> {
  throw new Error('source went away')
}

import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson } from '../../src/audit/json.js'
import type { AuditEventInput, JsonObject } from '../../src/audit/types.js'
import { eventLeafHex } from '../../src/audit/event-leaf.js'
import { storedRowEvent, storedRowLeaf } from '../../src/ledger/ledger.js'
import { NODE_RUN_COLUMNS, SESSION_COLUMNS } from '../../src/store/derived-columns.js'
import type { StoredEventRow } from '../../src/store/store.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { at, describeStoreContract, input, nodeRun } from './contract.js'

let dir = ''
let counter = 0
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-sqlite-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describeStoreContract('sqlite (memory)', () => createSqliteDialect({ path: ':memory:' }), {
  persistent: false,
})
describeStoreContract(
  'sqlite (file)',
  () => createSqliteDialect({ path: join(dir, `db-${++counter}`, 'audit.db') }),
  {
    persistent: true,
  },
)

// The gateway runs SQLite on a worker thread so commits never block proxying: the same contract holds there.
describeStoreContract(
  'sqlite (file, worker thread)',
  () => createSqliteDialect({ path: join(dir, `db-${++counter}`, 'audit.db'), thread: 'worker' }),
  {
    persistent: true,
  },
)

describe('sqlite dialect', () => {
  it('creates parent folders and opens the file in WAL mode with synchronous FULL', async () => {
    const path = join(dir, 'nested', 'deeper', 'audit.db')
    const store = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/a' })
    await store.append([input('gateway.started', null)])
    expect(existsSync(path)).toBe(true)
    const other = new Database(path, { readonly: true })
    try {
      expect(other.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(other.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all()).toEqual([
        { version: 1, name: 'initial' },
        { version: 2, name: 'ledger' },
        { version: 3, name: 'node run rollups' },
        { version: 4, name: 'node run previews' },
        { version: 5, name: 'analysis indexes' },
        { version: 6, name: 'analysis rollups' },
        { version: 7, name: 'analysis index fix' },
        { version: 8, name: 'event payloads as standard JSON' },
        { version: 9, name: 'daily and model usage rollups' },
        { version: 10, name: 'query indexes' },
      ])
    } finally {
      other.close()
    }
    await store.close()
  })

  it('refuses to open a database migrated by a newer version', async () => {
    const path = join(dir, 'newer', 'audit.db')
    const first = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/a' })
    await first.init()
    await first.close()
    const db = new Database(path)
    db.prepare("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01T00:00:00.000Z')").run()
    db.close()
    const second = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/a' })
    await expect(second.init()).rejects.toThrow(/schema version 99 is newer/)
    await second.close()
  })

  it("stores sessions and node-run JSON columns as standard JSON that SQLite's json_extract reads (issue 10 item 12)", async () => {
    const path = join(dir, 'json-extract', 'audit.db')
    const store = createRuntimeStore(createSqliteDialect({ path, thread: 'worker' }), { origin: 'gw/a' })
    const parsed = parseJson(
      '{"session":{"status":"queued","extra_data":{"v":NaN,"inf":-Infinity,"cfg":1.0,"tag":{"$float":"NaN"}},' +
        '"prompt":{"3":{"class_type":"KSampler","inputs":{"cfg":1.0,"seed":18446744073709551615}}}}}',
    )
    if (!parsed.ok) throw new Error(parsed.reason)
    await store.append([
      input('prompt.submitted', 's1', parsed.value as JsonObject),
      input('node.finished', 's1', {
        node_run: nodeRun('s1', '3', {
          inputs: { cfg: NaN, steps: 20 },
          outputs: { images: [{ filename: 'a.png', subfolder: '', type: 'output' }] },
          traceback: ['line\n'],
        }) as unknown as JsonObject,
      }),
    ])
    const session = await store.session('s1')
    await store.close()
    const db = new Database(path, { readonly: true })
    try {
      const jsonColumns = (table: string, names: readonly (readonly [string, string])[]): string[] =>
        names.filter(([, kind]) => kind === 'json').map(([name]) => `${table}.${name}`)
      for (const column of [
        ...jsonColumns('sessions', SESSION_COLUMNS),
        ...jsonColumns('node_runs', NODE_RUN_COLUMNS),
      ]) {
        const [table, name] = column.split('.') as [string, string]
        // json_valid is strict RFC 8259 even where json_extract also takes JSON5 (bare NaN): older SQLite builds
        // refuse anything json_valid refuses.
        const row = db
          .prepare(
            `SELECT count(*) AS n, sum(json_valid(${name})) AS valid FROM ${table} WHERE ${name} IS NOT NULL`,
          )
          .get() as { n: number; valid: number | null }
        expect({ column, valid: row.valid ?? 0 }).toEqual({ column, valid: row.n })
      }
      expect(
        db
          .prepare(
            `SELECT json_extract(extra_data, '$.v."$float"') AS v, json_extract(extra_data, '$.cfg') AS cfg,
                    json_extract(prompt, '$."3".inputs.cfg') AS prompt_cfg FROM sessions`,
          )
          .get(),
      ).toEqual({ v: 'NaN', cfg: 1, prompt_cfg: 1 })
      expect(db.prepare(`SELECT extra_data FROM sessions`).get() as { extra_data: string }).toEqual({
        extra_data:
          '{"v":{"$float":"NaN"},"inf":{"$float":"-Infinity"},"cfg":1.0,"tag":{"$escape":{"$float":"NaN"}}}',
      })
      expect(
        db
          .prepare(
            `SELECT json_extract(inputs, '$.cfg."$float"') AS cfg, json_extract(inputs, '$.steps') AS steps FROM node_runs`,
          )
          .get(),
      ).toEqual({ cfg: 'NaN', steps: 20 })
    } finally {
      db.close()
    }
    // The read path gives back NaN where ComfyUI sent NaN, and the escaped object as the data it was.
    const extra = session?.extra_data as JsonObject
    expect(Number.isNaN(extra.v)).toBe(true)
    expect(extra.inf).toBe(-Infinity)
    expect(extra.tag).toEqual({ $float: 'NaN' })
    const reopened = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/a' })
    const [run] = await reopened.nodeRuns({ sessionId: 's1' })
    expect(Number.isNaN((run?.inputs as JsonObject).cfg)).toBe(true)
    await reopened.close()
  })

  it('stores event payloads as standard JSON that json_extract reads, and reads older rows as written (issue 10 item 12)', async () => {
    const path = join(dir, 'payload-json', 'audit.db')
    const store = createRuntimeStore(createSqliteDialect({ path, thread: 'worker' }), { origin: 'gw/a' })
    const parsed = parseJson(
      '{"session":{"status":"queued","extra_data":{"v":NaN,"cfg":1.0,"tag":{"$float":"NaN"}}}}',
    )
    if (!parsed.ok) throw new Error(parsed.reason)
    await store.append([input('prompt.submitted', 's1', parsed.value as JsonObject)])
    await store.close()
    const db = new Database(path)
    try {
      const all = db
        .prepare(
          'SELECT count(*) AS n, sum(json_valid(payload)) AS valid, min(payload_format) AS f FROM events',
        )
        .get() as { n: number; valid: number; f: number }
      expect(all).toEqual({ n: 1, valid: 1, f: 1 })
      expect(
        db
          .prepare(
            `SELECT json_extract(payload, '$.session.extra_data.v."$float"') AS v,
                    json_extract(payload, '$.session.extra_data.cfg') AS cfg FROM events`,
          )
          .get(),
      ).toEqual({ v: 'NaN', cfg: 1 })
      // A row written before migration 8 (format 0): bare NaN, and an object of its own that looks like a tag.
      const legacy = {
        origin: 'gw/a',
        seq: 1,
        kind: 'prompt.submitted' as const,
        time: at(1),
        session_id: 's0',
        payload: { session: { status: 'queued', extra_data: { v: NaN, tag: { $float: 'NaN' } } } },
      }
      db.prepare(
        'INSERT INTO events (origin, seq, kind, time, session_id, payload, leaf_hash, payload_format) VALUES (?, ?, ?, ?, ?, ?, ?, 0)',
      ).run(
        legacy.origin,
        7,
        legacy.kind,
        legacy.time,
        legacy.session_id,
        '{"session":{"status":"queued","extra_data":{"v":NaN,"tag":{"$float":"NaN"}}}}',
        eventLeafHex({ ...legacy, seq: 7 }),
      )
    } finally {
      db.close()
    }
    const reopened = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/a' })
    const rows: StoredEventRow[] = []
    for await (const row of reopened.rawEvents()) rows.push(row)
    await reopened.close()
    expect(rows.map((r) => [r.seq, r.payload_format])).toEqual([
      [0, 1],
      [7, 0],
    ])
    // Each row reads back to the value its leaf hashed: the tag decoded in the new row, kept as data in the old.
    for (const row of rows) expect(storedRowLeaf(row)?.toString('hex')).toBe(row.leaf_hash)
    const [fresh, old] = rows.map(
      (r) => storedRowEvent(r)!.payload as { session: { extra_data: JsonObject } },
    )
    expect(Number.isNaN(fresh!.session.extra_data.v)).toBe(true)
    expect(fresh!.session.extra_data.tag).toEqual({ $float: 'NaN' })
    expect(Number.isNaN(old!.session.extra_data.v)).toBe(true)
    expect(old!.session.extra_data.tag).toEqual({ $float: 'NaN' })
  })

  it('reports events per second for 20k events through the runtime store (not asserted)', async () => {
    const store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'bench', 'audit.db') }), {
      origin: 'gw/a',
    })
    await store.init()
    const total = 20_000
    const inputs: AuditEventInput[] = Array.from({ length: total }, (_, i) =>
      input(
        'node.finished',
        `s${i % 50}`,
        { i, session: { status: 'running' }, seed: 2n ** 64n - 1n },
        at(i),
      ),
    )
    const started = performance.now()
    // Many small concurrent appends, as capture makes them: group commit batches them.
    const appends: Promise<unknown>[] = []
    for (let i = 0; i < total; i += 4) appends.push(store.append(inputs.slice(i, i + 4)))
    await Promise.all(appends)
    const seconds = (performance.now() - started) / 1000
    const stats = store.stats()
    console.log(
      `sqlite runtime store: ${total} events in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} events/s, ` +
        `${stats.commits} commits, max commit ${stats.maxCommitMillis.toFixed(1)} ms`,
    )
    expect(await store.lastSeq()).toBe(total - 1)
    await store.close()
  })
})

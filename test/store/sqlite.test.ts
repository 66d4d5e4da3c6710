import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AuditEventInput } from '../../src/audit/types.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { at, describeStoreContract, input } from './contract.js'

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

/**
 * Issue 10 item 2, the store part: a database that refuses commits (SQLite locked by another process for
 * longer than busy_timeout) loses nothing acknowledged. Appends wait in memory, then in the write-ahead
 * spool, and commit in append order once the lock is gone; past the spool's quota the store says so.
 */
import { mkdtemp, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/types.js'
import { openEventSpool } from '../../src/store/event-spool.js'
import {
  createRuntimeStore,
  type RuntimeStore,
  type RuntimeStoreOptions,
} from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { lockSqlite, type SqliteLocker } from '../helpers/sqlite-locker.js'
import { input } from './contract.js'

const ROOT = new URL('../..', import.meta.url).pathname
const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function until(what: string, condition: () => boolean, timeoutMillis = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

async function setup(
  outage: Omit<NonNullable<RuntimeStoreOptions['outage']>, 'spool'> & { spoolMaxBytes?: number } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'store-outage-'))
  const path = join(dir, 'audit.sqlite')
  const spoolDir = join(dir, 'store-spool')
  const open = async (): Promise<RuntimeStore> => {
    const spool = await openEventSpool({ dir: spoolDir, maxBytes: outage.spoolMaxBytes })
    const store = createRuntimeStore(createSqliteDialect({ path, thread: 'worker', busyTimeoutMillis: 50 }), {
      origin: 'gw/outage',
      outage: { retryMinMillis: 5, retryMaxMillis: 40, ...outage, spool },
    })
    await store.init()
    cleanup.push(() => store.close().catch(() => {}))
    return store
  }
  const store = await open()
  return { dir, path, spoolDir, store, open }
}

async function allEvents(store: RuntimeStore): Promise<AuditEvent[]> {
  const out: AuditEvent[] = []
  for await (const e of store.events({ origin: 'gw/outage' })) out.push(e)
  return out
}

describe('issue 10 item 2: a store locked past busy_timeout drops nothing acknowledged', () => {
  it('retries the commits and, once the lock is gone, commits every append once, in order', async () => {
    const { path, store } = await setup()
    await store.append([input('gateway.started', null)])
    const locker: SqliteLocker = await lockSqlite(path, ROOT)
    cleanup.push(() => locker.release())
    const appends = Array.from({ length: 40 }, (_, i) =>
      store.append([input('node.started', `s${i % 4}`, { i })]),
    )
    const settled: string[] = []
    for (const a of appends)
      a.then(
        () => settled.push('ok'),
        () => settled.push('rejected'),
      )
    await until('a failed commit', () => store.health().state === 'retrying')
    expect(store.health()).toMatchObject({ state: 'retrying', queuedEvents: 40 })
    expect(store.health().lastError).toMatch(/locked|busy/i)
    expect(settled).toEqual([])
    await locker.release()
    const results = await Promise.all(appends)
    expect(results.map((r) => r[0]!.payload.i)).toEqual(Array.from({ length: 40 }, (_, i) => i))
    expect(results.map((r) => r[0]!.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    const stored = await allEvents(store)
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 41 }, (_, i) => i))
    expect(store.health()).toMatchObject({ state: 'ok', failingSince: null, queuedEvents: 0 })
    expect(store.health().failedCommits).toBeGreaterThan(0)
  }, 30_000)

  it('spills past the memory bound to the spool, reports over quota past it, and commits all in order', async () => {
    const { path, store, spoolDir } = await setup({ maxQueuedEvents: 5, spoolMaxBytes: 2000 })
    await store.append([input('gateway.started', null)])
    const locker = await lockSqlite(path, ROOT)
    cleanup.push(() => locker.release())
    const appends: Promise<AuditEvent[]>[] = []
    appends.push(store.append([input('node.started', 's', { i: 0 })]))
    await until('a failed commit', () => store.health().state === 'retrying')
    let i = 1
    const deadline = Date.now() + 10_000
    while (store.health().state !== 'over-quota') {
      appends.push(store.append([input('node.started', 's', { i: i++, pad: 'x'.repeat(100) })]))
      await new Promise((resolve) => setImmediate(resolve))
      if (Date.now() > deadline) throw new Error('never over quota')
    }
    const health = store.health()
    expect(health.spooledEvents).toBeGreaterThan(0)
    expect(health.spooledBytes).toBeGreaterThan(0)
    expect(health.spooledBytes).toBeLessThanOrEqual(2000)
    expect((await readdir(spoolDir)).some((n) => n.endsWith('.seg'))).toBe(true)
    // Past the quota nothing is dropped either: it waits in memory.
    appends.push(store.append([input('node.started', 's', { i: i++ })]))
    await locker.release()
    const results = await Promise.all(appends)
    expect(results.map((r) => r[0]!.payload.i)).toEqual(Array.from({ length: i }, (_, k) => k))
    expect((await allEvents(store)).map((e) => e.seq)).toEqual(Array.from({ length: i + 1 }, (_, k) => k))
    expect(store.health()).toMatchObject({ state: 'ok', spooledEvents: 0, spooledBytes: 0, queuedEvents: 0 })
    expect((await readdir(spoolDir)).filter((n) => n.endsWith('.seg'))).toEqual([])
  }, 30_000)

  it('leaves what it could not commit at close in the spool, and the next start commits it first', async () => {
    const { path, store, open } = await setup({ closeGraceMillis: 100 })
    await store.append([input('gateway.started', null)])
    const locker = await lockSqlite(path, ROOT)
    cleanup.push(() => locker.release())
    const appends = Array.from({ length: 5 }, (_, i) =>
      store.append([input('node.started', 's', { i })]).then(
        () => 'committed',
        (error: Error) => error.message,
      ),
    )
    await until('a failed commit', () => store.health().state === 'retrying')
    await store.close()
    for (const a of appends) expect(await a).toMatch(/left in the write-ahead spool/)
    await locker.release()
    const next = await open()
    const [later] = await next.append([input('gateway.started', null, { again: true })])
    const stored = await allEvents(next)
    expect(stored.map((e) => [e.seq, e.payload.i ?? e.payload.again ?? null])).toEqual([
      [0, null],
      [1, 0],
      [2, 1],
      [3, 2],
      [4, 3],
      [5, 4],
      [6, true],
    ])
    expect(later!.seq).toBe(6)
  }, 30_000)
})

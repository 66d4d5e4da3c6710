import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { verifyCheckpoint } from '../../src/ledger/checkpoint.js'
import { loadOrCreateSigningKey } from '../../src/ledger/key-store.js'
import { createLedger } from '../../src/ledger/ledger.js'
import { rootFromLeafHashes } from '../../src/ledger/merkle.js'
import { createFilePublisher, parsePublishedCheckpoints } from '../../src/ledger/publish.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { ORIGIN, sessionEvents } from './ledger-fixture.js'

const dirs: string[] = []
const stores: RuntimeStore[] = []
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function setup(): Promise<{ dir: string; open: () => RuntimeStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-ledger-live-'))
  dirs.push(dir)
  const open = (): RuntimeStore => {
    const s = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: ORIGIN })
    stores.push(s)
    return s
  }
  return { dir, open }
}

async function storedLeaves(store: RuntimeStore): Promise<Buffer[]> {
  const out: Buffer[] = []
  for await (const row of store.rawEvents()) out.push(Buffer.from(row.leaf_hash ?? '', 'hex'))
  return out
}

describe('createLedger', () => {
  it('signs checkpoints every N events and at close, and publishes each one', async () => {
    const { dir, open } = await setup()
    const key = await loadOrCreateSigningKey(dir, ORIGIN)
    const store = open()
    const published = join(dir, 'published.jsonl')
    const ledger = createLedger({
      store,
      signer: key.signer,
      checkpointEvery: 4,
      checkpointIntervalMillis: 0,
      publish: createFilePublisher(published),
    })
    await ledger.start()
    for (const e of sessionEvents('s1', 'alice', 0)) await store.append([e])
    // Checkpoints fall on commit boundaries: 7 -> 9 in one commit passes the threshold at 9.
    await store.append(sessionEvents('s2', 'bob', 10).slice(0, 2))
    await store.append(sessionEvents('s2', 'bob', 10).slice(2, 3))
    await ledger.close()
    const checkpoints = await store.checkpoints()
    expect(checkpoints.map((c) => c.size)).toEqual([4, 9, 10])
    const leaves = await storedLeaves(store)
    for (const cp of checkpoints) {
      const checked = verifyCheckpoint(cp.note, key.verifierKey, ORIGIN)
      expect(checked.ok).toBe(true)
      expect(cp.root_hash).toBe(rootFromLeafHashes(leaves.slice(0, cp.size)).toString('base64'))
    }
    const file = parsePublishedCheckpoints(await readFile(published, 'utf8'))
    expect(file.checkpoints).toEqual(checkpoints)
  })

  it('catches up on events committed while it was not running and resumes from saved state', async () => {
    const { dir, open } = await setup()
    const key = await loadOrCreateSigningKey(dir, ORIGIN)
    const first = open()
    const l1 = createLedger({ store: first, signer: key.signer, checkpointIntervalMillis: 0 })
    await l1.start()
    await first.append(sessionEvents('s1', 'alice', 0))
    await l1.close()
    // Appended with no ledger running (e.g. a crash before the final checkpoint).
    await first.append(sessionEvents('s2', 'bob', 10))
    await first.close()
    const second = open()
    const errors: unknown[] = []
    const l2 = createLedger({
      store: second,
      signer: key.signer,
      checkpointIntervalMillis: 0,
      onError: (e) => errors.push(e),
    })
    await l2.start()
    expect(l2.size).toBe(14)
    await second.append(sessionEvents('s3', 'carol', 20))
    await l2.close()
    expect((await second.checkpoints()).map((c) => c.size)).toEqual([7, 21])
    expect(l2.root()).toEqual(rootFromLeafHashes(await storedLeaves(second)))
    expect(errors).toEqual([])
  })

  it('reports a stored log that no longer matches its checkpoint when it catches up', async () => {
    const { dir, open } = await setup()
    const key = await loadOrCreateSigningKey(dir, ORIGIN)
    const first = open()
    const l1 = createLedger({ store: first, signer: key.signer, checkpointIntervalMillis: 0 })
    await l1.start()
    await first.append(sessionEvents('s1', 'alice', 0))
    await l1.close()
    await first.setState(`ledger.accumulator:${ORIGIN}`, null)
    await first.close()
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(join(dir, 'audit.sqlite'))
    db.prepare("UPDATE events SET payload = '{}', leaf_hash = NULL WHERE seq = 2").run()
    db.close()
    const errors: unknown[] = []
    const l2 = createLedger({
      store: open(),
      signer: key.signer,
      checkpointIntervalMillis: 0,
      onError: (e) => errors.push(e),
    })
    await l2.start()
    await l2.close()
    expect(String(errors[0])).toMatch(/does not match its checkpoint of size 7/)
  })

  it('refuses a key named after another origin', async () => {
    const { dir, open } = await setup()
    const key = await loadOrCreateSigningKey(dir, 'comfy-audit/other')
    expect(() => createLedger({ store: open(), signer: key.signer })).toThrow(/origin/)
  })
})

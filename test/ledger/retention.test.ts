import { rm } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { buildEvidence } from '../../src/ledger/evidence.js'
import { createLedger } from '../../src/ledger/ledger.js'
import { eraseSession, pruneOlderThan } from '../../src/ledger/retention.js'
import { verifyLedger } from '../../src/ledger/verify-ledger.js'
import { at, ORIGIN, populate, withDb, type Populated } from './ledger-fixture.js'

const cleanup: string[] = []
afterEach(async () => {
  for (const dir of cleanup.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function setup(): Promise<Populated> {
  const p = await populate(3, 5)
  cleanup.push(p.dir)
  return p
}

describe('retention', () => {
  it('prunes old payloads, records it, and verify shows the range as pruned', async () => {
    const p = await setup()
    const store = p.open()
    const ledger = createLedger({ store, signer: p.key.signer, checkpointIntervalMillis: 0 })
    await ledger.start()
    const outcome = await pruneOlderThan({ store, before: at(100), user: 'local:test' })
    expect(outcome).toEqual({ pruned: 7, ranges: [[0, 6]], recordedAt: 21 })
    await ledger.close()
    expect(await store.session('s1')).toBeUndefined()
    expect((await store.session('s2'))?.status).toBe('success')
    const report = await verifyLedger({ store, verifierKey: p.key.verifierKey })
    expect(report.problems).toEqual([])
    expect(report.origins[0]).toMatchObject({
      events: 22,
      checkpointed: 22,
      pruned: [{ from: 0, to: 6, by: 21 }],
    })
    // A second run finds nothing new and records nothing.
    expect(await pruneOlderThan({ store, before: at(100), user: 'local:test' })).toEqual({
      pruned: 0,
      ranges: [],
      recordedAt: null,
    })
    await store.close()
  })

  it('erases one session, keeps old checkpoints valid, and refuses its evidence', async () => {
    const p = await setup()
    const store = p.open()
    const outcome = await eraseSession({
      store,
      sessionId: 's2',
      reason: 'GDPR request 42',
      user: 'local:test',
    })
    expect(outcome.ranges).toEqual([[7, 13]])
    const report = await verifyLedger({ store, verifierKey: p.key.verifierKey })
    expect(report.problems).toEqual([])
    expect(report.origins[0]?.pruned).toEqual([{ from: 7, to: 13, by: 21 }])
    expect(await buildEvidence({ store, sessionId: 's2', origin: ORIGIN })).toMatchObject({ ok: false })
    expect((await buildEvidence({ store, sessionId: 's3' })).ok).toBe(true)
    await store.close()
  })

  it('flags a payload removed without a prune record', async () => {
    const p = await setup()
    withDb(p.dbPath, (db) => db.prepare("UPDATE events SET payload = '{}', pruned = 3 WHERE seq = 9").run())
    const store = p.open()
    const report = await verifyLedger({ store, verifierKey: p.key.verifierKey })
    expect(report.problems[0]).toMatchObject({ kind: 'unrecorded-prune', seq: 9 })
    await store.close()
  })
})

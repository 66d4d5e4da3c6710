import { rm } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { parseJson } from '../../src/audit/json.js'
import type { AuditEvent, JsonObject } from '../../src/audit/types.js'
import { eventLeafHex } from '../../src/audit/event-leaf.js'
import { signCheckpoint } from '../../src/ledger/checkpoint.js'
import { generateKey, parseSignerKey } from '../../src/ledger/signed-note.js'
import { verifyLedger, type LedgerReport } from '../../src/ledger/verify-ledger.js'
import { ORIGIN, populate, rewriteEvents, withDb, type EventRow, type Populated } from './ledger-fixture.js'

const cleanup: string[] = []
afterEach(async () => {
  for (const dir of cleanup.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function setup(): Promise<Populated> {
  const p = await populate(3, 5)
  cleanup.push(p.dir)
  return p
}

async function verify(p: Populated, key = p.key.verifierKey): Promise<LedgerReport> {
  const store = p.open()
  try {
    return await verifyLedger({ store, verifierKey: key })
  } finally {
    await store.close()
  }
}

function rehash(row: EventRow): EventRow {
  const parsed = parseJson(row.payload)
  if (!parsed.ok) throw new Error('bad payload')
  const event = { ...row, payload: parsed.value as JsonObject } as unknown as AuditEvent
  return { ...row, leaf_hash: eventLeafHex(event) }
}

describe('verifyLedger', () => {
  it('accepts an untouched log with every event under a signed checkpoint', async () => {
    const p = await setup()
    const report = await verify(p)
    expect(report.problems).toEqual([])
    expect(report.ok).toBe(true)
    expect(report.origins).toEqual([
      { origin: ORIGIN, events: 21, checkpoints: 5, checkpointed: 21, pruned: [] },
    ])
  })

  it('names a modified payload by position', async () => {
    const p = await setup()
    withDb(p.dbPath, (db) =>
      db.prepare("UPDATE events SET payload = replace(payload, 'bob', 'mallory') WHERE seq = 7").run(),
    )
    const report = await verify(p)
    expect(report.ok).toBe(false)
    expect(report.problems[0]).toMatchObject({ kind: 'modified', origin: ORIGIN, seq: 7 })
  })

  it('names the checkpoint interval when the leaf hash was rewritten too', async () => {
    const p = await setup()
    rewriteEvents(p.dbPath, (rows) =>
      rows.map((r) => (r.seq === 7 ? rehash({ ...r, payload: r.payload.replace('bob', 'mallory') }) : r)),
    )
    const report = await verify(p)
    expect(report.problems[0]).toMatchObject({ kind: 'modified', interval: [5, 9] })
  })

  it('names a deleted event as missing', async () => {
    const p = await setup()
    withDb(p.dbPath, (db) => db.prepare('DELETE FROM events WHERE seq = 7').run())
    expect((await verify(p)).problems[0]).toMatchObject({ kind: 'missing', seq: 7 })
  })

  it('names a deleted event as missing when later events were renumbered', async () => {
    const p = await setup()
    rewriteEvents(p.dbPath, (rows) =>
      rows.filter((r) => r.seq !== 7).map((r) => (r.seq > 7 ? { ...r, seq: r.seq - 1 } : r)),
    )
    expect((await verify(p)).problems[0]).toMatchObject({ kind: 'missing', seq: 7 })
  })

  it('names an inserted event, with or without a forged leaf hash', async () => {
    for (const forge of [false, true]) {
      const p = await setup()
      rewriteEvents(p.dbPath, (rows) => {
        const fake: EventRow = { ...rows[7]!, payload: '{"forged":true}', leaf_hash: null }
        const shifted = rows.map((r) => (r.seq >= 7 ? { ...r, seq: r.seq + 1 } : r))
        return [...shifted, forge ? rehash(fake) : fake]
      })
      expect((await verify(p)).problems[0]).toMatchObject({ kind: 'inserted', seq: 7 })
    }
  })

  it('names reordered events', async () => {
    const p = await setup()
    rewriteEvents(p.dbPath, (rows) =>
      rows.map((r) => (r.seq === 3 ? { ...r, seq: 4 } : r.seq === 4 ? { ...r, seq: 3 } : r)),
    )
    expect((await verify(p)).problems[0]).toMatchObject({ kind: 'reordered', seq: 3 })
  })

  it('names a truncated log against the last signed checkpoint', async () => {
    const p = await setup()
    withDb(p.dbPath, (db) => db.prepare('DELETE FROM events WHERE seq >= 12').run())
    expect((await verify(p)).problems[0]).toMatchObject({ kind: 'truncated', seq: 12 })
  })

  it('refuses checkpoints with a bad signature or signed by another key', async () => {
    const p = await setup()
    withDb(p.dbPath, (db) =>
      db.prepare("UPDATE checkpoints SET note = replace(note, '\n10\n', '\n11\n') WHERE size = 10").run(),
    )
    const report = await verify(p)
    expect(report.problems[0]).toMatchObject({ kind: 'bad-signature' })
    expect(report.problems[0]?.detail).toContain('size 10')

    const other = generateKey(ORIGIN)
    const signer = parseSignerKey(other.signerKey)
    if (!signer.ok) throw new Error(signer.reason)
    withDb(p.dbPath, (db) => {
      const note = signCheckpoint(
        { origin: ORIGIN, size: 21, rootHash: Buffer.alloc(32), extensions: [] },
        signer.value,
      )
      db.prepare('UPDATE checkpoints SET note = ?, root_hash = ? WHERE size = 21').run(
        note,
        Buffer.alloc(32).toString('base64'),
      )
    })
    expect(
      (await verify(p)).problems.some((x) => x.kind === 'bad-signature' && x.detail.includes('size 21')),
    ).toBe(true)
    // Verified with another key, every checkpoint is refused.
    const wrong = await verify(p, other.verifierKey)
    expect(wrong.ok).toBe(false)
  })

  it.each([
    [
      'an edited session field',
      "UPDATE sessions SET status = 'error' WHERE session_id = 's2'",
      /sessions row .*s2.* field status/,
    ],
    ['a deleted output row', "DELETE FROM outputs WHERE session_id = 's1'", /outputs row .*s1.* is missing/],
    [
      'an inserted node run',
      "INSERT INTO node_runs (origin, session_id, node_id, timestamp_start, status) VALUES ('comfy-audit/test', 's1', '99', 'x', 'success')",
      /node_runs row .*s1 \/ 99\) is not produced/,
    ],
    [
      'an edited output hash',
      "UPDATE outputs SET sha256 = 'cd' WHERE session_id = 's3'",
      /outputs row .*s3.* field sha256/,
    ],
    [
      'an edited rollup count',
      "UPDATE node_run_rollups SET runs = runs + 1 WHERE node_type = 'KSampler'",
      /node_run_rollups row \(comfy-audit\/test \/ KSampler \/ 2026-01-01T00:00:00.000Z\) field runs is 4, the log's node runs give 3/,
    ],
    [
      'a deleted rollup row',
      "DELETE FROM node_run_rollups WHERE node_type = 'CheckpointLoaderSimple'",
      /node_run_rollups row \(.*CheckpointLoaderSimple.*\) is missing/,
    ],
    [
      'an inserted rollup row',
      "INSERT INTO node_run_rollups SELECT origin, 'VAEDecode', hour, runs, executed, cached, errors, duration_sum_ms, duration_max_ms, gpu_max_mib, duration_sketch, gpu_sketch FROM node_run_rollups WHERE node_type = 'KSampler'",
      /node_run_rollups row \(.*VAEDecode.*\) is not produced by any node run/,
    ],
    [
      'a rewritten duration sketch',
      'UPDATE node_run_rollups SET duration_sketch = \'{"zero":0,"bins":{"1":3}}\' WHERE node_type = \'KSampler\'',
      /node_run_rollups row \(.*KSampler.*\) field duration_sketch/,
    ],
    [
      'an unreadable sketch',
      "UPDATE node_run_rollups SET gpu_sketch = 'not json' WHERE node_type = 'KSampler'",
      /rollup .*KSampler.*stored sketch does not parse/,
    ],
    [
      'an edited usage rollup',
      "UPDATE usage_rollups SET gpu_ms = gpu_ms * 10 WHERE submitter_user = 'bob'",
      /usage_rollups row \(comfy-audit\/test \/ bob \/ .*\) field gpu_ms/,
    ],
    [
      'a deleted workflow rollup',
      "DELETE FROM workflow_rollups WHERE node_type = 'KSampler'",
      /workflow_rollups row \(.*KSampler \/ \(no workflow\).*\) is missing/,
    ],
  ])('detects %s in the derived tables and names the row', async (_name, sql, detail) => {
    const p = await setup()
    withDb(p.dbPath, (db) => db.prepare(sql).run())
    const report = await verify(p)
    expect(report.problems).toHaveLength(1)
    expect(report.problems[0]?.kind).toBe('derived-mismatch')
    expect(report.problems[0]?.detail).toMatch(detail)
  })

  it('names the first differing row by key, and its first differing field, when several differ', async () => {
    const p = await setup()
    withDb(p.dbPath, (db) => {
      db.prepare("UPDATE sessions SET status = 'error' WHERE session_id IN ('s3', 's2')").run()
      db.prepare("UPDATE outputs SET sha256 = 'cd' WHERE session_id = 's1'").run()
    })
    const report = await verify(p)
    expect(report.problems).toHaveLength(1)
    expect(report.problems[0]?.detail).toMatch(
      /^sessions row \(comfy-audit\/test \/ s2\) field status is "error", the log says "(?!error)/,
    )
  })
})

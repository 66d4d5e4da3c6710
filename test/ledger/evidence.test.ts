import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildEvidence, verifyEvidence } from '../../src/ledger/evidence.js'
import { generateKey } from '../../src/ledger/signed-note.js'
import { ORIGIN, populate, type Populated } from './ledger-fixture.js'

let p: Populated
let bundle = ''
beforeAll(async () => {
  p = await populate(4, 5)
  const store = p.open()
  try {
    const built = await buildEvidence({ store, sessionId: 's2' })
    if (!built.ok) throw new Error(built.reason)
    bundle = built.value
  } finally {
    await store.close()
  }
})
afterAll(async () => {
  await rm(p.dir, { recursive: true, force: true })
})

describe('evidence bundles', () => {
  it('verify offline with the log key and summarise models, outputs and submitter', () => {
    const r = verifyEvidence(bundle, p.key.verifierKey)
    if (!r.ok) throw new Error(r.reason)
    expect(r.value).toMatchObject({ origin: ORIGIN, session_id: 's2', events: 7, treeSize: 28 })
    expect(r.value.summary).toMatchObject({
      session: { status: 'success', submitter: { user: 'bob' } },
      outputs: [{ filename: 's2_00001_.png', sha256: 'ab'.repeat(32), bytes: 10 }],
    })
  })

  it('fail with another key', () => {
    const other = generateKey(ORIGIN)
    const r = verifyEvidence(bundle, other.verifierKey)
    expect(r.ok).toBe(false)
  })

  it('fail after any one-character change', () => {
    // Every position in the first and last 400 characters, and every 3rd one between.
    const positions = [...Array(bundle.length).keys()].filter(
      (i) => i < 400 || i >= bundle.length - 400 || i % 3 === 0,
    )
    const accepted: number[] = []
    for (const i of positions) {
      const c = bundle[i]!
      const replacement = c === 'a' ? 'b' : c === '\n' ? ' ' : 'a'
      const changed = bundle.slice(0, i) + replacement + bundle.slice(i + 1)
      if (verifyEvidence(changed, p.key.verifierKey).ok) accepted.push(i)
    }
    expect(positions.length).toBeGreaterThan(1000)
    expect(accepted).toEqual([])
  })

  it('refuses a session no checkpoint covers yet', async () => {
    const store = p.open()
    try {
      await store.append([
        { kind: 'prompt.submitted', time: '2026-01-02T00:00:00.000Z', session_id: 'late', payload: {} },
      ])
      const r = await buildEvidence({ store, sessionId: 'late', origin: ORIGIN })
      expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/no signed checkpoint covers/) })
    } finally {
      await store.close()
    }
  })
})

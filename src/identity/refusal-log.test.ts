import { describe, expect, it } from 'vitest'
import type { JsonObject } from '../audit/types.js'
import { createRefusalLog, type Refusal } from './refusal-log.js'

function refusal(over: Partial<Refusal> = {}): Refusal {
  return {
    status: 401,
    reason: 'authentication required',
    method: 'GET',
    path: '/prompt',
    transport: 'http',
    user: null,
    role: null,
    client_address: '10.0.0.1',
    user_agent: null,
    ...over,
  }
}

function harness(opts: { burst?: number; perMinute?: number; maxKeys?: number } = {}) {
  const clock = { now: 1_800_000_000_000 }
  const recorded: { kind: string; payload: JsonObject }[] = []
  const log = createRefusalLog({
    ...opts,
    summaryIntervalMillis: 0,
    now: () => clock.now,
    record: (kind, payload) => recorded.push({ kind, payload }),
  })
  const kinds = (kind: string) => recorded.filter((r) => r.kind === kind)
  return { clock, recorded, log, kinds }
}

describe('refusal log (issue 10 item 6)', () => {
  it('records the first refusals of a key one by one, then counts them into one summary with a sample', () => {
    const h = harness({ burst: 3, perMinute: 0 })
    for (let i = 0; i < 100; i++) h.log.refused(refusal({ path: `/p${i}` }))
    expect(h.kinds('access.refused').map((r) => r.payload.path)).toEqual(['/p0', '/p1', '/p2'])
    h.log.flush()
    expect(h.kinds('access.refused.summary')).toEqual([
      {
        kind: 'access.refused.summary',
        payload: expect.objectContaining({
          count: 97,
          client_address: '10.0.0.1',
          reason: 'authentication required',
          overflow: false,
          sample: expect.objectContaining({ path: '/p3' }),
        }),
      },
    ])
    h.log.flush()
    expect(h.kinds('access.refused.summary')).toHaveLength(1)
  })

  it('keys by person when known, else by address, and by reason', () => {
    const h = harness({ burst: 1, perMinute: 0 })
    h.log.refused(refusal({ user: 'bob', client_address: '10.0.0.1', reason: 'a' }))
    h.log.refused(refusal({ user: 'bob', client_address: '10.0.0.2', reason: 'a' }))
    h.log.refused(refusal({ user: 'bob', reason: 'b' }))
    h.log.refused(refusal({ client_address: '10.0.0.3', reason: 'a' }))
    h.log.refused(refusal({ client_address: '10.0.0.4', reason: 'a' }))
    expect(h.kinds('access.refused')).toHaveLength(4)
  })

  it('refills each bucket at perMinute', () => {
    const h = harness({ burst: 2, perMinute: 6 })
    for (let i = 0; i < 5; i++) h.log.refused(refusal())
    expect(h.kinds('access.refused')).toHaveLength(2)
    h.clock.now += 10_000 // one token back
    h.log.refused(refusal())
    h.log.refused(refusal())
    expect(h.kinds('access.refused')).toHaveLength(3)
  })

  it('bounds the keys it tracks: past maxKeys new keys are only counted, in one overflow summary', () => {
    const h = harness({ burst: 1, perMinute: 0, maxKeys: 10 })
    for (let i = 0; i < 1000; i++) h.log.refused(refusal({ client_address: `10.0.${i >> 8}.${i & 255}` }))
    expect(h.kinds('access.refused')).toHaveLength(10)
    h.log.close()
    const overflow = h.kinds('access.refused.summary')
    expect(overflow).toHaveLength(1)
    expect(overflow[0]!.payload).toMatchObject({ count: 990, overflow: true, client_address: null })
    h.log.refused(refusal())
    expect(h.recorded).toHaveLength(11)
  })
})

import { afterEach, describe, expect, it } from 'vitest'
import { fakeClock, manyRecords, startRecordingServer, type RecordingServer } from '../sink-test-kit.js'
import { createWebhookSink, signWebhook, verifyWebhook } from './webhook-sink.js'

let server: RecordingServer
afterEach(() => server?.close())
const secret = 'whsec-0123456789abcdef'

describe('webhook sink', () => {
  it('signs the raw body and timestamp with HMAC-SHA256 so the receiver can verify it', async () => {
    server = await startRecordingServer()
    const clock = fakeClock(Date.parse('2026-11-26T04:35:00.000Z'))
    const sink = createWebhookSink({ url: `${server.url}/hook`, secret }, { now: clock.now })
    const records = manyRecords(2)
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    const req = server.requests[0]!
    expect(req.url).toBe('/hook')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.headers['x-comfy-audit-timestamp']).toBe('1795667700')
    const signature = req.headers['x-comfy-audit-signature'] as string
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/)
    const verify = (body: string, ts = req.headers['x-comfy-audit-timestamp'] as string): boolean =>
      verifyWebhook({ secret, body, signature, timestamp: ts, nowMillis: clock.now() })
    expect(verify(req.body)).toBe(true)
    expect(verify(req.body.replace('comfy-audit/test:1', 'comfy-audit/test:9'))).toBe(false)
    expect(verify(req.body, '1795667701')).toBe(false)
    expect(
      verifyWebhook({
        secret: 'another-secret-123',
        body: req.body,
        signature,
        timestamp: '1795667700',
        nowMillis: clock.now(),
      }),
    ).toBe(false)
    expect(
      JSON.parse(req.body.replace(/"seed":(\d+)/g, '"seed":"$1"')).records.map((r: { id: string }) => r.id),
    ).toEqual(records.map((r) => r.id))
  })

  it('refuses a stale timestamp', () => {
    const body = '{"records":[]}'
    const signature = signWebhook(secret, 1000, body)
    expect(
      verifyWebhook({ secret, body, signature, timestamp: '1000', nowMillis: 1_000_000 + 301_000 }),
    ).toBe(false)
    expect(
      verifyWebhook({ secret, body, signature, timestamp: '1000', nowMillis: 1_000_000 + 299_000 }),
    ).toBe(true)
  })

  it('refuses a short secret at startup', () => {
    expect(() => createWebhookSink({ url: 'http://127.0.0.1:1', secret: 'short' })).toThrow(/secret/)
  })
})

/**
 * What every HTTP sink must do, run for each: deliver every record at least once to a receiver that answers
 * 503 for a while and then recovers (driven by a fake clock, no real waiting), through the batch processor
 * and its spool, with ids the receiver can de-duplicate by.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseJson } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import { createBatchProcessor } from './batch-processor.js'
import { createElasticsearchSink } from './elasticsearch/elasticsearch-sink.js'
import { createLokiSink } from './loki/loki-sink.js'
import { createOtlpSink } from './otlp/otlp-sink.js'
import type { HttpSinkConfig, HttpSinkOptions } from './retrying-transport.js'
import {
  fakeClock,
  manyRecords,
  startRecordingServer,
  type RecordedRequest,
  type RecordingServer,
} from './sink-test-kit.js'
import type { AuditSink } from './sink.js'
import { createWebhookSink } from './webhook/webhook-sink.js'

function json(body: string): JsonObject {
  const parsed = parseJson(body)
  if (!parsed.ok) throw new Error(`not JSON: ${parsed.reason}`)
  return parsed.value as JsonObject
}
const arr = (v: JsonValue | undefined): JsonValue[] => (Array.isArray(v) ? v : [])
const obj = (v: JsonValue | undefined): JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {}

interface HttpSinkCase {
  name: string
  create: (config: HttpSinkConfig, options: HttpSinkOptions) => AuditSink
  /** Record ids carried by one request body. */
  ids: (req: RecordedRequest) => string[]
  ok: (req: RecordedRequest) => string
}

const cases: HttpSinkCase[] = [
  {
    name: 'otlp',
    create: (c, o) => createOtlpSink(c, o),
    ids: (req) =>
      arr(json(req.body).resourceSpans).flatMap((rs) =>
        arr(obj(rs).scopeSpans).flatMap((ss) =>
          arr(obj(ss).spans).map(
            (span) =>
              obj(
                arr(obj(span).attributes)
                  .map(obj)
                  .find((a) => a.key === 'comfyui.record_id')?.value,
              ).stringValue as string,
          ),
        ),
      ),
    ok: () => '{}',
  },
  {
    name: 'loki',
    create: (c, o) => createLokiSink(c, o),
    ids: (req) =>
      arr(json(req.body).streams).flatMap((s) => arr(obj(s).values).map((v) => obj(arr(v)[2]).id as string)),
    ok: () => '',
  },
  {
    name: 'elasticsearch',
    // The template request is covered by the Elasticsearch sink's own tests.
    create: (c, o) => createElasticsearchSink({ ...c, template: false }, o),
    ids: (req) =>
      req.body
        .split('\n')
        .filter((_l, i) => i % 2 === 0)
        .filter((l) => l !== '')
        .map((l) => obj(json(l).create)._id as string),
    ok: (req) =>
      JSON.stringify({
        errors: false,
        items: req.body
          .split('\n')
          .filter((_l, i) => i % 2 === 0 && _l)
          .map(() => ({ create: { status: 201 } })),
      }),
  },
  {
    name: 'webhook',
    create: (c, o) => createWebhookSink({ ...c, secret: 'a-secret-of-some-length' }, o),
    ids: (req) => arr(json(req.body).records).map((r) => obj(r).id as string),
    ok: () => '',
  },
]

let dir: string
let server: RecordingServer
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-http-'))
})
afterEach(async () => {
  await server?.close()
  await rm(dir, { recursive: true, force: true })
})

describe.each(cases)('$name sink', (c) => {
  it('delivers every record at least once to a receiver that answers 503 for a while and then recovers', async () => {
    const { openSpool } = await import('./spool.js')
    let down = true
    server = await startRecordingServer((req) =>
      down
        ? { status: 503, headers: { 'retry-after': '2' }, body: 'unavailable' }
        : { status: 200, body: c.ok(req) },
    )
    const clock = fakeClock()
    const sink = c.create(
      {
        url: server.url,
        retry: { maxAttempts: 3, initialBackoffMillis: 500, maxBackoffMillis: 4000, deadlineMillis: 10_000 },
      },
      { now: clock.now, sleep: clock.sleep, random: () => 0.5, hostName: 'render-01' },
    )
    const processor = createBatchProcessor(sink, {
      maxQueueSize: 8,
      maxExportBatchSize: 4,
      scheduledDelayMillis: 3_600_000,
      spool: await openSpool({ dir }),
      now: clock.now,
    })
    const records = manyRecords(14)
    for (const r of records) processor.onEnd(r)
    await processor.forceFlush()
    // Down: each export was tried 3 times (waiting as Retry-After: 2 s asks) and then kept on disk.
    expect(server.requests.length % 3).toBe(0)
    expect(clock.slept.slice(0, 2)).toEqual([2000, 2000])
    expect(processor.health()[0]!.failures).toBe(server.requests.length / 3)
    expect(processor.health()[0]).toMatchObject({ dropped: 0, queued: 0 })
    expect(processor.health()[0]!.spooledBytes).toBeGreaterThan(0)

    clock.advance(3_600_000)
    const before = server.requests.length
    await processor.forceFlush()
    expect(server.requests.length).toBeGreaterThan(before)

    down = false
    const firstUp = server.requests.length
    clock.advance(3_600_000)
    await processor.forceFlush()
    const delivered = server.requests.slice(firstUp)
    expect(delivered.every((r) => r.method === 'POST')).toBe(true)
    const ids = new Set(delivered.flatMap(c.ids))
    expect([...ids].sort()).toEqual(records.map((r) => r.id).sort())
    expect(processor.health()[0]).toMatchObject({ dropped: 0, spooledBytes: 0, queued: 0 })
    await processor.shutdown()
  })

  it('refuses a batch for good on a 400 and counts it dropped', async () => {
    server = await startRecordingServer(() => ({ status: 400, body: '{"error":"bad"}' }))
    const clock = fakeClock()
    const sink = c.create({ url: server.url }, { now: clock.now, sleep: clock.sleep })
    const processor = createBatchProcessor(sink, { scheduledDelayMillis: 3_600_000 })
    for (const r of manyRecords(3)) processor.onEnd(r)
    await processor.forceFlush()
    expect(server.requests).toHaveLength(1)
    expect(processor.health()[0]).toMatchObject({ dropped: 3, failures: 1 })
    expect(processor.health()[0]!.lastError).toMatch(/HTTP 400/)
    await processor.shutdown()
  })

  it('retries a refused connection as a network error', async () => {
    server = await startRecordingServer()
    const url = server.url
    await server.close()
    const clock = fakeClock()
    const sink = c.create({ url, retry: { maxAttempts: 2 } }, { now: clock.now, sleep: clock.sleep })
    const result = await sink.export(manyRecords(1), new AbortController().signal)
    expect(result.status).toBe('retryable')
    expect(clock.slept).toHaveLength(1)
  })
})

import { afterEach, describe, expect, it } from 'vitest'
import { parseJson } from '../../audit/json.js'
import { createBatchProcessor } from '../batch-processor.js'
import {
  fakeClock,
  manyRecords,
  recordsOf,
  sessionEvents,
  startRecordingServer,
  type RecordingServer,
} from '../sink-test-kit.js'
import { createElasticsearchSink } from './elasticsearch-sink.js'

let server: RecordingServer
afterEach(() => server?.close())

const item = (status: number, error?: { type: string; reason: string }): unknown => ({
  create: { _index: 'comfy-audit', status, ...(error ? { error } : {}) },
})

describe('Elasticsearch sink', () => {
  it('posts _bulk NDJSON with create actions keyed by record id, ECS documents and a final newline', async () => {
    server = await startRecordingServer(() => ({ status: 200, body: '{"errors":false,"items":[]}' }))
    const sink = createElasticsearchSink(
      { url: server.url, index: 'audit-stream', auth: { apiKey: 'k1' }, template: false },
      { hostName: 'render-01' },
    )
    const records = recordsOf(
      sessionEvents({
        status: 'error',
        nodes: [{ status: 'error', error_message: 'boom', exception_type: 'ValueError', traceback: ['t\n'] }],
      }),
    )
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    const req = server.requests[0]!
    expect(req.url).toBe('/_bulk')
    expect(req.headers['content-type']).toBe('application/x-ndjson')
    expect(req.headers.authorization).toBe('ApiKey k1')
    expect(req.body.endsWith('}\n')).toBe(true)
    const lines = req.body.split('\n')
    expect(lines.pop()).toBe('')
    expect(lines).toHaveLength(records.length * 2)
    expect(lines[0]).toBe('{"create":{"_index":"audit-stream","_id":"comfy-audit/test:0"}}')
    const docs = lines
      .filter((_l, i) => i % 2 === 1)
      .map((l) => {
        const p = parseJson(l)
        if (!p.ok) throw new Error(p.reason)
        return p.value as Record<string, unknown>
      })
    const node = docs[2]!
    expect(node).toMatchObject({
      '@timestamp': '2026-11-26T04:34:00.123Z',
      event: {
        kind: 'event',
        category: ['process'],
        action: 'node.finished',
        outcome: 'failure',
        duration: 2_500_000_000,
        id: 'comfy-audit/test:2',
      },
      service: { name: 'comfy-audit' },
      host: { name: 'render-01' },
      error: { message: 'boom', type: 'ValueError', stack_trace: 't\n' },
      labels: { origin: 'comfy-audit/test', record_type: 'node_run', status: 'error', node_type: 'KSampler' },
      comfyui: { session_id: 'prompt-1', node_id: '3', duration_ms: 2500, gpu_memory_used: 6144 },
    })
    expect(docs.at(-1)).toMatchObject({
      event: { category: ['session'], outcome: 'failure' },
      user: { name: 'ada' },
    })
    expect(docs[3]).toMatchObject({
      event: { action: 'action.interrupt', type: ['change'] },
      user: { name: 'ada' },
    })
  })

  it('counts 409 conflicts as delivered, retries only 429/5xx items and drops other 4xx items', async () => {
    let call = 0
    server = await startRecordingServer(() => {
      call++
      if (call === 1) {
        return {
          status: 200,
          body: JSON.stringify({
            errors: true,
            items: [
              item(201),
              item(409, { type: 'version_conflict_engine_exception', reason: 'exists' }),
              item(429, { type: 'es_rejected_execution_exception', reason: 'queue full' }),
              item(400, { type: 'mapper_parsing_exception', reason: 'bad field' }),
              item(503, { type: 'unavailable_shards_exception', reason: 'primary shard not active' }),
            ],
          }),
        }
      }
      return { status: 200, body: JSON.stringify({ errors: false, items: [item(201), item(201)] }) }
    })
    const clock = fakeClock()
    const sink = createElasticsearchSink(
      { url: server.url, template: false },
      { now: clock.now, sleep: clock.sleep },
    )
    const records = manyRecords(5)
    const first = await sink.export(records, new AbortController().signal)
    expect(first.status).toBe('retryable')
    expect(first.status === 'retryable' && first.records?.map((r) => r.id)).toEqual([
      records[2]!.id,
      records[4]!.id,
    ])
    expect(first.status === 'retryable' && first.dropped).toBe(1)

    const processor = createBatchProcessor(sink, { scheduledDelayMillis: 3_600_000, now: clock.now })
    call = 0
    for (const r of records) processor.onEnd(r)
    await processor.forceFlush()
    await processor.forceFlush()
    const second = server.requests
      .at(-1)!
      .body.split('\n')
      .filter((_l, i) => i % 2 === 0 && _l)
    expect(second).toEqual(
      [records[2]!.id, records[4]!.id].map((id) => `{"create":{"_index":"comfy-audit","_id":"${id}"}}`),
    )
    expect(processor.health()[0]).toMatchObject({ dropped: 1, queued: 0, failures: 1 })
    await processor.shutdown()
  })

  it('installs the index template once, before the first _bulk, beside _bulk under a URL prefix', async () => {
    server = await startRecordingServer((req) =>
      req.url.endsWith('/_bulk')
        ? { status: 200, body: '{"errors":false,"items":[]}' }
        : { status: 200, body: '{"acknowledged":true}' },
    )
    const sink = createElasticsearchSink({ url: `${server.url}/es/_bulk`, index: 'renders' })
    const records = manyRecords(2)
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'PUT /es/_index_template/renders',
      'POST /es/_bulk',
      'POST /es/_bulk',
    ])
    const body = parseJson(server.requests[0]!.body)
    expect(body.ok && body.value).toMatchObject({
      index_patterns: ['renders', 'renders-*'],
      template: { mappings: { dynamic: false } },
    })
  })

  it('keeps the batch while the template cannot be installed for now, and ships anyway when it is refused', async () => {
    let answer = 503
    server = await startRecordingServer((req) =>
      req.url === '/_bulk'
        ? { status: 200, body: '{"errors":false,"items":[]}' }
        : { status: answer, body: '{"error":"no"}' },
    )
    const clock = fakeClock()
    const sink = createElasticsearchSink(
      { url: server.url, retry: { maxAttempts: 1 } },
      { now: clock.now, sleep: clock.sleep },
    )
    const records = manyRecords(2)
    expect((await sink.export(records, new AbortController().signal)).status).toBe('retryable')
    expect(server.requests.map((r) => r.method)).toEqual(['PUT'])
    // A key without the privilege: said once, then the documents go out (the mapping may be managed elsewhere).
    answer = 403
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    expect(server.requests.map((r) => r.method)).toEqual(['PUT', 'PUT', 'POST', 'POST'])
  })
})

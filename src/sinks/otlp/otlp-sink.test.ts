import { afterEach, describe, expect, it } from 'vitest'
import { parseJson } from '../../audit/json.js'
import {
  fakeClock,
  recordsOf,
  sessionEvents,
  startRecordingServer,
  type RecordingServer,
} from '../sink-test-kit.js'
import { createOtlpSink, nodeSpanIdOf, rootSpanIdOf, traceIdOf } from './otlp-sink.js'

let server: RecordingServer
afterEach(() => server?.close())

interface Span {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes: { key: string; value: Record<string, unknown> }[]
  events: {
    name: string
    timeUnixNano: string
    attributes: { key: string; value: Record<string, unknown> }[]
  }[]
  status: { code: number; message?: string }
}
const attrOf = (list: Span['attributes'], key: string): unknown => {
  const v = list.find((a) => a.key === key)?.value
  return v && Object.values(v)[0]
}

describe('OTLP sink', () => {
  it('posts one trace per session: a root span and a child span per node run, in the OTLP JSON shape', async () => {
    server = await startRecordingServer()
    const clock = fakeClock()
    const sink = createOtlpSink(
      { url: server.url, headers: { 'x-team': 'lookdev' }, auth: { bearer: 'tok' } },
      { now: clock.now, sleep: clock.sleep, hostName: 'render-01' },
    )
    const records = recordsOf(
      sessionEvents({
        status: 'error',
        nodes: [
          {
            node_id: '4',
            node_type: 'CheckpointLoaderSimple',
            status: 'cached',
            timestamp_end: '2026-11-26T04:34:00.123Z',
            duration_ms: 0,
          },
          {
            node_id: '3',
            status: 'error',
            error_message: 'CUDA out of memory',
            exception_type: 'torch.OutOfMemoryError',
            traceback: ['Traceback\n', '  line\n'],
          },
        ],
      }),
    )
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    expect(server.requests).toHaveLength(1)
    const req = server.requests[0]!
    expect(req.method).toBe('POST')
    expect(req.url).toBe('/v1/traces')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.headers.authorization).toBe('Bearer tok')
    expect(req.headers['x-team']).toBe('lookdev')
    const parsed = parseJson(req.body)
    expect(parsed.ok).toBe(true)
    const body = JSON.parse(req.body) as {
      resourceSpans: {
        resource: { attributes: Span['attributes'] }
        scopeSpans: { scope: { name: string }; spans: Span[] }[]
      }[]
    }
    expect(body.resourceSpans).toHaveLength(1)
    const rs = body.resourceSpans[0]!
    expect(attrOf(rs.resource.attributes, 'service.name')).toBe('comfy-audit')
    expect(attrOf(rs.resource.attributes, 'host.name')).toBe('render-01')
    expect(attrOf(rs.resource.attributes, 'service.instance.id')).toBe('render-01')
    expect(rs.scopeSpans[0]!.scope.name).toBe('comfy-audit')
    const spans = rs.scopeSpans[0]!.spans
    // Open-session records (queued, running) are not spans; the action is.
    expect(spans.map((s) => s.name)).toEqual([
      'CheckpointLoaderSimple',
      'KSampler',
      'comfyui.action.interrupt',
      'comfyui.prompt',
    ])
    const traceId = traceIdOf('prompt-1')
    const rootId = rootSpanIdOf('prompt-1')
    expect(traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(rootId).toMatch(/^[0-9a-f]{16}$/)
    for (const s of spans) {
      expect(s.traceId).toBe(traceId)
      expect(s.spanId).toMatch(/^[0-9a-f]{16}$/)
      expect(typeof s.startTimeUnixNano).toBe('string')
      expect(typeof s.endTimeUnixNano).toBe('string')
    }
    const [cached, failed, , root] = spans as [Span, Span, Span, Span]
    expect(root.spanId).toBe(rootId)
    expect(root.parentSpanId).toBeUndefined()
    expect(root.startTimeUnixNano).toBe('1795667639000000000')
    expect(root.endTimeUnixNano).toBe('1795667645000000000')
    expect(root.status).toEqual({ code: 2, message: 'CUDA out of memory' })
    expect(cached.parentSpanId).toBe(rootId)
    expect(cached.spanId).toBe(nodeSpanIdOf('prompt-1', '4'))
    expect(cached.status).toEqual({ code: 1 })
    expect(attrOf(cached.attributes, 'comfyui.status')).toBe('cached')
    expect(failed.startTimeUnixNano).toBe('1795667640123000000')
    expect(failed.endTimeUnixNano).toBe('1795667642623000000')
    expect(attrOf(failed.attributes, 'comfyui.session_id')).toBe('prompt-1')
    expect(attrOf(failed.attributes, 'comfyui.node_id')).toBe('3')
    expect(attrOf(failed.attributes, 'comfyui.node_type')).toBe('KSampler')
    expect(attrOf(failed.attributes, 'comfyui.gpu_memory_used_mib')).toBe('6144')
    expect(failed.status).toEqual({ code: 2, message: 'CUDA out of memory' })
    expect(failed.events).toHaveLength(1)
    expect(failed.events[0]!.name).toBe('exception')
    expect(attrOf(failed.events[0]!.attributes, 'exception.type')).toBe('torch.OutOfMemoryError')
    expect(attrOf(failed.events[0]!.attributes, 'exception.message')).toBe('CUDA out of memory')
    expect(attrOf(failed.events[0]!.attributes, 'exception.stacktrace')).toBe('Traceback\n  line\n')
  })

  it('derives the same ids for the same session and different ones for another', () => {
    expect(traceIdOf('a')).toBe(traceIdOf('a'))
    expect(traceIdOf('a')).not.toBe(traceIdOf('b'))
    expect(nodeSpanIdOf('a', '1')).not.toBe(nodeSpanIdOf('a', '2'))
  })

  it('sends nothing for a batch without spans', async () => {
    server = await startRecordingServer()
    const sink = createOtlpSink({ url: server.url })
    const opening = recordsOf(sessionEvents({})).slice(0, 2)
    expect(await sink.export(opening, new AbortController().signal)).toEqual({ status: 'success' })
    expect(server.requests).toHaveLength(0)
  })

  it('counts spans a collector rejects in a partial success as dropped', async () => {
    server = await startRecordingServer(() => ({
      status: 200,
      body: '{"partialSuccess":{"rejectedSpans":"1","errorMessage":"span too large"}}',
    }))
    const sink = createOtlpSink({ url: `${server.url}/custom/traces` })
    const records = recordsOf(sessionEvents({}))
    expect(await sink.export(records, new AbortController().signal)).toEqual({
      status: 'success',
      dropped: 1,
    })
    expect(server.requests[0]!.url).toBe('/custom/traces')
  })
})

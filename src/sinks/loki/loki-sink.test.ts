import { afterEach, describe, expect, it } from 'vitest'
import { parseJson } from '../../audit/json.js'
import { recordsOf, sessionEvents, startRecordingServer, type RecordingServer } from '../sink-test-kit.js'
import { createLokiSink } from './loki-sink.js'

let server: RecordingServer
afterEach(() => server?.close())

describe('Loki sink', () => {
  it('pushes streams with low-cardinality labels, ids in structured metadata, entries in time order', async () => {
    server = await startRecordingServer(() => ({ status: 204 }))
    const sink = createLokiSink({ url: server.url, labels: { env: 'prod' }, tenant: 'studio-a' })
    const records = recordsOf(
      sessionEvents({
        nodes: [
          { node_id: '8', timestamp_end: '2026-11-26T04:34:02.900Z' },
          { node_id: '3', timestamp_end: '2026-11-26T04:34:01.000Z' },
        ],
      }),
    )
    expect(await sink.export(records, new AbortController().signal)).toEqual({ status: 'success' })
    const req = server.requests[0]!
    expect(req.url).toBe('/loki/api/v1/push')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.headers['x-scope-orgid']).toBe('studio-a')
    const body = JSON.parse(req.body) as {
      streams: { stream: Record<string, string>; values: [string, string, Record<string, string>][] }[]
    }
    const nodeStream = body.streams.find((s) => s.stream.record_type === 'node_run')!
    expect(nodeStream.stream).toEqual({
      env: 'prod',
      service: 'comfy-audit',
      origin: 'comfy-audit/test',
      record_type: 'node_run',
      kind: 'node.finished',
      status: 'success',
    })
    // Sent in time order although the log had them the other way round.
    expect(nodeStream.values.map((v) => v[0])).toEqual(['1795667641000000000', '1795667642900000000'])
    expect(nodeStream.values.map((v) => v[2])).toEqual([
      { id: 'comfy-audit/test:3', seq: '3', session_id: 'prompt-1', node_id: '3', node_type: 'KSampler' },
      { id: 'comfy-audit/test:2', seq: '2', session_id: 'prompt-1', node_id: '8', node_type: 'KSampler' },
    ])
    const line = parseJson(nodeStream.values[0]![1])
    expect(line.ok && line.value).toMatchObject({ node_id: '3', session_id: 'prompt-1', status: 'success' })
    expect(body.streams.find((s) => s.stream.record_type === 'action')!.stream).not.toHaveProperty('status')
    // One stream per distinct label set; session records differ by kind and status.
    expect(body.streams).toHaveLength(5)
    for (const s of body.streams)
      for (const v of s.values) expect(Object.keys(s.stream)).not.toContain(v[2].id)
  })
})

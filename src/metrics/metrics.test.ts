import { request, createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { sessionEvents } from '../sinks/sink-test-kit.js'
import { createMetrics, metricsHandler } from './metrics.js'

/** Parses exposition text into `name{labels}` → value, failing on any line that is not a comment or a sample. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line)
    if (!m) throw new Error(`not a sample line: ${line}`)
    samples.set(m[1]!, Number(m[2]))
  }
  return samples
}

let server: Server | undefined
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  server = undefined
})

describe('metrics', () => {
  it('counts node runs, cache hits, durations and finished runs from audit events', async () => {
    const metrics = createMetrics()
    const events = [
      ...sessionEvents({
        nodes: [
          { node_id: '4', node_type: 'CheckpointLoaderSimple', status: 'cached', duration_ms: 0 },
          { node_id: '3' },
        ],
      }),
      ...sessionEvents({
        sessionId: 'prompt-2',
        firstSeq: 100,
        status: 'error',
        nodes: [{ status: 'error', gpu_memory_used: 9000 }],
      }),
    ]
    for (const e of events) metrics.observe(e)
    metrics.setQueueDepth(3)
    metrics.observeRequest('POST', '/prompt', 200, 0.012)
    const s = parseExposition(await metrics.text())
    expect(s.get('comfyui_node_runs_total{status="success"}')).toBe(1)
    expect(s.get('comfyui_node_runs_total{status="cached"}')).toBe(1)
    expect(s.get('comfyui_node_runs_total{status="error"}')).toBe(1)
    expect(s.get('comfyui_cache_hits_total')).toBe(1)
    expect(s.get('comfyui_node_duration_seconds_count{node_type="KSampler"}')).toBe(2)
    expect(s.get('comfyui_node_duration_seconds_sum{node_type="KSampler"}')).toBe(5)
    expect(s.get('comfyui_node_duration_seconds_count{node_type="CheckpointLoaderSimple"}')).toBeUndefined()
    expect(s.get('comfyui_runs_total{status="success"}')).toBe(1)
    expect(s.get('comfyui_runs_total{status="error"}')).toBe(1)
    expect(s.get('comfyui_queue_depth')).toBe(3)
    expect(s.get('comfyui_gpu_memory_used_mib')).toBe(9000)
    expect(
      s.get('comfy_audit_http_request_duration_seconds_count{method="POST",route="/prompt",status="200"}'),
    ).toBe(1)
  })

  it('turns sink health totals into per-sink gauges and monotonic counters', async () => {
    const metrics = createMetrics()
    metrics.sinkHealth([{ name: 'otlp', queued: 12, spooledBytes: 4096, failures: 2, dropped: 1 }])
    metrics.sinkHealth([{ name: 'otlp', queued: 0, spooledBytes: 0, failures: 5, dropped: 1 }])
    const s = parseExposition(await metrics.text())
    expect(s.get('comfy_audit_sink_queue_depth{sink="otlp"}')).toBe(0)
    expect(s.get('comfy_audit_sink_spool_bytes{sink="otlp"}')).toBe(0)
    expect(s.get('comfy_audit_sink_failures_total{sink="otlp"}')).toBe(5)
    expect(s.get('comfy_audit_sink_dropped_total{sink="otlp"}')).toBe(1)
  })

  it('keeps its series out of the global registry', async () => {
    const { register } = await import('prom-client')
    createMetrics().setQueueDepth(1)
    expect(await register.getSingleMetricAsString('comfyui_queue_depth').catch(() => 'absent')).toBe('absent')
  })
})

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }))
    })
      .on('error', reject)
      .end()
  })
}

async function serve(handler: ReturnType<typeof metricsHandler>): Promise<string> {
  server = createServer((req, res) => void handler(req, res))
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/_audit/metrics`
}

describe('metricsHandler', () => {
  it('requires the bearer token', async () => {
    const metrics = createMetrics()
    metrics.setQueueDepth(2)
    const url = await serve(metricsHandler(metrics, { token: 's3cret-token' }))
    expect((await get(url)).status).toBe(401)
    expect((await get(url, { authorization: 'Bearer wrong' })).status).toBe(401)
    const ok = await get(url, { authorization: 'Bearer s3cret-token' })
    expect(ok.status).toBe(200)
    expect(ok.type).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(parseExposition(ok.body).get('comfyui_queue_depth')).toBe(2)
  })

  it('serves without a token when open', async () => {
    const url = await serve(metricsHandler(createMetrics(), { open: true }))
    expect((await get(url)).status).toBe(200)
  })

  it('refuses to start with neither a token nor open', () => {
    expect(() => metricsHandler(createMetrics(), {})).toThrow(/token/)
  })
})

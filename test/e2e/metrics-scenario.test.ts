/**
 * Prometheus metrics after a scenario run: the stand-in behind the gateway runs a prompt, the same prompt
 * again (all cached) and a failing one; the store's committed events feed the collector and the sinks (one
 * JSONL, one Loki whose receiver is down), wired as the composition root wires them; `/_audit/metrics` must
 * parse as Prometheus text and hold the named series with non-zero counts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { stringifyJson } from '../../src/audit/json.js'
import type { JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createMetricsRoute } from '../../src/metrics/metrics-route.js'
import { queueDepthFromFrame, type Metrics } from '../../src/metrics/metrics.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import type { SinkPipeline } from '../../src/sinks/sink-pipeline.js'
import { startRecordingServer, type RecordingServer } from '../../src/sinks/sink-test-kit.js'
import { parsePrometheusText, type PrometheusExposition } from '../helpers/prometheus-text.js'
import { parseUpstreamFrame } from '../../src/comfyui/frames.js'

const TOKEN = 'scrape-token-for-the-test'
let sim: SimServer
let audit: AuditGateway
let metrics: Metrics
let sinks: SinkPipeline
let loki: RecordingServer
let server: Server
let metricsUrl: string
let scraped: PrometheusExposition

beforeAll(async () => {
  sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'metrics-sim-')), port: 0, speed: 20 })
  loki = await startRecordingServer(() => ({ status: 503, body: 'down for maintenance' }))
  const data = mkdtempSync(join(tmpdir(), 'metrics-gateway-'))
  const file = join(data, 'config.json')
  writeFileSync(
    file,
    JSON.stringify({
      sinks: [{ type: 'jsonl' }, { type: 'loki', url: loki.url, retry: { maxAttempts: 1 } }],
      metrics: { token: '${SCRAPE_TOKEN}' },
    }),
  )
  const config = loadConfig({
    file,
    env: { SCRAPE_TOKEN: TOKEN },
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: 'metrics-test' },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  // The gateway's own collector and sinks: a second pipeline on its data dir would share its spools, and
  // is refused (issue 10 item 9: one lock per spool).
  metrics = audit.metrics
  sinks = audit.sinks
  const route = createMetricsRoute(metrics, {
    ...config.value.metrics,
    beforeScrape: () => metrics.sinkHealth(sinks.health()),
  })
  server = createServer((req, res) => {
    const started = process.hrtime.bigint()
    res.on('finish', () =>
      metrics.observeRequest(
        req.method ?? '',
        '/_audit/metrics',
        res.statusCode,
        Number(process.hrtime.bigint() - started) / 1e9,
      ),
    )
    void route(req, res).then((handled) => {
      if (!handled) res.writeHead(404).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  metricsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/_audit/metrics`

  const ws = new WebSocket(`${audit.url.replace('http', 'ws')}/ws?clientId=metrics`)
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  const ended = new Map<string, string>()
  const waiters = new Map<string, (type: string) => void>()
  ws.on('message', (raw, isBinary) => {
    const depth = queueDepthFromFrame(parseUpstreamFrame(raw as Buffer, isBinary))
    if (depth !== undefined) metrics.setQueueDepth(depth)
    if (isBinary) return
    const msg = JSON.parse(raw.toString()) as { type: string; data: { prompt_id?: string } }
    const id = msg.data.prompt_id
    if (!id || !['execution_success', 'execution_error', 'execution_interrupted'].includes(msg.type)) return
    ended.set(id, msg.type)
    waiters.get(id)?.(msg.type)
  })
  const runPrompt = async (prompt: Record<string, unknown>): Promise<string> => {
    const res = await fetch(`${audit.url}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stringifyJson({ prompt, client_id: 'metrics' } as unknown as JsonObject),
    })
    const { prompt_id: id } = (await res.json()) as { prompt_id: string }
    return ended.get(id) ?? new Promise<string>((resolve) => waiters.set(id, resolve))
  }
  const pipeline = {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: 2, sigma: 1.0 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/metrics' } },
  }
  expect(await runPrompt(pipeline)).toBe('execution_success')
  expect(await runPrompt(pipeline)).toBe('execution_success')
  expect(
    await runPrompt({
      ...pipeline,
      '4': { class_type: 'AuditFail', inputs: { image: ['2', 0], message: 'planned, for the metrics test' } },
      '3': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: 'audit/metrics' } },
    }),
  ).toBe('execution_error')
  ws.close()
  await audit.capture.flush()
  await audit.store.flush()
  await sinks.forceFlush()

  const res = await fetch(metricsUrl, { headers: { authorization: `Bearer ${TOKEN}` } })
  expect(res.status).toBe(200)
  scraped = parsePrometheusText(await res.text())
}, 120_000)

afterAll(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  await audit?.close()
  await sinks?.shutdown()
  await loki?.close()
  await sim?.close()
})

describe('/_audit/metrics after a scenario run', () => {
  it('refuses a scrape without the token', async () => {
    expect((await fetch(metricsUrl)).status).toBe(401)
  })

  it('counts runs by final status', () => {
    expect(scraped.sum('comfyui_runs_total', { status: 'success' })).toBe(2)
    expect(scraped.sum('comfyui_runs_total', { status: 'error' })).toBe(1)
  })

  it('holds node duration histograms by node type, in seconds', () => {
    expect(scraped.types.get('comfyui_node_duration_seconds')).toBe('histogram')
    for (const nodeType of ['LoadImage', 'ImageBlur', 'SaveImage']) {
      expect(scraped.sum('comfyui_node_duration_seconds_count', { node_type: nodeType })).toBeGreaterThan(0)
      expect(scraped.sum('comfyui_node_duration_seconds_bucket', { node_type: nodeType, le: '+Inf' })).toBe(
        scraped.sum('comfyui_node_duration_seconds_count', { node_type: nodeType }),
      )
    }
    expect(scraped.sum('comfyui_node_duration_seconds_sum')).toBeGreaterThan(0)
  })

  it('counts node runs by status and the cache hits of the repeated prompt', () => {
    expect(scraped.sum('comfyui_node_runs_total', { status: 'success' })).toBeGreaterThan(0)
    expect(scraped.sum('comfyui_node_runs_total', { status: 'error' })).toBe(1)
    expect(scraped.sum('comfyui_cache_hits_total')).toBeGreaterThan(0)
    expect(scraped.sum('comfyui_node_runs_total', { status: 'cached' })).toBe(
      scraped.sum('comfyui_cache_hits_total'),
    )
  })

  it('reports queue depth and GPU memory in use', () => {
    expect(scraped.has('comfyui_queue_depth')).toBe(true)
    expect(scraped.sum('comfyui_gpu_memory_used_mib')).toBeGreaterThan(0)
  })

  it("reports each sink's queue, spool and failures", () => {
    for (const sink of ['jsonl', 'loki']) {
      expect(scraped.has('comfy_audit_sink_queue_depth')).toBe(true)
      expect(
        scraped.samples.some((s) => s.name === 'comfy_audit_sink_spool_bytes' && s.labels.sink === sink),
      ).toBe(true)
    }
    expect(scraped.sum('comfy_audit_sink_failures_total', { sink: 'jsonl' })).toBe(0)
    expect(scraped.sum('comfy_audit_sink_failures_total', { sink: 'loki' })).toBeGreaterThan(0)
    expect(scraped.sum('comfy_audit_sink_spool_bytes', { sink: 'loki' })).toBeGreaterThan(0)
    expect(scraped.sum('comfy_audit_sink_dropped_total')).toBe(0)
  })

  it('measures request latency of the route it served', async () => {
    const again = parsePrometheusText(
      await (await fetch(metricsUrl, { headers: { authorization: `Bearer ${TOKEN}` } })).text(),
    )
    expect(
      again.sum('comfy_audit_http_request_duration_seconds_count', {
        route: '/_audit/metrics',
        status: '200',
      }),
    ).toBeGreaterThan(0)
  })
})

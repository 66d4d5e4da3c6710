import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { setErrorHandler } from '../audit/report-error.js'
import { sessionEvents } from '../sinks/sink-test-kit.js'
import { parsePrometheusText } from '../../test/helpers/prometheus-text.js'
import { createMetrics, observeEvents, queueDepthFromFrame, type Metrics } from './metrics.js'
import { createMetricsRoute, METRICS_OFF_MESSAGE, type MetricsRouteOptions } from './metrics-route.js'
import { parseUpstreamFrame } from '../comfyui/frames.js'

let server: Server | undefined
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  server = undefined
})

/** A real server whose `/_audit/` dispatcher tries the metrics route first and answers 418 for the rest. */
async function serve(metrics: Metrics, options: MetricsRouteOptions): Promise<string> {
  const route = createMetricsRoute(metrics, options)
  server = createServer((req, res) => {
    void route(req, res).then((handled) => {
      if (!handled) res.writeHead(418).end('not metrics')
    })
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** The tap's reading of one upstream frame, as the hub hands it on. */
const depthOf = (raw: string | Buffer, isBinary: boolean): number | undefined =>
  queueDepthFromFrame(parseUpstreamFrame(raw, isBinary))

describe('createMetricsRoute', () => {
  it('serves metrics only to a scraper that sends the token', async () => {
    const metrics = createMetrics()
    observeEvents(metrics, sessionEvents({}))
    const url = await serve(metrics, { token: 's3cret-token' })
    expect((await fetch(`${url}/_audit/metrics`)).status).toBe(401)
    const wrong = await fetch(`${url}/_audit/metrics`, { headers: { authorization: 'Bearer nope' } })
    expect(wrong.status).toBe(401)
    const res = await fetch(`${url}/_audit/metrics`, { headers: { authorization: 'Bearer s3cret-token' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(parsePrometheusText(await res.text()).sum('comfyui_runs_total', { status: 'success' })).toBe(1)
  })

  it('serves metrics without a token when configured open', async () => {
    const url = await serve(createMetrics(), { open: true })
    const res = await fetch(`${url}/_audit/metrics?x=1`)
    expect(res.status).toBe(200)
    expect(parsePrometheusText(await res.text()).types.get('comfyui_node_duration_seconds')).toBe('histogram')
  })

  it('answers 404 saying how to switch metrics on when neither a token nor open is configured', async () => {
    const url = await serve(createMetrics(), { open: false })
    const res = await fetch(`${url}/_audit/metrics`)
    expect(res.status).toBe(404)
    expect(await res.text()).toBe(`${METRICS_OFF_MESSAGE}\n`)
  })

  it('leaves every other path to the next handler', async () => {
    const url = await serve(createMetrics(), { open: true })
    const res = await fetch(`${url}/_audit/health`)
    expect(res.status).toBe(418)
    expect((await fetch(`${url}/_audit/metrics/x`)).status).toBe(418)
  })

  it('pulls sink health into the gauges before each scrape', async () => {
    const metrics = createMetrics()
    let failures = 0
    const url = await serve(metrics, {
      open: true,
      beforeScrape: () =>
        metrics.sinkHealth([
          { name: 'loki', queued: 7, spooledBytes: 512, failures: ++failures, dropped: 0 },
        ]),
    })
    await fetch(`${url}/_audit/metrics`)
    const text = await (await fetch(`${url}/_audit/metrics`)).text()
    const m = parsePrometheusText(text)
    expect(m.sum('comfy_audit_sink_queue_depth', { sink: 'loki' })).toBe(7)
    expect(m.sum('comfy_audit_sink_spool_bytes', { sink: 'loki' })).toBe(512)
    expect(m.sum('comfy_audit_sink_failures_total', { sink: 'loki' })).toBe(2)
  })
})

describe('observeEvents', () => {
  it('observes every event in order and skips one the collector cannot read, reporting it', async () => {
    const reported: string[] = []
    const previous = setErrorHandler((_e, context) => reported.push(context ?? ''))
    try {
      const metrics = createMetrics()
      const events = sessionEvents({ nodes: [{ node_id: '3' }, { node_id: '4' }] })
      const failing: Metrics = {
        ...metrics,
        observe: (e) => {
          if (e.seq === 2) throw new Error('boom')
          metrics.observe(e)
        },
      }
      observeEvents(failing, events)
      const m = parsePrometheusText(await metrics.text())
      // seq 2 is the first node.finished: only the second node run is counted, and the run still ends.
      expect(m.sum('comfyui_node_runs_total')).toBe(1)
      expect(m.sum('comfyui_runs_total', { status: 'success' })).toBe(1)
      expect(reported).toEqual(['metrics: event comfy-audit/test:2'])
    } finally {
      setErrorHandler(previous)
    }
  })
})

describe('queueDepthFromFrame', () => {
  it('reads queue_remaining from ComfyUI status frames and ignores every other frame', () => {
    const status =
      '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 3}}, "sid": "abc"}}'
    expect(depthOf(status, false)).toBe(3)
    expect(depthOf(Buffer.from(status), false)).toBe(3)
    expect(depthOf(Buffer.from(status), true)).toBeUndefined()
    expect(depthOf('{"type": "progress", "data": {"value": 1, "max": 20}}', false)).toBeUndefined()
    expect(depthOf('{"type": "executing", "data": {"queue_remaining": 2}}', false)).toBeUndefined()
    expect(depthOf('{"queue_remaining": ', false)).toBeUndefined()
  })
})

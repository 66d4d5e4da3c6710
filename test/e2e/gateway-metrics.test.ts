/**
 * The composition root serves Prometheus metrics at /_audit/metrics: behind its token, with the gateway's own
 * request latency by route and the runs it recorded.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { routeLabel } from '../../src/gateway/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { parsePrometheusText } from '../helpers/prometheus-text.js'

let sim: SimServer | undefined
let audit: AuditGateway | undefined
afterAll(async () => {
  await audit?.close()
  await sim?.close()
})

describe('/_audit/metrics on a running gateway', () => {
  it('labels routes without ids', () => {
    expect(routeLabel('/api/history/8fee2052-b039')).toBe('/history')
    expect(routeLabel('/prompt')).toBe('/prompt')
    expect(routeLabel('/custom/node/route')).toBe('other')
    expect(routeLabel('/')).toBe('/')
  })

  it('requires the token and reports request latency by route and recorded runs', async () => {
    sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'metrics-sim-')), port: 0, speed: 20 })
    const config = loadConfig({
      env: {},
      flags: {
        'comfyui.url': sim.url,
        listen: '127.0.0.1:0',
        data: mkdtempSync(join(tmpdir(), 'metrics-gw-')),
        'metrics.token': 'scrape-secret',
      },
    })
    if (!config.ok) throw new Error(config.problems.join('; '))
    audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
    for (let i = 0; i < 3; i++) expect((await fetch(`${audit.url}/api/prompt`)).status).toBe(200)
    const res = await fetch(`${audit.url}/prompt`, {
      method: 'POST',
      body: JSON.stringify({
        prompt: {
          '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
          '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
        },
      }),
    })
    expect(res.status).toBe(200)
    await sim.idle()
    await audit.reconcileNow()
    expect((await fetch(`${audit.url}/_audit/metrics`)).status).toBe(401)
    const scrape = await fetch(`${audit.url}/_audit/metrics`, {
      headers: { authorization: 'Bearer scrape-secret' },
    })
    expect(scrape.status).toBe(200)
    const { samples } = parsePrometheusText(await scrape.text())
    const count = (name: string, labels: Record<string, string>): number | undefined =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        ?.value
    expect(
      count('comfy_audit_http_request_duration_seconds_count', {
        method: 'GET',
        route: '/prompt',
        status: '200',
      }),
    ).toBe(3)
    expect(
      count('comfy_audit_http_request_duration_seconds_count', {
        method: 'POST',
        route: '/prompt',
        status: '200',
      }),
    ).toBe(1)
    expect(count('comfyui_runs_total', { status: 'success' })).toBe(1)
  })
})

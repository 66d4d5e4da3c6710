/**
 * Issue 15 item 3 (capture): previews are recorded as counts per node, never as bytes. Through the real
 * gateway and the stand-in with `previewMethod: 'auto'`, the KSampler's node run carries `previews` ==
 * steps (with and without a client id), other nodes 0, and no preview image byte reaches the data dir.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway } from '../../src/create-gateway.js'
import { createSimServer } from '../../src/sim/index.js'
import { sd15 } from '../../src/sim/sim-test-kit.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

const STEPS = 3

function graph(seed: number): object {
  const g = sd15(seed, STEPS) as Record<string, { inputs: Record<string, unknown> }>
  g['5']!.inputs.width = 64
  g['5']!.inputs.height = 64
  return g
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? filesUnder(p) : [p]
  })
}

async function waitUntil(cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe('issue 15 item 3: capture counts previews per node', () => {
  it('records previews == steps on the KSampler run and stores no image byte', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'prev-sim-')),
      port: 0,
      speed: 1000,
      previewMethod: 'auto',
    })
    cleanup.push(() => sim.close())
    const data = mkdtempSync(join(tmpdir(), 'prev-gw-'))
    const config = loadConfig({
      env: {},
      flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, 'limits.promptsPerMinute': 0 },
    })
    if (!config.ok) throw new Error(config.problems.join('; '))
    const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
    cleanup.push(() => audit.close())

    // A client that takes type 4, to learn the image bytes that must not reach the store.
    const images: Buffer[] = []
    const ws = new WebSocket(`${audit.url.replace('http', 'ws')}/ws?clientId=prev-client`)
    ws.on('message', (d: Buffer, isBinary: boolean) => {
      if (isBinary && d.readUInt32BE(0) === 4) images.push(d.subarray(8 + d.readUInt32BE(4)))
    })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    cleanup.push(async () => ws.close())
    ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }))

    const ids: string[] = []
    for (const body of [{ prompt: graph(1), client_id: 'prev-client' }, { prompt: graph(2) }]) {
      const res = await fetch(`${audit.url}/prompt`, { method: 'POST', body: JSON.stringify(body) })
      expect(res.status).toBe(200)
      ids.push(((await res.json()) as { prompt_id: string }).prompt_id)
    }
    await waitUntil(async () => {
      const s = await audit.store.sessions({ limit: 10 })
      return s.filter((x) => ids.includes(x.session_id) && x.status === 'success').length === 2
    })
    await audit.capture.flush()
    await audit.store.flush()
    expect(images).toHaveLength(STEPS)

    for (const id of ids) {
      const runs = (await audit.store.nodeRuns({ limit: 100 })).filter((r) => r.session_id === id)
      const byType = Object.fromEntries(runs.map((r) => [r.node_type, r.previews]))
      expect(byType.KSampler).toBe(STEPS)
      expect(byType.CheckpointLoaderSimple).toBe(0)
      expect(byType.SaveImage).toBe(0)
    }

    await audit.close()
    const stored = filesUnder(data).map((f) => readFileSync(f))
    expect(stored.length).toBeGreaterThan(0)
    for (const image of images)
      for (const part of [image.subarray(0, 64), image.subarray(-66, -2)])
        for (const file of stored) expect(file.indexOf(part)).toBe(-1)
  })
})

/**
 * Issue 15 item 3 (relay): the gateway's upstream socket negotiates once, but ComfyUI picks the preview
 * format per socket. Through the gateway, with the real stand-in (`previewMethod: 'auto'`), a downstream
 * socket that asked for supports_preview_metadata gets type 4, one that did not gets type 1 (converted),
 * and a prompt without client id reaches every socket as type 1.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createSimServer } from '../sim/index.js'
import { sd15 } from '../sim/sim-test-kit.js'
import { createGateway } from './create-gateway.js'
import { createRecordingTap } from './recording-tap.js'

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function waitUntil(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 5))
  }
}

async function client(
  base: string,
  id: string,
  negotiate: boolean,
): Promise<{ kinds: string[]; bins: Buffer[]; flags: unknown[] }> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?clientId=${id}`)
  const seen = { kinds: [] as string[], bins: [] as Buffer[], flags: [] as unknown[] }
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      seen.bins.push(data)
      seen.kinds.push(`bin${data.readUInt32BE(0)}`)
    } else {
      const msg = JSON.parse(data.toString()) as { type: string; data: unknown }
      seen.kinds.push(msg.type)
      if (msg.type === 'feature_flags') seen.flags.push(msg.data)
    }
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  cleanups.push(async () => ws.close())
  if (negotiate) ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }))
  else ws.send(JSON.stringify({ type: 'feature_flags', data: {} }))
  await waitUntil(() => seen.kinds.includes('feature_flags'))
  return seen
}

async function start(): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'gw-previews-'))
  const sim = await createSimServer({ dataDir, port: 0, speed: 1000, previewMethod: 'auto' })
  cleanups.push(
    () => rm(dataDir, { recursive: true, force: true }),
    () => sim.close(),
  )
  const gw = await createGateway({
    upstreamUrl: sim.url,
    port: 0,
    tap: createRecordingTap(),
    idleCloseMillis: 0,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) await new Promise<void>((r) => gw.on('upstream', (e) => e.healthy && r()))
  return gw.url
}

const graph = (seed: number): object => {
  const g = sd15(seed, 2) as Record<string, { inputs: Record<string, unknown> }>
  g['5']!.inputs.width = 64
  g['5']!.inputs.height = 64
  return g
}

async function submit(base: string, body: object): Promise<void> {
  const res = await fetch(`${base}/prompt`, { method: 'POST', body: JSON.stringify(body) })
  expect(res.status).toBe(200)
}

describe('previews through the gateway (issue 15 item 3)', () => {
  it('type 4 to a socket that negotiated, type 1 to a newer one of the same id that did not', async () => {
    const base = await start()
    const a = await client(base, 'client-a', true)
    await submit(base, { prompt: graph(1), client_id: 'client-a' })
    await waitUntil(() => a.kinds.includes('execution_success'))
    expect(a.kinds.filter((k) => k.startsWith('bin'))).toEqual(['bin4', 'bin4'])
    const b = await client(base, 'client-a', false)
    await submit(base, { prompt: graph(2), client_id: 'client-a' })
    await waitUntil(() => b.kinds.includes('execution_success'))
    expect(b.kinds.filter((k) => k.startsWith('bin'))).toEqual(['bin1', 'bin1'])
    const frame = b.bins[0]!
    expect(frame.readUInt32BE(4)).toBe(1)
    expect([frame[8], frame[9]]).toEqual([0xff, 0xd8])
  })

  it('item 3 (a): a later socket that negotiated gets type 4 though the first one of its id did not', async () => {
    // The upstream socket once negotiated with the first downstream socket's flags, so here ComfyUI sent
    // type 1 and the later socket got type 1 too, unlike ComfyUI.
    const base = await start()
    const a = await client(base, 'client-a', false)
    await submit(base, { prompt: graph(4), client_id: 'client-a' })
    await waitUntil(() => a.kinds.includes('execution_success'))
    expect(a.kinds.filter((k) => k.startsWith('bin'))).toEqual(['bin1', 'bin1'])
    const b = await client(base, 'client-a', true)
    await submit(base, { prompt: graph(5), client_id: 'client-a' })
    await waitUntil(() => b.kinds.includes('execution_success'))
    expect(b.kinds.filter((k) => k.startsWith('bin'))).toEqual(['bin4', 'bin4'])
    const frame = b.bins[0]!
    const len = frame.readUInt32BE(4)
    expect(JSON.parse(frame.subarray(8, 8 + len).toString('utf8'))).toMatchObject({
      image_type: 'image/jpeg',
    })
    // Both sockets were answered what ComfyUI answers any socket: its GET /features.
    const features = (await (await fetch(`${base}/features`)).json()) as unknown
    for (const s of [a, b]) expect(s.flags).toEqual([features])
  })

  it('a prompt without client id reaches every socket as type 1', async () => {
    const base = await start()
    const a = await client(base, 'client-a', true)
    const b = await client(base, 'client-b', false)
    await submit(base, { prompt: graph(3) })
    await waitUntil(() => a.bins.length === 2 && b.bins.length === 2)
    // The run must end before cleanup removes the stand-in's data dir (its SaveImage still writes).
    for (let idle = false; !idle;) {
      const q = (await (await fetch(`${base}/queue`)).json()) as { queue_running: unknown[] }
      idle = q.queue_running.length === 0
    }
    for (const s of [a, b]) expect(s.kinds.filter((k) => k.startsWith('bin'))).toEqual(['bin1', 'bin1'])
  })
})

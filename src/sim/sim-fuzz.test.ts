import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { startSim } from './sim-test-kit.js'

/** Malformed input of every kind the stand-in can get from a client; it must answer as ComfyUI does and stay up. */
describe('the stand-in under malformed input', () => {
  let sim: Awaited<ReturnType<typeof startSim>>
  beforeAll(async () => {
    sim = await startSim({})
  })
  afterAll(async () => {
    await sim.dispose()
  })

  const routes = [
    '/prompt',
    '/api/prompt',
    '/queue',
    '/history',
    '/interrupt',
    '/free',
    '/upload/image',
    '/userdata/x.json',
    '/settings',
  ]
  const bodies = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.json({ maxDepth: 4 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ prompt: v, client_id: 'fuzz' })),
    fc
      .jsonValue({ maxDepth: 3 })
      .map((v) => JSON.stringify({ prompt: { '1': { class_type: 'ImageBlur', inputs: v } } })),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
  )

  it('answers thousands of malformed bodies with a status and keeps serving', async () => {
    const seen = new Set<number>()
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        bodies,
        fc.constantFrom('application/json', 'text/plain', 'multipart/form-data; boundary=x'),
        async (route, body, type) => {
          const res = await fetch(sim.url + route, {
            method: 'POST',
            headers: { 'content-type': type },
            body,
          })
          await res.arrayBuffer()
          seen.add(res.status)
          expect(res.status).toBeGreaterThanOrEqual(200)
          expect(res.status).toBeLessThan(600)
        },
      ),
      { numRuns: 1500, seed: 20261126 },
    )
    // Invalid JSON on /prompt gets ComfyUI's 500 text, a body without prompt its 400.
    const bad = await fetch(sim.url + '/prompt', { method: 'POST', body: '{nope' })
    expect(bad.status).toBe(500)
    expect(await bad.text()).toBe('500 Internal Server Error\n\nServer got itself in trouble')
    const ok = await fetch(sim.url + '/system_stats')
    expect(ok.status).toBe(200)
    expect(seen.size).toBeGreaterThan(1)
  }, 120_000)

  it('ignores garbage WebSocket frames and keeps the socket and the server alive', async () => {
    const ws = new WebSocket(sim.url.replace('http', 'ws') + '/ws?clientId=fuzz-ws')
    const first = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())))
    await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
    expect(JSON.parse(await first)).toMatchObject({ type: 'status', data: { sid: 'fuzz-ws' } })
    const frames = fc.sample(fc.oneof(fc.string(), fc.json(), fc.uint8Array({ maxLength: 64 })), {
      numRuns: 500,
      seed: 7,
    })
    for (const f of frames) ws.send(typeof f === 'string' ? f : Buffer.from(f))
    // The server still answers on the same socket: a queue change broadcasts status to it.
    const status = new Promise<void>((resolve) =>
      ws.on('message', (d) => {
        if ((JSON.parse(d.toString()) as { type: string }).type === 'status') resolve()
      }),
    )
    const r = await fetch(sim.url + '/prompt', {
      method: 'POST',
      body: JSON.stringify({
        prompt: {
          '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
          '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
        },
      }),
    })
    expect(r.status).toBe(200)
    await status
    ws.close()
  })
})

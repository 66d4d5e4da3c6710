/**
 * The relay's batching and its queue-status shortcut, against a real upstream WebSocket server on port 0:
 * frames corked per tick leave byte-identical and in order, and ComfyUI's queue `status`, which reaches
 * every upstream socket, is relayed to each client but tapped only once (the observer's copy).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Client, MiniComfy } from '../../test/helpers/mini-comfy.js'
import { namespacedClientId } from './client-ids.js'
import { createGateway, type Gateway } from './create-gateway.js'
import { createRecordingTap, type RecordingTap } from './recording-tap.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function setup(): Promise<{ comfy: MiniComfy; gw: Gateway; tap: RecordingTap }> {
  const comfy = new MiniComfy()
  await comfy.start()
  cleanups.push(() => comfy.stop())
  const tap = createRecordingTap()
  const gw = await createGateway({
    upstreamUrl: comfy.url,
    port: 0,
    tap,
    idleCloseMillis: 0,
    reconnect: { initialDelayMillis: 10, maxDelayMillis: 50 },
    identify: () => ({
      user: 'local',
      auth_method: 'test',
      client_address: null,
      user_agent: null,
      client_id: null,
    }),
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) {
    await new Promise<void>((resolve) => gw.on('upstream', (e) => e.healthy && resolve()))
  }
  return { comfy, gw, tap }
}

/** The texts a client got after its connect `status`, up to and including the one `last` matches. */
async function textsUntil(c: Client, last: string): Promise<string[]> {
  await c.waitFor((f) => 'text' in f && f.text === last)
  return c.frames.slice(1).flatMap((f) => ('text' in f ? [f.text] : []))
}

describe('relay batching', () => {
  it('relays a burst sent in one tick byte-identical and in order', async () => {
    const { comfy, gw } = await setup()
    const client = await Client.connect(gw, '?clientId=burst')
    const id = namespacedClientId('local', 'burst')
    await comfy.connected(id)
    const up = comfy.sockets.get(id)!
    const sent: string[] = []
    // ComfyUI's spelling (json.dumps separators, a float, a unicode escape): nothing may be re-encoded.
    for (let i = 1; i <= 2000; i++)
      sent.push(
        `{"type": "progress", "data": {"value": ${i}, "max": 2000, "prompt_id": "p\\u00e9", "node": "7", "t": 1.50}}`,
      )
    sent.push('{"type": "custom.end", "data": {}}')
    for (const text of sent) up.send(text)
    expect(await textsUntil(client, sent.at(-1)!)).toEqual(sent)
  })

  it("relays ComfyUI's queue status to every client unchanged and taps it once", async () => {
    const { comfy, gw, tap } = await setup()
    const one = await Client.connect(gw, '?clientId=q1')
    const two = await Client.connect(gw, '?clientId=q2')
    await comfy.connected(namespacedClientId('local', 'q1'))
    await comfy.connected(namespacedClientId('local', 'q2'))
    const status = '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 3}}}}'
    const end = '{"type": "custom.end", "data": {}}'
    for (const ws of comfy.sockets.values()) ws.send(status)
    for (const ws of comfy.sockets.values()) ws.send(end)
    for (const c of [one, two]) expect(await textsUntil(c, end)).toEqual([status, end])
    await tap.waitFor('frame', (e) => e.frame.raw === end && e.upstreamClientId === gw.observerClientId)
    const tapped = tap.of('frame').filter((e) => e.frame.raw === status)
    expect(tapped).toHaveLength(1)
    expect(tapped[0]!.upstreamClientId).toBe(gw.observerClientId)
  })
})

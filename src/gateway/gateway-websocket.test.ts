import { once } from 'node:events'
import type http from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { Client, FEATURES, MiniComfy } from '../../test/helpers/mini-comfy.js'
import type { Logger } from '../audit/report-error.js'
import { namespacedClientId } from './client-ids.js'
import { createGateway, type Gateway, type GatewayOptions } from './create-gateway.js'
import { createRecordingTap, type RecordingTap } from './recording-tap.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

function userHeader(req: http.IncomingMessage): string {
  return String(req.headers['x-user'] ?? 'local')
}

async function setup(
  extra: Partial<GatewayOptions> = {},
  prepare?: (comfy: MiniComfy) => void,
): Promise<{ comfy: MiniComfy; gw: Gateway; tap: RecordingTap }> {
  const comfy = new MiniComfy()
  prepare?.(comfy)
  await comfy.start()
  cleanups.push(() => comfy.stop())
  const tap = createRecordingTap()
  const gw = await createGateway({
    upstreamUrl: comfy.url,
    port: 0,
    tap,
    idleCloseMillis: 0,
    reconnect: { initialDelayMillis: 10, maxDelayMillis: 50 },
    identify: (req) => ({
      user: userHeader(req),
      auth_method: 'test',
      client_address: null,
      user_agent: null,
      client_id: null,
    }),
    ...extra,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) {
    await new Promise<void>((resolve) => gw.on('upstream', (e) => e.healthy && resolve()))
  }
  return { comfy, gw, tap }
}

async function postPrompt(
  gw: Gateway,
  body: unknown,
  user = 'local',
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}/prompt`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', 'x-user': user },
  })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

const ns = (id: string, user = 'local'): string => namespacedClientId(user, id)

describe('downstream connects', () => {
  it("answers with the client's own id as sid and the queue length, under a namespaced upstream id", async () => {
    const { comfy, gw } = await setup({}, (c) => (c.queueRemaining = 2))
    const client = await Client.connect(gw, '?clientId=abc')
    expect(client.frames[0]).toMatchObject({
      json: { type: 'status', data: { status: { exec_info: { queue_remaining: 2 } }, sid: 'abc' } },
    })
    expect((client.frames[0] as { text: string }).text).toBe(
      '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "abc"}}',
    )
    await comfy.connected(ns('abc'))
    expect(comfy.opened).toContain(ns('abc'))
    expect(comfy.opened).not.toContain('abc')
  })

  it('gives a socket without clientId a uuid4 hex id, as ComfyUI does', async () => {
    const { gw } = await setup()
    const client = await Client.connect(gw)
    expect(client.json[0]!.data.sid).toMatch(/^[0-9a-f]{32}$/)
  })

  it("answers the first feature_flags frame with the server's flags; upstream gets the gateway's own negotiation once", async () => {
    const { comfy, gw } = await setup()
    const client = await Client.connect(gw, '?clientId=ff')
    const flags = '{"type":"feature_flags","data":{"supports_preview_metadata":true}}'
    const upstreamTexts: string[] = []
    const upstreamGotFlags = new Promise<string>((resolve) =>
      comfy.on('message', (id: string, text: string) => {
        if (id !== ns('ff')) return
        upstreamTexts.push(text)
        resolve(text)
      }),
    )
    client.ws.send(flags)
    const reply = await client.waitForType('feature_flags')
    expect((reply as { text: string }).text).toBe(`{"type": "feature_flags", "data": ${FEATURES}}`)
    // The upstream socket is shared by every downstream of this id, so it always negotiates preview
    // metadata itself (each downstream gets the format it asked for); the client's frame is not relayed.
    expect(await upstreamGotFlags).toBe(
      '{"type": "feature_flags", "data": {"supports_preview_metadata": true}}',
    )
    // ComfyUI's own reply to the forwarded flags is not relayed a second time.
    comfy.send('marker', {}, ns('ff'))
    await client.waitForType('marker')
    expect(client.json.filter((j) => j.type === 'feature_flags')).toHaveLength(1)
    expect(upstreamTexts).toHaveLength(1)
  })

  it('refuses a WebSocket whose Origin does not match a loopback Host, as ComfyUI does', async () => {
    const { gw } = await setup()
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, {
      headers: { Origin: 'http://evil.example' },
    })
    ws.on('error', () => {})
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, http.IncomingMessage]
    expect(res.statusCode).toBe(403)
    ws.terminate()
  })
})

describe('relaying', () => {
  it('passes text, binary and unknown events of an id to its socket unchanged', async () => {
    const { comfy, gw, tap } = await setup()
    const client = await Client.connect(gw, '?clientId=r1')
    await comfy.connected(ns('r1'))
    const a = comfy.send('executed', { node: '9', output: { images: [] }, prompt_id: 'p' }, ns('r1'))
    const b = comfy.sendBinary(4, Buffer.from('preview-bytes'), ns('r1'))
    const c = comfy.send('custom.node.event', { anything: [1, 2] }, ns('r1'))
    await client.waitForType('custom.node.event')
    const relayed = client.frames.slice(1)
    expect(relayed).toHaveLength(3)
    expect((relayed[0] as { text: string }).text).toBe(a)
    expect((relayed[1] as { binary: Buffer }).binary.equals(b)).toBe(true)
    expect((relayed[2] as { text: string }).text).toBe(c)
    const tapped = tap.of('frame').filter((f) => f.upstreamClientId === ns('r1'))
    expect(tapped.map((f) => f.frame.isBinary)).toEqual([false, false, true, false]) // connect status, then the three
  })

  it('keeps one upstream socket per id and sends events only to the newest downstream socket', async () => {
    const { comfy, gw } = await setup()
    const older = await Client.connect(gw, '?clientId=dup')
    const newer = await Client.connect(gw, '?clientId=dup')
    expect(comfy.opened.filter((id) => id === ns('dup'))).toHaveLength(1)
    expect(comfy.open.get(ns('dup'))).toBe(1)
    comfy.send('custom.one', {}, ns('dup'))
    await newer.waitForType('custom.one')
    await older.settle()
    expect(older.json.map((j) => j.type)).toEqual(['status'])
    expect(older.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('rewrites the namespaced id inside relayed frames to the id the client knows', async () => {
    const { comfy, gw } = await setup()
    const client = await Client.connect(gw, '?clientId=me')
    await comfy.connected(ns('me'))
    comfy.send('custom.whoami', { client: ns('me') }, ns('me'))
    const f = await client.waitForType('custom.whoami')
    expect((f as { json: { data: unknown } }).json.data).toEqual({ client: 'me' })
  })

  it('namespaces per user: the same client id of another person gets none of the events', async () => {
    const { comfy, gw } = await setup()
    const alice = await Client.connect(gw, '?clientId=tab', { 'x-user': 'alice' })
    const bob = await Client.connect(gw, '?clientId=tab', { 'x-user': 'bob' })
    await comfy.connected(ns('tab', 'alice'))
    await comfy.connected(ns('tab', 'bob'))
    expect(ns('tab', 'alice')).not.toBe(ns('tab', 'bob'))
    comfy.send('custom.private', {}, ns('tab', 'alice'))
    await alice.waitForType('custom.private')
    await bob.settle()
    expect(bob.json.map((j) => j.type)).toEqual(['status'])
  })

  it('relays each status broadcast once to every downstream socket', async () => {
    const { comfy, gw } = await setup()
    const one = await Client.connect(gw, '?clientId=s1')
    const two = await Client.connect(gw, '?clientId=s2', { 'x-user': 'bob' })
    await postPrompt(gw, { prompt: {} }) // opens a no-client upstream socket as well
    await comfy.connected(ns('s1'))
    await comfy.connected(ns('s2', 'bob'))
    comfy.send('status', { status: { exec_info: { queue_remaining: 1 } } })
    comfy.send('custom.marker', {})
    for (const c of [one, two]) {
      await c.waitForType('custom.marker')
      expect(c.json.map((j) => j.type)).toEqual(['status', 'status', 'custom.marker'])
    }
  })

  it('drops a downstream socket that stops reading instead of stalling the others', async () => {
    const warnings: string[] = []
    let dropped!: () => void
    const droppedOnce = new Promise<void>((r) => (dropped = r))
    const logger: Logger = {
      info() {},
      error() {},
      warn(message) {
        warnings.push(message)
        if (message.includes('does not keep up')) dropped()
      },
    }
    const { comfy, gw } = await setup({ logger, downstreamHighWaterMarkBytes: 1024 * 1024 })
    const slow = await Client.connect(gw, '?clientId=slow')
    const fast = await Client.connect(gw, '?clientId=fast')
    await comfy.connected(ns('slow'))
    await comfy.connected(ns('fast'))
    ;(slow.ws as unknown as { _socket: { pause(): void } })._socket.pause()
    const payload = Buffer.alloc(256 * 1024, 3)
    let isDropped = false
    void droppedOnce.then(() => (isDropped = true))
    let sent = 0
    // The fast client reads each frame before the next is sent; the slow one reads nothing.
    while (!isDropped && sent < 1000) {
      comfy.sendBinary(1, payload, ns('slow'))
      comfy.sendBinary(1, payload, ns('fast'))
      sent++
      await fast.waitFor(() => fast.frames.filter((f) => 'binary' in f).length === sent)
    }
    expect(isDropped).toBe(true)
    expect(fast.ws.readyState).toBe(WebSocket.OPEN)
    comfy.send('custom.after', {}, ns('fast'))
    await fast.waitForType('custom.after')
  })
})

describe('prompts', () => {
  it('injects a per-user client id for prompts without one and broadcasts only what ComfyUI would', async () => {
    const { comfy, gw, tap } = await setup()
    const alice = await Client.connect(gw, '?clientId=a', { 'x-user': 'alice' })
    const bob = await Client.connect(gw, '?clientId=b', { 'x-user': 'bob' })
    const answer = await postPrompt(gw, { prompt: { '1': { class_type: 'X', inputs: {} } } }, 'carol')
    expect(answer.status).toBe(200)
    const pid = answer.json.prompt_id as string
    expect(pid).toMatch(/^[0-9a-f-]{36}$/)
    const sent = comfy.prompts[0]!.body
    const noClient = sent.client_id as string
    expect(noClient).toMatch(/^g-[0-9a-f]{12}~noclient$/)
    expect(sent.prompt_id).toBe(pid)
    expect(comfy.opened).toContain(noClient) // the socket was there before the prompt was

    const to = noClient
    comfy.send('execution_start', { prompt_id: pid, timestamp: 1 }, to)
    comfy.send('execution_cached', { nodes: [], prompt_id: pid, timestamp: 1 }, to)
    comfy.send('progress_state', { prompt_id: pid, nodes: { '1': { state: 'running' } } }, to)
    comfy.send('executing', { node: '1', display_node: '1', prompt_id: pid }, to)
    comfy.send('progress', { value: 1, max: 2, prompt_id: pid, node: '1' }, to)
    comfy.sendBinary(1, Buffer.from('jpeg'), to)
    comfy.sendBinary(3, Buffer.from('text'))
    comfy.send('execution_error', { prompt_id: pid, exception_type: 'ExecutionBlocked', node_id: '1' }, to)
    comfy.send('executed', { node: '1', display_node: '1', output: null, prompt_id: pid }, to)
    comfy.send('progress_state', { prompt_id: pid, nodes: { '1': { state: 'finished' } } }, to)
    comfy.send('execution_error', { prompt_id: pid, exception_type: 'ValueError', node_id: '1' }, to)
    comfy.send('execution_interrupted', { prompt_id: pid, node_id: '1', node_type: 'X', executed: [] }, to)
    comfy.send('execution_success', { prompt_id: pid, timestamp: 2 }, to)
    comfy.send('executing', { node: null, prompt_id: pid }, to)
    const closed = comfy.closed(noClient)
    comfy.send('custom.marker', {})
    const expected = [
      'progress_state',
      'progress',
      'binary:1',
      'execution_error',
      'progress_state',
      'execution_interrupted',
    ]
    for (const c of [alice, bob]) {
      await c.waitForType('custom.marker')
      const seen = c.frames
        .slice(1)
        .map((f) => ('json' in f ? f.json.type : `binary:${f.binary.readUInt32BE(0)}`))
        .filter((t) => t !== 'custom.marker')
      // The TEXT frame reaches each client through its own upstream socket, so its place among the
      // no-client prompt's frames (another socket) is not fixed; it must arrive exactly once.
      expect(seen.filter((t) => t === 'binary:3')).toHaveLength(1)
      expect(seen.filter((t) => t !== 'binary:3')).toEqual(expected)
    }
    // Every frame reached the tap under the no-client id, and the id's socket closed after the run.
    expect(tap.of('frame').filter((f) => f.upstreamClientId === noClient).length).toBeGreaterThanOrEqual(13)
    await closed
    expect(gw.upstreamClientIds).not.toContain(noClient)
  })

  it("rewrites the client's own id, sends its events to its socket, and re-sends the running node on reconnect", async () => {
    const { comfy, gw, tap } = await setup()
    const first = await Client.connect(gw, '?clientId=c1')
    const answer = await postPrompt(gw, { prompt: {}, client_id: 'c1', prompt_id: 'mine-1' })
    expect(answer.json.prompt_id).toBe('mine-1')
    expect(comfy.prompts[0]!.body.client_id).toBe(ns('c1'))
    const submitted = tap.of('promptSubmitted')[0]!
    expect(submitted).toMatchObject({ promptId: 'mine-1', clientId: 'c1', upstreamClientId: ns('c1') })
    expect(submitted.submitter.client_id).toBe('c1')

    comfy.send('execution_start', { prompt_id: 'mine-1', timestamp: 1 }, ns('c1'))
    comfy.send('executing', { node: '7.0.0.3', display_node: '7', prompt_id: 'mine-1' }, ns('c1'))
    await first.waitForType('executing')
    await first.close()
    // The upstream socket outlives the tab while the prompt runs.
    comfy.send('progress', { value: 1, max: 3, prompt_id: 'mine-1', node: '7.0.0.3' }, ns('c1'))
    await tap.waitFor(
      'frame',
      (f) => f.upstreamClientId === ns('c1') && String(f.frame.raw).includes('"progress"'),
    )
    expect(comfy.opened.filter((id) => id === ns('c1'))).toHaveLength(1)

    const again = await Client.connect(gw, '?clientId=c1')
    await again.waitForType('executing')
    expect(again.frames.map((f) => ('text' in f ? f.text : ''))).toEqual([
      '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "c1"}}',
      '{"type": "executing", "data": {"node": "7"}}',
    ])
    const closed = comfy.closed(ns('c1'))
    comfy.send('executing', { node: null, prompt_id: 'mine-1' }, ns('c1'))
    await again.close()
    await closed
  })

  it('refuses a prompt id that is still in flight through the gateway', async () => {
    const { gw } = await setup()
    expect((await postPrompt(gw, { prompt: {}, prompt_id: 'same' })).status).toBe(200)
    const second = await postPrompt(gw, { prompt: {}, prompt_id: 'same' })
    expect(second.status).toBe(400)
    expect(second.json).toMatchObject({ error: { type: 'invalid_prompt' }, node_errors: {} })
  })
})

describe('ComfyUI restarts and gateway restarts', () => {
  it('drops downstream sockets when ComfyUI goes away, answers 503, and re-attaches when it is back', async () => {
    const { comfy, gw } = await setup()
    const client = await Client.connect(gw, '?clientId=rs')
    await comfy.connected(ns('rs'))
    const down = new Promise<void>((resolve) => gw.on('upstream', (e) => !e.healthy && resolve()))
    const clientClosed = once(client.ws, 'close')
    const port = comfy.port
    await comfy.stop()
    await down
    const [code] = (await clientClosed) as [number]
    expect(code).toBe(1012)
    expect((await fetch(`${gw.url}/queue`)).status).toBe(503)

    const up = new Promise<void>((resolve) => gw.on('upstream', (e) => e.healthy && resolve()))
    const reattached = comfy.connected(ns('rs'), 2)
    await comfy.start(port)
    await up
    const again = await Client.connect(gw, '?clientId=rs')
    await reattached
    expect(comfy.open.get(ns('rs'))).toBe(1)
    comfy.send('custom.back', {}, ns('rs'))
    await again.waitForType('custom.back')
  })

  it('re-attaches saved ids at start and lets go of those with nothing queued', async () => {
    const queuedId = ns('kept')
    const staleId = ns('stale')
    const saves: string[][] = []
    let savedKeptOnly!: () => void
    const keptOnly = new Promise<void>((r) => (savedKeptOnly = r))
    const state = {
      load: async () => [queuedId, staleId, 'not-ours'],
      save: async (ids: string[]) => {
        saves.push(ids)
        if (ids.length === 1 && ids[0] === queuedId) savedKeptOnly()
      },
    }
    const { comfy, gw } = await setup({ state }, (c) => {
      c.queue.running = [[0, 'p-running', {}, { client_id: queuedId }, []]]
    })
    await comfy.connected(queuedId)
    await keptOnly
    expect(gw.upstreamClientIds, JSON.stringify(saves)).toEqual([queuedId])
    expect(comfy.opened).not.toContain('not-ours')
    // The prompt that was running before the restart still reaches the client that reconnects.
    const client = await Client.connect(gw, '?clientId=kept')
    comfy.send('executed', { node: '1', output: null, prompt_id: 'p-running' }, queuedId)
    await client.waitForType('executed')
  })
})

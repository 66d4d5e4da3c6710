/**
 * Issue 15 item 3 (stand-in side): with `--preview-method` or `extra_data.preview_method`, KSampler
 * sends a JPEG preview each step, as main.py's progress hook and WebUIProgressHandler do: per step
 * `progress_state`, then type 4 (PREVIEW_IMAGE_WITH_METADATA) if the prompt's socket negotiated
 * supports_preview_metadata, then `progress`, then type 1 (PREVIEW_IMAGE) otherwise; broadcast (type 1
 * only) when the prompt has no client id.
 */
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { PyObject } from './py-json.js'
import { request, sd15, startSim } from './sim-test-kit.js'

type Sim = Awaited<ReturnType<typeof startSim>>

interface Seen {
  kinds: string[]
  binaries: Buffer[]
}

async function listen(
  sim: Sim,
  clientId: string,
  negotiate: boolean,
): Promise<{ seen: Seen; ws: WebSocket }> {
  const ws = new WebSocket(`${sim.url.replace(/^http/, 'ws')}/ws?clientId=${clientId}`)
  const seen: Seen = { kinds: [], binaries: [] }
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      seen.kinds.push(`bin${data.readUInt32BE(0)}`)
      seen.binaries.push(data)
    } else {
      const f = JSON.parse(data.toString()) as { type: string }
      seen.kinds.push(f.type)
    }
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  if (negotiate) {
    ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }))
    await waitUntil(() => seen.kinds.includes('feature_flags'))
  }
  return { seen, ws }
}

async function waitUntil(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setImmediate(r))
  }
}

const graph = (seed = 3): PyObject => {
  const g = sd15(seed, 2)
  ;((g['5'] as PyObject).inputs as PyObject).width = 64
  ;((g['5'] as PyObject).inputs as PyObject).height = 64
  return g
}

/** The frames of the sampler's steps: from its first progress_state running to its last progress. */
const stepKinds = (s: Seen): string[] =>
  s.kinds.filter((k) => k === 'progress' || k.startsWith('bin') || k === 'progress_state')

function isJpeg(b: Buffer): boolean {
  return b[0] === 0xff && b[1] === 0xd8 && b.at(-2) === 0xff && b.at(-1) === 0xd9
}

describe('sampler previews (issue 15 item 3)', () => {
  let sim: Sim | undefined
  const sockets: WebSocket[] = []
  afterEach(async () => {
    for (const ws of sockets.splice(0)) ws.close()
    await sim?.dispose()
  })

  async function run(body: PyObject): Promise<void> {
    const reply = await request(sim!.url, 'POST', '/prompt', body)
    expect(reply.status).toBe(200)
    await sim!.idle()
  }

  it('sends type 4 with its metadata to a socket that negotiated it, between progress_state and progress', async () => {
    sim = await startSim({ speed: 1000, previewMethod: 'auto' })
    const a = await listen(sim, 'client-a', true)
    const b = await listen(sim, 'client-b', false)
    sockets.push(a.ws, b.ws)
    await run({ prompt: graph(), client_id: 'client-a' })
    await waitUntil(() => a.seen.kinds.includes('executing') && a.seen.binaries.length === 2)
    const k = stepKinds(a.seen)
    const i = k.indexOf('bin4')
    expect(k.slice(i - 1, i + 5)).toEqual([
      'progress_state',
      'bin4',
      'progress',
      'progress_state',
      'bin4',
      'progress',
    ])
    expect(a.seen.kinds).not.toContain('bin1')
    const frame = a.seen.binaries[0]!
    const len = frame.readUInt32BE(4)
    const meta = JSON.parse(frame.subarray(8, 8 + len).toString()) as PyObject
    expect(meta).toEqual({
      node_id: '6',
      prompt_id: meta.prompt_id,
      display_node_id: '6',
      parent_node_id: null,
      real_node_id: '6',
      image_type: 'image/jpeg',
    })
    // json.dumps spacing, as ComfyUI writes the metadata
    expect(frame.subarray(8, 8 + len).toString()).toMatch(/^\{"node_id": "6", "prompt_id": /)
    expect(isJpeg(frame.subarray(8 + len))).toBe(true)
    // Another client's socket sees none of it.
    expect(b.seen.binaries).toHaveLength(0)
  })

  it('sends type 1 after progress to a socket that did not negotiate', async () => {
    sim = await startSim({ speed: 1000, previewMethod: 'latent2rgb' })
    const b = await listen(sim, 'client-b', false)
    sockets.push(b.ws)
    await run({ prompt: graph(), client_id: 'client-b' })
    await waitUntil(() => b.seen.binaries.length === 2)
    const k = stepKinds(b.seen)
    const i = k.indexOf('bin1')
    expect(k.slice(i - 2, i + 1)).toEqual(['progress_state', 'progress', 'bin1'])
    const frame = b.seen.binaries[0]!
    expect(frame.readUInt32BE(4)).toBe(1) // JPEG
    expect(isJpeg(frame.subarray(8))).toBe(true)
  })

  it('broadcasts type 1 to every socket for a prompt without client id (extra_data.preview_method)', async () => {
    sim = await startSim({ speed: 1000 })
    const a = await listen(sim, 'client-a', true)
    const b = await listen(sim, 'client-b', false)
    sockets.push(a.ws, b.ws)
    await run({ prompt: graph(), extra_data: { preview_method: 'taesd' } })
    await waitUntil(() => a.seen.binaries.length === 2 && b.seen.binaries.length === 2)
    for (const s of [a.seen, b.seen]) {
      expect(s.kinds.filter((x) => x.startsWith('bin'))).toEqual(['bin1', 'bin1'])
      expect(stepKinds(s).filter((x) => x !== 'progress_state')).toEqual([
        'progress',
        'bin1',
        'progress',
        'bin1',
      ])
    }
  })

  it('sends none without a method, or when the prompt asks for none', async () => {
    sim = await startSim({ speed: 1000, previewMethod: 'auto' })
    const a = await listen(sim, 'client-a', true)
    sockets.push(a.ws)
    await run({ prompt: graph(), client_id: 'client-a', extra_data: { preview_method: 'none' } })
    await waitUntil(() => a.seen.kinds.includes('execution_success'))
    expect(a.seen.binaries).toHaveLength(0)
    // another seed, so the sampler is not served from the cache
    await run({ prompt: graph(4), client_id: 'client-a', extra_data: { preview_method: 'default' } })
    await waitUntil(() => a.seen.binaries.length === 2)
    expect(a.seen.binaries).toHaveLength(2)
    await sim.dispose()
    sim = await startSim({ speed: 1000 })
    const c = await listen(sim, 'client-c', true)
    sockets.push(c.ws)
    await run({ prompt: graph(), client_id: 'client-c' })
    await waitUntil(() => c.seen.kinds.includes('execution_success'))
    expect(c.seen.binaries).toHaveLength(0)
  })
})

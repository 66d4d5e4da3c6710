import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createSimServer, type SimServer } from '../sim/index.js'
import { createGateway, type Gateway } from './create-gateway.js'
import { createRecordingTap } from './recording-tap.js'

/** The recorded `image_pipeline` prompt (fixtures/comfyui-0.8.0/trace.jsonl), without its workflow. */
const PIPELINE = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageScaleBy', inputs: { image: ['1', 0], upscale_method: 'bilinear', scale_by: 1.5 } },
  '3': { class_type: 'ImageBlur', inputs: { image: ['2', 0], blur_radius: 3, sigma: 1.0 } },
  '4': { class_type: 'ImageInvert', inputs: { image: ['3', 0] } },
  '5': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: 'audit/pipeline' } },
  '6': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
}

type Msg = { type: string; data: Record<string, unknown> }

/** A client that records JSON frames from the first one. */
class Client {
  readonly msgs: Msg[] = []
  readonly ws: WebSocket
  readonly #waiters = new Set<() => void>()
  constructor(base: string, clientId: string) {
    this.ws = new WebSocket(`${base.replace('http', 'ws')}/ws?clientId=${clientId}`)
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return
      this.msgs.push(JSON.parse(data.toString()) as Msg)
      for (const w of [...this.#waiters]) w()
    })
  }
  until(match: (m: Msg) => boolean, timeoutMs = 20_000): Promise<void> {
    if (this.msgs.some(match)) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check)
        reject(new Error(`not seen; got ${this.msgs.map((m) => m.type).join(',')}`))
      }, timeoutMs)
      const check = (): void => {
        if (!this.msgs.some(match)) return
        clearTimeout(timer)
        this.#waiters.delete(check)
        resolve()
      }
      this.#waiters.add(check)
    })
  }
  async close(): Promise<void> {
    const closed = once(this.ws, 'close')
    this.ws.close()
    await closed
  }
}

/** What a client saw, minus what depends on timing (status broadcasts) and on the clock. */
function shape(msgs: Msg[]): string[] {
  return msgs
    .filter((m) => m.type !== 'status')
    .map((m) => {
      const d = m.data
      if (m.type === 'progress_state') {
        const nodes = d.nodes as Record<string, { state: string }>
        return `progress_state ${Object.entries(nodes)
          .map(([id, n]) => `${id}:${n.state}`)
          .join(',')}`
      }
      return `${m.type} ${String(d.node ?? '')}`.trim()
    })
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function startSim(): Promise<SimServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'gw-sim-'))
  const sim = await createSimServer({ dataDir, port: 0, speed: 50 })
  cleanups.push(async () => {
    await sim.close()
    await rm(dataDir, { recursive: true, force: true })
  })
  return sim
}

async function startGateway(sim: SimServer): Promise<Gateway> {
  const gw = await createGateway({
    upstreamUrl: sim.url,
    port: 0,
    tap: createRecordingTap(),
    idleCloseMillis: 0,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) await new Promise<void>((r) => gw.on('upstream', (e) => e.healthy && r()))
  return gw
}

/** Runs the pipeline as client `a` (or without a client id) while `b` watches; returns what each saw. */
async function run(base: string, withClientId: boolean): Promise<{ a: Msg[]; b: Msg[]; promptId: string }> {
  const a = new Client(base, 'client-a')
  const b = new Client(base, 'client-b')
  await a.until((m) => m.type === 'status')
  await b.until((m) => m.type === 'status')
  const body = withClientId ? { prompt: PIPELINE, client_id: 'client-a' } : { prompt: PIPELINE }
  const res = await fetch(`${base}/prompt`, { method: 'POST', body: JSON.stringify(body) })
  expect(res.status).toBe(200)
  const { prompt_id: promptId } = (await res.json()) as { prompt_id: string }
  // The run is over for everyone once the queue is empty again.
  const emptyAgain = (m: Msg): boolean =>
    m.type === 'status' &&
    !('sid' in m.data) &&
    (m.data.status as { exec_info: { queue_remaining: number } }).exec_info.queue_remaining === 0
  if (withClientId) await a.until((m) => m.type === 'executing' && m.data.node === null)
  await a.until(emptyAgain)
  await b.until(emptyAgain)
  await a.close()
  await b.close()
  return { a: a.msgs, b: b.msgs, promptId }
}

describe('gateway in front of the ComfyUI stand-in', () => {
  it('gives the submitting client the same events as ComfyUI itself does', async () => {
    const direct = await run((await startSim()).url, true)
    const sim = await startSim()
    const gw = await startGateway(sim)
    const via = await run(gw.url, true)
    expect(via.a[0]).toMatchObject({ type: 'status', data: { sid: 'client-a' } })
    expect(shape(via.a)).toEqual(shape(direct.a))
    expect(shape(via.a)).toContain('execution_success')
    expect(shape(via.b)).toEqual(shape(direct.b))
    // ComfyUI ran it under the namespaced id; the client sees its own.
    const clientIdAt = async (base: string): Promise<string> => {
      const history = (await (await fetch(`${base}/history/${via.promptId}`)).json()) as Record<
        string,
        { prompt: unknown[] }
      >
      return (history[via.promptId]!.prompt[3] as { client_id: string }).client_id
    }
    expect(await clientIdAt(sim.url)).toMatch(/^u-[0-9a-f]{12}~client-a$/)
    expect(await clientIdAt(gw.url)).toBe('client-a')
  })

  it('shows every client what ComfyUI broadcasts for a prompt without a client id, and nothing more', async () => {
    const direct = await run((await startSim()).url, false)
    const sim = await startSim()
    const gw = await startGateway(sim)
    const via = await run(gw.url, false)
    expect(shape(direct.b).length).toBeGreaterThan(0)
    expect(shape(via.a)).toEqual(shape(direct.a))
    expect(shape(via.b)).toEqual(shape(direct.b))
    expect(shape(via.b).some((t) => t.startsWith('execution_start') || t.startsWith('executing'))).toBe(false)
  })
})

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Logger } from '../audit/report-error.js'
import { createSimServer, type SimServer } from '../sim/index.js'
import { createGateway, type Gateway, type GatewayOptions } from './create-gateway.js'
import { createRecordingTap } from './recording-tap.js'

/** The recorded `image_pipeline` prompt; with another blur radius 1, 2 and 6 come from the cache. */
const pipeline = (blurRadius: number): Record<string, unknown> => ({
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageScaleBy', inputs: { image: ['1', 0], upscale_method: 'bilinear', scale_by: 1.5 } },
  '3': { class_type: 'ImageBlur', inputs: { image: ['2', 0], blur_radius: blurRadius, sigma: 1.0 } },
  '4': { class_type: 'ImageInvert', inputs: { image: ['3', 0] } },
  '5': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: 'audit/view' } },
  '6': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
})

/**
 * The pipeline plus a node that keeps the worker busy (AuditSlowProgress, 20 s at recording speed), so the
 * next prompt waits in the queue; it leaves the pipeline's nodes in the cache (ComfyUI keeps only the nodes
 * of the last prompt).
 */
const SLOW = {
  ...pipeline(3),
  '7': { class_type: 'AuditSlowProgress', inputs: { image: ['4', 0], seconds: 20, steps: 2 } },
  '8': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: 'audit/slow' } },
}

type Json = Record<string, unknown>

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function startSim(): Promise<SimServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'gw-view-'))
  const sim = await createSimServer({ dataDir, port: 0, speed: 20 })
  cleanups.push(async () => {
    await sim.close()
    await rm(dataDir, { recursive: true, force: true })
  })
  return sim
}

async function startGateway(sim: SimServer, extra: Partial<GatewayOptions> = {}): Promise<Gateway> {
  const gw = await createGateway({
    upstreamUrl: sim.url,
    port: 0,
    tap: createRecordingTap(),
    idleCloseMillis: 0,
    ...extra,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) await new Promise<void>((r) => gw.on('upstream', (e) => e.healthy && r()))
  return gw
}

async function getJson(url: string): Promise<Json> {
  const res = await fetch(url)
  expect(res.status).toBe(200)
  const text = await res.text()
  // What the gateway sends must say how long it is.
  expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)))
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
  return JSON.parse(text) as Json
}

async function post(base: string, body: Json): Promise<string> {
  const res = await fetch(`${base}/prompt`, { method: 'POST', body: JSON.stringify(body) })
  expect(res.status).toBe(200)
  return ((await res.json()) as { prompt_id: string }).prompt_id
}

/** Everything a client can tell about one prompt from the history, queue and jobs routes. */
interface View {
  readonly queued: Json
  readonly history: Json
  readonly apiHistory: Json
  readonly job: Json
  readonly apiApiJob: Json
  readonly listItem: Json
  readonly clientIdInHistory: unknown
}

/**
 * Keeps the worker busy while warming the cache, queues the pipeline with another blur radius (with or
 * without a client id) and reads it back on every route, both spellings.
 */
async function scenario(base: string, sim: SimServer, clientId: string | null): Promise<View> {
  await post(base, { prompt: SLOW, client_id: 'warm-up' })
  const id = await post(
    base,
    clientId === null ? { prompt: pipeline(5) } : { prompt: pipeline(5), client_id: clientId },
  )
  const queue = await getJson(`${base}/queue`)
  const pending = (queue.queue_pending as unknown[][]).find((item) => item[1] === id)
  expect(pending).toBeDefined()
  await sim.idle()
  const history = (await getJson(`${base}/history/${id}`))[id] as Json
  const apiHistory = (await getJson(`${base}/api/history/${id}`))[id] as Json
  const job = await getJson(`${base}/api/jobs/${id}`)
  const apiApiJob = await getJson(`${base}/api/api/jobs/${id}`)
  const list = await getJson(`${base}/api/jobs`)
  const listItem = (list.jobs as Json[]).find((j) => j.id === id)!
  return {
    queued: pending![3] as Json,
    history,
    apiHistory,
    job,
    apiApiJob,
    listItem,
    clientIdInHistory: ((history.prompt as unknown[])[3] as Json).client_id,
  }
}

/** The parts of a view that do not depend on the clock, ids or temp file names. */
function shape(v: View): Json {
  const entry = (h: Json): Json => ({
    extraData: Object.keys((h.prompt as unknown[])[3] as Json),
    outputs: Object.keys(h.outputs as Json),
    meta: Object.keys(h.meta as Json),
  })
  const job = (j: Json): Json => ({
    keys: Object.keys(j),
    outputs: Object.keys(j.outputs as Json),
    outputsCount: j.outputs_count,
    preview: (j.preview_output as Json | undefined)?.nodeId,
    extraData: Object.keys((j.workflow as Json).extra_data as Json),
  })
  return {
    queued: Object.keys(v.queued),
    history: entry(v.history),
    apiHistory: entry(v.apiHistory),
    job: job(v.job),
    apiApiJob: job(v.apiApiJob),
    listItem: {
      keys: Object.keys(v.listItem),
      outputsCount: v.listItem.outputs_count,
      preview: (v.listItem.preview_output as Json | undefined)?.nodeId,
    },
  }
}

describe('history, queue and jobs through the gateway', () => {
  it('show a prompt sent without client id as ComfyUI shows it to a direct client', async () => {
    const directSim = await startSim()
    const direct = await scenario(directSim.url, directSim, null)
    const sim = await startSim()
    const gw = await startGateway(sim)
    const via = await scenario(gw.url, sim, null)

    // What a direct client sees: no client_id, and cached PreviewImage 6 not among the outputs.
    expect(direct.clientIdInHistory).toBeUndefined()
    expect(Object.keys(direct.history.outputs as Json)).toEqual(['5'])
    expect(direct.listItem.outputs_count).toBe(1)
    expect(shape(via)).toEqual(shape(direct))
    // ComfyUI itself ran it under the gateway's id, and recorded node 6.
    const upstream = (await getJson(`${sim.url}/history/${String(via.job.id)}`))[String(via.job.id)] as Json
    expect(((upstream.prompt as unknown[])[3] as Json).client_id).toMatch(/^g-[0-9a-f]{12}~noclient$/)
    expect(Object.keys(upstream.outputs as Json).sort()).toEqual(['5', '6'])
  }, 30_000)

  it('show a client its own id, and the outputs ComfyUI records for it', async () => {
    const directSim = await startSim()
    const direct = await scenario(directSim.url, directSim, 'client-a')
    const sim = await startSim()
    const gw = await startGateway(sim)
    const via = await scenario(gw.url, sim, 'client-a')

    expect(via.clientIdInHistory).toBe('client-a')
    expect(via.queued.client_id).toBe('client-a')
    expect((via.job.workflow as { extra_data: Json }).extra_data.client_id).toBe('client-a')
    expect((via.apiApiJob.workflow as { extra_data: Json }).extra_data.client_id).toBe('client-a')
    expect(Object.keys(via.history.outputs as Json).sort()).toEqual(['5', '6'])
    expect(shape(via)).toEqual(shape(direct))
    const upstream = (await getJson(`${sim.url}/history/${String(via.job.id)}`))[String(via.job.id)] as Json
    expect(((upstream.prompt as unknown[])[3] as Json).client_id).toMatch(/^u-[0-9a-f]{12}~client-a$/)
  }, 30_000)

  it('passes an answer over the size limit on unchanged, and says so', async () => {
    const warnings: string[] = []
    const logger: Logger = { info() {}, warn: (m) => warnings.push(m), error() {} }
    const sim = await startSim()
    const gw = await startGateway(sim, { maxRewriteBytes: 64, logger })
    const id = await post(gw.url, { prompt: pipeline(3), client_id: 'client-a' })
    await sim.idle()
    const direct = await (await fetch(`${sim.url}/history/${id}`)).text()
    const res = await fetch(`${gw.url}/history/${id}`)
    expect(await res.text()).toBe(direct)
    expect(direct).toMatch(/"client_id": "u-[0-9a-f]{12}~client-a"/)
    expect(warnings).toContain('gateway: answer too large to rewrite, passed on unchanged')
  }, 30_000)
})

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { PyObject, PyValue } from './py-json.js'
import { RecordingClient, imagePipeline, request, sd15, startSim } from './sim-test-kit.js'

type Sim = Awaited<ReturnType<typeof startSim>>

async function submit(sim: Sim, body: PyObject): Promise<string> {
  const reply = await request(sim.url, 'POST', '/prompt', body)
  expect(reply.status).toBe(200)
  return String((reply.body as PyObject).prompt_id)
}

const slowPipeline = (seconds: number, steps: number, prefix = 'audit/slow'): PyObject => {
  const p = imagePipeline(3, prefix)
  p['7'] = { class_type: 'AuditSlowProgress', inputs: { image: ['4', 0], seconds, steps } }
  ;(p['5'] as { inputs: PyObject }).inputs.images = ['7', 0]
  return p
}

describe('the prompt worker', () => {
  let sim: Sim
  let a: RecordingClient
  beforeEach(async () => {
    sim = await startSim()
    a = new RecordingClient(sim.url, 'client-a')
    await a.opened
  })
  afterEach(async () => {
    await a.close()
    await sim.dispose()
  })

  it('runs the image pipeline in ComfyUI order 1,2,6,3,4,5 and ends with success, status, executing null', async () => {
    const id = await submit(sim, { prompt: imagePipeline(), client_id: 'client-a' })
    await a.waitFor((f) => f.type === 'executing' && f.data.node === null && f.data.prompt_id === id)
    expect(a.trail(id)).toEqual([
      'execution_start',
      'execution_cached',
      'executing:1',
      'executing:2',
      'executing:6',
      'executed:6',
      'executing:3',
      'executing:4',
      'executing:5',
      'executed:5',
      'execution_success',
      'executing:null',
    ])
    const types = a.frames.map((f) => f.type)
    const success = types.lastIndexOf('execution_success')
    expect(types.slice(success, success + 3)).toEqual(['execution_success', 'status', 'executing'])
  })

  it('runs the SD1.5 graph in the recorded order 1,5,2,4,3,6,7,8 with a progress event per sampler step', async () => {
    const id = await submit(sim, { prompt: sd15(), client_id: 'client-a' })
    await a.ended(id)
    const executing = a.trail(id).filter((t) => t.startsWith('executing:') && t !== 'executing:null')
    expect(executing).toEqual([
      'executing:1',
      'executing:5',
      'executing:2',
      'executing:4',
      'executing:3',
      'executing:6',
      'executing:7',
      'executing:8',
    ])
    expect(a.trail(id).filter((t) => t === 'progress:6')).toHaveLength(6)
  })

  it('serves a repeated prompt from the cache and a changed blur radius partly from it', async () => {
    const first = await submit(sim, { prompt: imagePipeline(), client_id: 'client-a' })
    await a.ended(first)
    const again = await submit(sim, { prompt: imagePipeline(), client_id: 'client-a' })
    await a.waitFor((f) => f.type === 'executing' && f.data.node === null && f.data.prompt_id === again)
    const cached = a.frames.find((f) => f.type === 'execution_cached' && f.data.prompt_id === again)!
    expect(cached.data.nodes).toEqual(['1', '2', '3', '4', '5', '6'])
    expect(a.trail(again)).toEqual([
      'execution_start',
      'execution_cached',
      'executed:5',
      'executed:6',
      'execution_success',
      'executing:null',
    ])
    const finished = a.frames.filter((f) => f.type === 'progress_state' && f.data.prompt_id === again).at(-1)!
    expect(Object.keys(finished.data.nodes as PyObject)).toEqual(['5', '6'])

    const partly = await submit(sim, { prompt: imagePipeline(5), client_id: 'client-a' })
    await a.ended(partly)
    expect(
      a.frames.find((f) => f.type === 'execution_cached' && f.data.prompt_id === partly)!.data.nodes,
    ).toEqual(['1', '2', '6'])
    expect(a.trail(partly).filter((t) => t.startsWith('executing:') && t !== 'executing:null')).toEqual([
      'executing:3',
      'executing:4',
      'executing:5',
    ])
  })

  it('runs only the requested output with partial_execution_targets', async () => {
    const id = await submit(sim, {
      prompt: imagePipeline(7),
      client_id: 'client-a',
      partial_execution_targets: ['6'],
    })
    await a.ended(id)
    const hist = await request(sim.url, 'GET', `/history/${id}`)
    expect(Object.keys(((hist.body as PyObject)[id] as PyObject).outputs as PyObject)).toEqual(['6'])
  })

  it('sends per-prompt events only to the client, and broadcasts progress of a prompt without client_id', async () => {
    const observer = new RecordingClient(sim.url, 'observer', false)
    await observer.opened
    const withClient = await submit(sim, {
      prompt: slowPipeline(0.2, 2, 'audit/mine'),
      client_id: 'client-a',
    })
    await a.ended(withClient)
    // Different seconds, so node 7 is not served from the cache.
    const anonymous = await submit(sim, { prompt: slowPipeline(0.3, 2, 'audit/anon') })
    await observer.waitFor(
      (f) => f.type === 'progress' && f.data.prompt_id === anonymous && f.data.value === 2,
    )
    await sim.idle()
    expect(observer.frames.filter((f) => f.data.prompt_id === withClient)).toEqual([])
    expect(observer.trail(anonymous)).toEqual(['progress:7', 'progress:7'])
    expect(a.trail(anonymous)).toEqual(['progress:7', 'progress:7'])
    // ComfyUI keeps a cached output node's UI out of history when the prompt has no client.
    const hist = await request(sim.url, 'GET', `/history/${anonymous}`)
    expect(Object.keys(((hist.body as PyObject)[anonymous] as PyObject).outputs as PyObject)).toEqual(['5'])
    await observer.close()
  })

  it('keeps one socket per client id: the newest gets events, and closing the older one deafens it', async () => {
    const older = new RecordingClient(sim.url, 'client-c')
    await older.opened
    const newer = new RecordingClient(sim.url, 'client-c')
    await newer.opened
    const first = await submit(sim, { prompt: imagePipeline(), client_id: 'client-c' })
    await newer.ended(first)
    expect(older.trail(first)).toEqual([])
    await older.close()
    const second = await submit(sim, { prompt: imagePipeline(4), client_id: 'client-c' })
    await sim.idle()
    expect(sim.history().has(second)).toBe(true)
    expect(newer.trail(second)).toEqual([])
    expect(sim.clientIds()).not.toContain('client-c')
    await newer.close()
  })

  it('greets a reconnecting client with status (sid) and the running node', async () => {
    const first = new RecordingClient(sim.url, 'client-r')
    await first.opened
    const id = await submit(sim, { prompt: slowPipeline(200, 8), client_id: 'client-r' })
    await first.waitFor((f) => f.type === 'executing' && f.data.node === '7')
    const c = new RecordingClient(sim.url, 'client-r')
    const status = await c.waitFor((f) => f.type === 'status')
    expect(status.data.sid).toBe('client-r')
    const executing = await c.waitFor((f) => f.type === 'executing')
    expect(executing.data).toEqual({ node: '7' })
    const flags = await c.waitFor((f) => f.type === 'feature_flags')
    const greeting = c.frames
      .map((f) => f.type)
      .filter((t) => ['status', 'executing', 'feature_flags'].includes(t))
    expect(greeting.slice(0, 3)).toEqual(['status', 'executing', 'feature_flags'])
    expect(flags.data.supports_preview_metadata).toBe(true)
    await request(sim.url, 'POST', '/interrupt', {})
    await c.ended(id)
    expect(first.frames.some((f) => f.type === 'execution_interrupted')).toBe(false)
    await first.close()
    await c.close()
  })

  it('interrupts the running prompt at the next progress step', async () => {
    const id = await submit(sim, { prompt: slowPipeline(200, 40), client_id: 'client-a' })
    await a.waitFor((f) => f.type === 'progress' && f.data.prompt_id === id)
    const other = await request(sim.url, 'POST', '/interrupt', { prompt_id: 'not-running' })
    expect(other.status).toBe(200)
    await request(sim.url, 'POST', '/interrupt', { prompt_id: id })
    const end = await a.ended(id)
    expect(end.type).toBe('execution_interrupted')
    expect(end.data).toMatchObject({ node_id: '7', node_type: 'AuditSlowProgress' })
    const progress = a.frames.filter((f) => f.type === 'progress' && f.data.prompt_id === id)
    expect(progress.length).toBeLessThan(40)
    const hist = (await request(sim.url, 'GET', `/history/${id}`)).body as PyObject
    const status = (hist[id] as PyObject).status as PyObject
    expect(status.status_str).toBe('error')
    expect((status.messages as PyValue[][]).map((m) => m[0])).toEqual([
      'execution_start',
      'execution_cached',
      'execution_interrupted',
    ])
  })

  it('reports a failing node with the recorded error keys and marks history and job failed', async () => {
    const p = imagePipeline(3, 'audit/fail')
    p['7'] = { class_type: 'AuditFail', inputs: { image: ['4', 0], message: 'planned failure in node 7' } }
    ;(p['5'] as { inputs: PyObject }).inputs.images = ['7', 0]
    const id = await submit(sim, { prompt: p, client_id: 'client-a' })
    const err = await a.ended(id)
    expect(err.type).toBe('execution_error')
    expect(Object.keys(err.data).sort()).toEqual(
      [
        'current_inputs',
        'current_outputs',
        'exception_message',
        'exception_type',
        'executed',
        'node_id',
        'node_type',
        'prompt_id',
        'timestamp',
        'traceback',
      ].sort(),
    )
    expect(err.data.exception_message).toBe('planned failure in node 7\n')
    expect(err.data.exception_type).toBe('ValueError')
    await sim.idle()
    const job = (await request(sim.url, 'GET', `/api/jobs/${id}`)).body as PyObject
    expect(job.status).toBe('failed')
    expect((job.execution_error as PyObject).node_id).toBe('7')
  })

  it('fails a corrupt checkpoint with the safetensors error of the recording', async () => {
    const id = await submit(sim, {
      client_id: 'client-a',
      prompt: {
        '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'corrupt-model.safetensors' } },
        '2': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
        '3': { class_type: 'VAEDecode', inputs: { samples: ['2', 0], vae: ['1', 2] } },
        '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'audit/corrupt' } },
      },
    })
    const err = await a.ended(id)
    expect(err.data).toMatchObject({
      node_id: '1',
      exception_type: 'safetensors._safetensors_rust.SafetensorError',
      exception_message: 'Error while deserializing header: header too large\n',
    })
  })

  it('deletes a pending prompt from the queue without a trace in history', async () => {
    const running = await submit(sim, { prompt: slowPipeline(200, 50, 'audit/q1'), client_id: 'client-a' })
    const keep = await submit(sim, { prompt: slowPipeline(0.1, 1, 'audit/q2'), client_id: 'client-a' })
    const doomed = await submit(sim, { prompt: slowPipeline(0.1, 1, 'audit/q3'), client_id: 'client-a' })
    const front = await request(sim.url, 'POST', '/prompt', {
      prompt: slowPipeline(0.1, 1, 'audit/q4'),
      front: true,
    })
    expect((front.body as PyObject).number).toBe(-3)
    const queue = (await request(sim.url, 'GET', '/queue')).body as PyObject
    expect((queue.queue_running as PyValue[][]).map((x) => x[1])).toEqual([running])
    // heapq order, not sorted: pushing -3 onto [1, 2] swaps it with the root.
    expect((queue.queue_pending as PyValue[][]).map((x) => x[0])).toEqual([-3, 2, 1])
    await request(sim.url, 'POST', '/queue', { delete: [doomed] })
    const after = (await request(sim.url, 'GET', '/queue')).body as PyObject
    expect((after.queue_pending as PyValue[][]).map((x) => x[1])).not.toContain(doomed)
    await request(sim.url, 'POST', '/interrupt', {})
    await a.ended(keep)
    await sim.idle()
    expect(sim.history().has(doomed)).toBe(false)
    expect(sim.history().has(keep)).toBe(true)
  })

  it('strips the sensitive extra_data keys from history, queue and jobs', async () => {
    const id = await submit(sim, {
      prompt: imagePipeline(2),
      client_id: 'client-a',
      extra_data: { api_key_comfy_org: 'secret-api-key-value', auth_token_comfy_org: 'secret-token' },
    })
    await a.ended(id)
    await sim.idle()
    for (const path of [`/history/${id}`, `/api/jobs/${id}`, '/queue', '/api/jobs']) {
      expect((await request(sim.url, 'GET', path)).text).not.toContain('secret')
    }
  })
})

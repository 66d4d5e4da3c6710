/**
 * Issue 15 item 4: the stand-in caches like ComfyUI 0.8's classic cache. Outputs are keyed by input
 * signature (CacheKeySetInputSignature: class, IS_CHANGED, constants and the ancestors' signatures,
 * no node id), so a node is cached under another id or in another graph; at the start of each prompt
 * every entry the new prompt does not use is dropped (BasicCache.clean_unused); `execution_cached`
 * lists exactly the prompt's nodes whose signature is cached then.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { PyObject } from './py-json.js'
import { RecordingClient, imagePipeline, request, startSim } from './sim-test-kit.js'

type Sim = Awaited<ReturnType<typeof startSim>>

/** The same graph with every node id replaced by `prefix + id`. */
function renumber(p: PyObject, prefix: string): PyObject {
  const out: PyObject = {}
  for (const [id, n] of Object.entries(p)) {
    const node = structuredClone(n) as { inputs: Record<string, unknown> }
    for (const [k, v] of Object.entries(node.inputs)) {
      if (Array.isArray(v) && typeof v[0] === 'string') node.inputs[k] = [prefix + v[0], v[1]]
    }
    out[prefix + id] = node as unknown as PyObject
  }
  return out
}

// LoadImage -> ImageScaleBy as in the pipeline, then a different tail.
const sharedHead = (): PyObject => ({
  a: { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  b: { class_type: 'ImageScaleBy', inputs: { image: ['a', 0], upscale_method: 'bilinear', scale_by: 1.5 } },
  c: { class_type: 'ImageInvert', inputs: { image: ['b', 0] } },
  d: { class_type: 'SaveImage', inputs: { images: ['c', 0], filename_prefix: 'audit/other' } },
})

describe('the classic output cache across prompts and graphs (issue 15 item 4)', () => {
  let sim: Sim
  let a: RecordingClient
  beforeEach(async () => {
    sim = await startSim({ speed: 200 })
    a = new RecordingClient(sim.url, 'client-a')
    await a.opened
  })
  afterEach(async () => {
    await a.close()
    await sim.dispose()
  })

  async function run(prompt: PyObject): Promise<{ cached: unknown; executing: string[] }> {
    const reply = await request(sim.url, 'POST', '/prompt', { prompt, client_id: 'client-a' })
    expect(reply.status).toBe(200)
    const id = String((reply.body as PyObject).prompt_id)
    expect((await a.ended(id)).type).toBe('execution_success')
    const cached = a.frames.find((f) => f.type === 'execution_cached' && f.data.prompt_id === id)
    const executing = a
      .trail(id)
      .filter((t) => t.startsWith('executing:') && t !== 'executing:null')
      .map((t) => t.slice('executing:'.length))
    return { cached: cached?.data.nodes, executing }
  }

  it('hits under other node ids: the renumbered graph is cached whole', async () => {
    expect((await run(imagePipeline())).cached).toEqual([])
    const second = await run(renumber(imagePipeline(), 'x'))
    expect(second.cached).toEqual(['x1', 'x2', 'x3', 'x4', 'x5', 'x6'])
    expect(second.executing).toEqual([])
  })

  it('hits in another graph for exactly the nodes whose signature is shared', async () => {
    await run(imagePipeline())
    const other = await run(sharedHead())
    expect(other.cached).toEqual(['a', 'b'])
    expect(other.executing).toEqual(['c', 'd'])
  })

  it('drops what the next prompt does not use (clean_unused), so a hit needs consecutive prompts', async () => {
    await run(imagePipeline())
    await run(sharedHead())
    // Blur, invert, save and preview of the pipeline were dropped when sharedHead started.
    const again = await run(imagePipeline())
    expect(again.cached).toEqual(['1', '2'])
    expect(again.executing).toEqual(['6', '3', '4', '5'])
    const disjoint: PyObject = {
      '1': { class_type: 'LoadImage', inputs: { image: 'example.png' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'audit/disjoint' } },
    }
    expect((await run(disjoint)).cached).toEqual([])
    expect((await run(imagePipeline())).cached).toEqual([])
  })

  it('a changed constant changes the signature of the node and of everything after it', async () => {
    await run(imagePipeline(3))
    const changed = await run(imagePipeline(4))
    expect(changed.cached).toEqual(['1', '2', '6'])
    expect(changed.executing).toEqual(['3', '4', '5'])
  })

  it('a duplicate chain in one prompt runs once: the copy hits the entry its twin just made', async () => {
    const p = { ...sharedHead(), ...renumber(sharedHead(), 'z') }
    ;((p.zd as PyObject).inputs as PyObject).filename_prefix = 'audit/other'
    const r = await run(p)
    expect(r.cached).toEqual([])
    expect(r.executing.filter((id) => id.startsWith('z'))).toEqual([])
    expect(r.executing.sort()).toEqual(['a', 'b', 'c', 'd'])
  })
})

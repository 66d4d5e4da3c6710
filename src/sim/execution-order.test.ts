/**
 * Issue 15 item 5: the stand-in runs nodes in the order of ComfyUI 0.8's ExecutionList with
 * ux_friendly_pick_node (comfy_execution/graph.py) for any graph. The reference below is written
 * again, separately, from the Python: TopologicalSort.add_node (an explicit stack, links collected
 * and made strong afterwards, cached inputs not walked), get_ready_nodes in pendingNodes order,
 * and the pick: an output node, else one blocking an output, else one two links before one, else
 * the first ready node. No stand-in node is async, so is_async never applies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { seededRandom } from '../demo/seeded-random.js'
import { ExecutionList } from './execution-list.js'
import type { PyObject } from './py-json.js'
import { RecordingClient, request, sd15, startSim } from './sim-test-kit.js'

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>

const OUTPUT_CLASSES = new Set(['SaveImage', 'PreviewImage'])

/** graph.py's staging, for the whole run: the order nodes complete in. */
function referenceOrder(graph: Graph, outputs: string[], cached: Set<string>): string[] {
  const pendingNodes: string[] = [] // a Python dict's keys: insertion order, deletes keep the rest
  const blockCount: Record<string, number> = {}
  const blocking: Record<string, Map<string, Record<number, true>>> = {}
  const isLink = (v: unknown): v is [string, number] =>
    Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number'
  const addStrongLink = (from: string, socket: number, to: string): void => {
    if (cached.has(from)) return
    addNode(from)
    const b = blocking[from]!
    if (!b.has(to)) {
      b.set(to, {})
      blockCount[to]! += 1
    }
    b.get(to)![socket] = true
  }
  function addNode(start: string): void {
    const nodeIds = [start]
    const links: Array<[string, number, string]> = []
    while (nodeIds.length > 0) {
      const uid = nodeIds.pop()!
      if (pendingNodes.includes(uid)) continue
      pendingNodes.push(uid)
      blockCount[uid] = 0
      blocking[uid] = new Map()
      const inputs = graph[uid]!.inputs
      for (const name in inputs) {
        const value = inputs[name]
        if (!isLink(value)) continue
        if (!cached.has(value[0])) nodeIds.push(value[0])
        links.push([value[0], value[1], uid])
      }
    }
    for (const l of links) addStrongLink(...l)
  }
  for (const o of outputs) addNode(o)
  const isOutput = (id: string): boolean => OUTPUT_CLASSES.has(graph[id]!.class_type)
  const order: string[] = []
  while (pendingNodes.length > 0) {
    const available = pendingNodes.filter((id) => blockCount[id] === 0)
    if (available.length === 0) throw new Error('cycle')
    let pick = available.find(isOutput)
    pick ??= available.find((id) => [...blocking[id]!.keys()].some(isOutput))
    pick ??= available.find((id) =>
      [...blocking[id]!.keys()].some((b) => [...blocking[b]!.keys()].some(isOutput)),
    )
    pick ??= available[0]!
    order.push(pick)
    pendingNodes.splice(pendingNodes.indexOf(pick), 1)
    for (const to of blocking[pick]!.keys()) blockCount[to]! -= 1
    delete blocking[pick]
  }
  return order
}

function runList(graph: Graph, outputs: string[], cached: Set<string>): string[] {
  const list = new ExecutionList({
    prompt: graph as unknown as PyObject,
    isCached: (id) => cached.has(id),
    isOutput: (ct) => OUTPUT_CLASSES.has(ct),
  })
  for (const o of outputs) list.addNode(o)
  const order: string[] = []
  while (!list.isEmpty()) {
    const id = list.next()
    if (id === undefined) throw new Error('cycle')
    order.push(id)
    list.complete(id)
  }
  return order
}

const CLASSES = [
  'LoadImage',
  'ImageScaleBy',
  'ImageBlur',
  'ImageInvert',
  'KSampler',
  'LoraLoader',
  'VAEDecode',
]

/** A random DAG: each node takes 0-3 links to earlier nodes; 1-4 output nodes; some nodes cached. */
function randomGraph(r: () => number): { graph: Graph; outputs: string[]; cached: Set<string> } {
  const n = 2 + Math.floor(r() * 14)
  const graph: Graph = {}
  // Ids are shuffled numbers, so prompt order, id order and topological order all differ.
  const ids = Array.from({ length: n + 4 }, (_, i) => String(i + 1)).sort(() => r() - 0.5)
  const made: string[] = []
  for (let i = 0; i < n; i++) {
    const id = ids[i]!
    const inputs: Record<string, unknown> = { value: Math.floor(r() * 3) }
    const links = made.length === 0 ? 0 : Math.floor(r() * 4)
    for (let k = 0; k < links; k++) {
      inputs[`in_${String.fromCharCode(97 + Math.floor(r() * 5))}`] = [
        made[Math.floor(r() * made.length)]!,
        Math.floor(r() * 3),
      ]
    }
    graph[id] = { class_type: CLASSES[Math.floor(r() * CLASSES.length)]!, inputs }
    made.push(id)
  }
  const outputs: string[] = []
  const outCount = 1 + Math.floor(r() * 4)
  for (let k = 0; k < outCount; k++) {
    const id = ids[n + k]!
    const cls = r() < 0.5 ? 'SaveImage' : 'PreviewImage'
    const inputs: Record<string, unknown> = { images: [made[Math.floor(r() * made.length)]!, 0] }
    if (r() < 0.3) inputs.extra = [made[Math.floor(r() * made.length)]!, 1]
    graph[id] = { class_type: cls, inputs }
    outputs.push(id)
  }
  const cached = new Set(made.filter(() => r() < 0.15))
  return { graph, outputs: outputs.sort(() => r() - 0.5), cached }
}

describe('execution order (issue 15 item 5)', () => {
  it('matches the reference staging on 300 generated graphs', () => {
    // Seeded: the graphs are random but the same on every run.
    const r = seededRandom(0x15_05)
    let checked = 0
    let nontrivial = 0
    for (let i = 0; i < 300; i++) {
      const { graph, outputs, cached } = randomGraph(r)
      const expected = referenceOrder(graph, outputs, cached)
      expect(
        runList(graph, outputs, cached),
        JSON.stringify({ graph, outputs, cached: [...cached] }),
      ).toEqual(expected)
      checked++
      // Count the graphs where the pick is not simply prompt order.
      const inPromptOrder = Object.keys(graph).filter((id) => expected.includes(id))
      if (JSON.stringify(inPromptOrder) !== JSON.stringify(expected)) nontrivial++
    }
    expect(checked).toBe(300)
    expect(nontrivial).toBeGreaterThan(150)
  })

  describe('through the running stand-in', () => {
    let sim: Awaited<ReturnType<typeof startSim>>
    let a: RecordingClient
    beforeAll(async () => {
      sim = await startSim({ speed: 1000 })
      a = new RecordingClient(sim.url, 'client-order')
      await a.opened
    })
    afterAll(async () => {
      await a.close()
      await sim.dispose()
    })

    // LoRA loaders, two samplers on one model, a batch and three outputs in one graph.
    function bigGraph(): Graph {
      const g = sd15(7, 2) as unknown as Graph
      g['5']!.inputs.batch_size = 3
      g['9'] = {
        class_type: 'LoraLoader',
        inputs: {
          model: ['2', 0],
          clip: ['2', 1],
          lora_name: 'audit-style-lora.safetensors',
          strength_model: 0.5,
          strength_clip: 0.5,
        },
      }
      g['10'] = { class_type: 'CLIPTextEncode', inputs: { text: 'second', clip: ['9', 1] } }
      g['11'] = {
        class_type: 'KSampler',
        inputs: { ...g['6']!.inputs, model: ['9', 0], positive: ['10', 0], seed: 8 },
      }
      g['12'] = { class_type: 'VAEDecode', inputs: { samples: ['11', 0], vae: ['1', 2] } }
      g['13'] = { class_type: 'PreviewImage', inputs: { images: ['12', 0] } }
      g['14'] = { class_type: 'ImageInvert', inputs: { image: ['7', 0] } }
      g['15'] = { class_type: 'SaveImage', inputs: { images: ['14', 0], filename_prefix: 'audit/order' } }
      return g
    }

    it('announces executing in the reference order for a branching SD graph', async () => {
      const g = bigGraph()
      const reply = await request(sim.url, 'POST', '/prompt', { prompt: g, client_id: 'client-order' })
      expect(reply.status).toBe(200)
      const id = String((reply.body as PyObject).prompt_id)
      expect((await a.ended(id)).type).toBe('execution_success')
      const executing = a
        .trail(id)
        .filter((t) => t.startsWith('executing:') && t !== 'executing:null')
        .map((t) => t.slice('executing:'.length))
      // validate_prompt returns a set of outputs (hash order in Python); the stand-in keeps prompt order.
      const outputs = Object.keys(g).filter((k) => OUTPUT_CLASSES.has(g[k]!.class_type))
      expect(executing).toEqual(referenceOrder(g, outputs, new Set()))
      expect(executing).toHaveLength(Object.keys(g).length)
    })
  })
})

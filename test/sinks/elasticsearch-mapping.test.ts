/**
 * Issue 10 item 10, Elasticsearch: a real cluster's dynamic mapping refuses documents for good when a
 * free-form value changes type between records. The cluster's rules are written down in
 * test/helpers/elasticsearch-rules.ts (checked here first, rule by rule); then a real gateway runs varied
 * workflows through the stand-in (the recorded ComfyUI 0.8 prompts with their UI workflows, stand-in graphs,
 * a failing node, a prompt ComfyUI refuses, an interrupt) and ships to that receiver, once with the shipped
 * index template and once without: with it every record is accepted, without it some are refused.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson } from '../../src/audit/json.js'
import type { JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { elasticsearchTemplate } from '../../src/sinks/elasticsearch/elasticsearch-sink.js'
import { createSessionMerger, toSinkRecords } from '../../src/sinks/sink.js'
import { CheckedIndex, startCheckedCluster, type CheckedCluster } from '../helpers/elasticsearch-rules.js'

const TRACE = new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url)
const FINAL = new Set(['success', 'error', 'interrupted', 'cancelled', 'rejected', 'lost'])

describe('the written-down cluster rules', () => {
  it('maps a field on first sight and refuses a later value of another type, adding nothing', () => {
    const index = new CheckedIndex()
    expect(index.index({ a: { links: [[1, 2, 'MODEL']] } })).toMatchObject({
      type: 'mapper_parsing_exception',
    })
    expect(index.fieldCount()).toBe(0)
    expect(index.index({ n: 5, s: 'x', d: '2026-11-26T04:34:00.123Z', o: { k: true } })).toBeNull()
    expect(index.mappingOf('n')).toEqual({ kind: 'leaf', type: 'long' })
    expect(index.mappingOf('s')).toEqual({ kind: 'leaf', type: 'text' })
    expect(index.mappingOf('d')).toEqual({ kind: 'leaf', type: 'date' })
    expect(index.index({ n: '7', s: 3, d: 1795665242133 })).toBeNull()
    expect(index.index({ n: 'seven' })).toMatchObject({ type: 'mapper_parsing_exception' })
    expect(index.index({ n: 2 ** 64 - 1 })).toMatchObject({ type: 'mapper_parsing_exception' })
    expect(index.index({ d: 'soon' })).toMatchObject({ type: 'mapper_parsing_exception' })
    expect(index.index({ o: 'flat' })).toMatchObject({ type: 'mapper_parsing_exception' })
    expect(index.index({ s: { deep: 1 } })).toMatchObject({ type: 'mapper_parsing_exception' })
    expect(index.index({ '': 1 })).toMatchObject({ type: 'mapper_parsing_exception' })
  })

  it('refuses a document past the total fields or the depth limit', () => {
    const wide: JsonObject = {}
    for (let i = 0; i < 1001; i++) wide[`f${i}`] = i
    expect(new CheckedIndex().index(wide)).toMatchObject({ type: 'illegal_argument_exception' })
    let deep: JsonObject = { leaf: 1 }
    for (let i = 0; i < 21; i++) deep = { d: deep }
    expect(new CheckedIndex().index(deep)).toMatchObject({ type: 'illegal_argument_exception' })
    // Text fields count twice (their keyword sub-field).
    const strings: JsonObject = {}
    for (let i = 0; i < 501; i++) strings[`s${i}`] = 'x'
    expect(new CheckedIndex().index(strings)).toMatchObject({ type: 'illegal_argument_exception' })
  })

  it('takes anything in an object with enabled: false, and leaves unknown fields unmapped under dynamic: false', () => {
    const index = new CheckedIndex({
      dynamic: false,
      properties: { free: { type: 'object', enabled: false }, id: { type: 'keyword' } },
    })
    expect(index.index({ free: { links: [[1, 'MODEL']] }, other: { x: 1 }, id: 'a' })).toBeNull()
    expect(index.index({ free: 'text', other: 'now a string', id: 7 })).toBeNull()
    expect(index.fieldCount()).toBe(2)
    expect(index.index({ id: { not: 'a keyword' } })).toMatchObject({ type: 'mapper_parsing_exception' })
  })

  it('refuses unknown fields under dynamic: strict', () => {
    const index = new CheckedIndex({ dynamic: 'strict', properties: { id: { type: 'keyword' } } })
    expect(index.index({ id: 'a', extra: 1 })).toMatchObject({ type: 'strict_dynamic_mapping_exception' })
  })
})

/** POST /prompt bodies ComfyUI 0.8 accepted in the recording, each with its UI workflow. */
function recordedPrompts(): JsonObject[] {
  const out: JsonObject[] = []
  for (const line of readFileSync(TRACE, 'utf8').split('\n')) {
    if (line === '') continue
    const row = parseJson(line)
    if (!row.ok) throw new Error(`trace.jsonl: ${row.reason}`)
    const r = row.value as JsonObject
    if (r.method === 'POST' && r.path === '/prompt' && r.status === 200) out.push(r.request as JsonObject)
  }
  return out
}

/** Stand-in graphs where the same node ids and input names carry other types than in the recorded ones. */
function standInPrompts(): JsonObject[] {
  const load = { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } }
  return [
    {
      prompt: {
        '1': load,
        '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds: 0.02, steps: 3 } },
        '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'mapping/slow' } },
      },
    },
    {
      prompt: {
        '1': load,
        '2': {
          class_type: 'ImageScaleBy',
          inputs: { image: ['1', 0], upscale_method: 'nearest-exact', scale_by: 2 },
        },
        '3': { class_type: 'AuditFail', inputs: { image: ['2', 0], message: 'planned failure' } },
      },
    },
    {
      // Refused by ComfyUI's validation (an unknown node type): a rejected session with its graph.
      prompt: {
        '1': load,
        '2': { class_type: 'NoSuchNode', inputs: { image: ['1', 0], seed: 18446744073709551615n } },
      },
      extra_data: { extra_pnginfo: { workflow: { nodes: 'not a list', links: { '1': 'x' } } } },
    },
  ]
}

interface RunResult {
  readonly cluster: CheckedCluster
  readonly expected: string[]
}

let sim: SimServer
const clusters: CheckedCluster[] = []

beforeAll(async () => {
  sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'es-mapping-sim-')), port: 0, speed: 50 })
})
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.close()))
  await sim?.close()
})

/** Runs the prompts through a real gateway whose Elasticsearch sink ships to a checked cluster. */
async function run(template: boolean): Promise<RunResult> {
  const cluster = await startCheckedCluster()
  clusters.push(cluster)
  const data = mkdtempSync(join(tmpdir(), 'es-mapping-'))
  const file = join(data, 'config.json')
  writeFileSync(
    file,
    JSON.stringify({
      limits: { promptsPerMinute: 0 },
      sinks: [{ type: 'elasticsearch', url: cluster.url, template, batch: { scheduledDelayMillis: 50 } }],
    }),
  )
  const config = loadConfig({
    file,
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: `es-mapping-${template}` },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  try {
    const bodies = [...recordedPrompts(), ...standInPrompts()]
    let n = 0
    for (const body of bodies) {
      const res = await fetch(`${audit.url}/prompt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(
          { ...body, client_id: 'mapping-client', prompt_id: `mapping-${template}-${n++}` },
          (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v),
        ),
      })
      await res.arrayBuffer()
    }
    await fetch(`${audit.url}/interrupt`, { method: 'POST', body: '{}' }).then((r) => r.arrayBuffer())
    const deadline = Date.now() + 60_000
    for (;;) {
      const sessions = await audit.store.sessions({ limit: 1000 })
      if (sessions.length >= bodies.length && sessions.every((s) => FINAL.has(s.status))) break
      if (Date.now() > deadline) throw new Error('sessions did not all end within 60 s')
      await new Promise((r) => setTimeout(r, 50))
    }
    await audit.provenanceIdle()
    await audit.store.flush()
    await audit.sinks.forceFlush()
    const merger = createSessionMerger()
    const expected: string[] = []
    for await (const e of audit.store.events({ origin: audit.store.origin }))
      for (const r of toSinkRecords(e, merger)) expected.push(r.id)
    return { cluster, expected }
  } finally {
    await audit.close()
  }
}

describe('Elasticsearch documents from real runs', () => {
  it('are all accepted with the shipped index template, and some are refused without it', async () => {
    const withTemplate = await run(true)
    const without = await run(false)

    expect(withTemplate.cluster.templates.get('comfy-audit')).toBeDefined()
    expect(withTemplate.expected.length).toBeGreaterThan(30)
    expect(withTemplate.cluster.refused).toEqual([])
    expect(new Set(withTemplate.cluster.accepted)).toEqual(new Set(withTemplate.expected))
    const index = withTemplate.cluster.indices.get('comfy-audit')!
    expect(index.mappingOf('comfyui.workflow')).toEqual({ kind: 'object', enabled: false })
    expect(index.mappingOf('comfyui.seq')).toEqual({ kind: 'leaf', type: 'long' })

    expect(without.cluster.templates.size).toBe(0)
    const reasons = without.cluster.refused.map((r) => `${r.error.type}: ${r.error.reason}`)
    console.log(
      `with the template: ${withTemplate.cluster.accepted.length} accepted, 0 refused, ${index.fieldCount()} fields; ` +
        `without: ${without.cluster.accepted.length} accepted, ${without.cluster.refused.length} refused ` +
        `(${[...new Set(reasons)].slice(0, 3).join(' | ')})`,
    )
    expect(without.cluster.refused.length).toBeGreaterThan(0)
    expect(without.cluster.refused.some((r) => r.error.type === 'mapper_parsing_exception')).toBe(true)
  }, 180_000)

  it('ships a template whose mapping the written-down rules accept', () => {
    const t = elasticsearchTemplate('renders') as {
      index_patterns: string[]
      template: { mappings: Record<string, unknown>; settings: Record<string, unknown> }
    }
    expect(t.index_patterns).toEqual(['renders', 'renders-*'])
    const index = new CheckedIndex(t.template.mappings, t.template.settings)
    expect(index.fieldCount()).toBeLessThan(200)
  })
})

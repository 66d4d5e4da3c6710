import { existsSync, writeFileSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseJson } from '../audit/json.js'
import type { JsonObject } from '../audit/types.js'
import { loadConfig, type SinkConfig } from '../config/config.js'
import { createSinkPipeline, type SinkPipeline } from './sink-pipeline.js'
import { recordsOf, sessionEvents, startRecordingServer, type RecordingServer } from './sink-test-kit.js'
import { verifyWebhook, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER } from './webhook/webhook-sink.js'

const SECRET = 'a-webhook-secret-of-some-length'

/** Sinks as a user writes them, through the real config schema (defaults filled). */
function sinksFrom(entries: unknown[]): SinkConfig[] {
  const file = join(dataDir, 'config.json')
  writeFileSync(file, JSON.stringify({ sinks: entries }))
  const r = loadConfig({ file, env: { HOOK_SECRET: SECRET } })
  if (!r.ok) throw new Error(r.problems.join('; '))
  return [...r.value.sinks]
}

function json(text: string): JsonObject {
  const parsed = parseJson(text)
  if (!parsed.ok) throw new Error(parsed.reason)
  return parsed.value as JsonObject
}

let dataDir: string
let servers: RecordingServer[] = []
let pipelines: SinkPipeline[] = []

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'sink-pipeline-'))
})

afterEach(async () => {
  await Promise.all(pipelines.map((p) => p.shutdown()))
  await Promise.all(servers.map((s) => s.close()))
  pipelines = []
  servers = []
  await rm(dataDir, { recursive: true, force: true })
})

async function server(): Promise<RecordingServer> {
  const s = await startRecordingServer()
  servers.push(s)
  return s
}

async function pipeline(sinks: SinkConfig[], hostName = 'render-01'): Promise<SinkPipeline> {
  const p = await createSinkPipeline(sinks, { dataDir, hostName })
  pipelines.push(p)
  return p
}

describe('createSinkPipeline', () => {
  it('delivers committed events to every configured sink, each on its own wire format', async () => {
    const [otlp, loki, es, hook] = [await server(), await server(), await server(), await server()]
    const jsonlDir = join(dataDir, 'files')
    const p = await pipeline(
      sinksFrom([
        { type: 'jsonl', dir: jsonlDir },
        { type: 'otlp', url: otlp.url },
        { type: 'loki', url: loki.url, labels: { env: 'test' } },
        { type: 'elasticsearch', url: es.url, index: 'audit' },
        { type: 'webhook', url: `${hook.url}/hook`, secret: '${HOOK_SECRET}' },
      ]),
    )
    expect(p.names).toEqual(['jsonl', 'otlp', 'loki', 'elasticsearch', 'webhook'])
    const events = sessionEvents({ sessionId: 'p-1', nodes: [{ node_id: '3' }, { node_id: '4' }] })
    const ids = recordsOf(events).map((r) => r.id)
    p.onEvents(events)
    await p.forceFlush()

    const files = await readdir(jsonlDir)
    expect(files).toHaveLength(1)
    const lines = (await readFile(join(jsonlDir, files[0]!), 'utf8')).trimEnd().split('\n')
    expect(lines.map((l) => json(l).id)).toEqual(ids)

    expect(otlp.requests.map((r) => r.url)).toEqual(['/v1/traces'])
    expect(otlp.requests[0]!.body).toContain('"host.name"')
    expect(otlp.requests[0]!.body).toContain('render-01')

    expect(loki.requests.map((r) => r.url)).toEqual(['/loki/api/v1/push'])
    expect(json(loki.requests[0]!.body).streams).toBeDefined()
    expect(loki.requests[0]!.body).toContain('"env":"test"')

    // The index template first (default `template: true`), then the documents.
    expect(es.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'PUT /_index_template/audit',
      'POST /_bulk',
    ])
    expect(json(es.requests[0]!.body).index_patterns).toEqual(['audit', 'audit-*'])
    const bulk = es.requests[1]!.body
    expect(bulk.endsWith('\n')).toBe(true)
    const actions = bulk
      .trimEnd()
      .split('\n')
      .filter((_, i) => i % 2 === 0)
      .map((l) => json(l).create as JsonObject)
    expect(actions.map((a) => a._id)).toEqual(ids)
    expect(actions.every((a) => a._index === 'audit')).toBe(true)

    expect(hook.requests).toHaveLength(1)
    const req = hook.requests[0]!
    expect(
      verifyWebhook({
        secret: SECRET,
        timestamp: String(req.headers[WEBHOOK_TIMESTAMP_HEADER]),
        signature: String(req.headers[WEBHOOK_SIGNATURE_HEADER]),
        body: req.body,
      }),
    ).toBe(true)

    expect(p.health().map((h) => [h.name, h.queued, h.dropped, h.failures])).toEqual([
      ['jsonl', 0, 0, 0],
      ['otlp', 0, 0, 0],
      ['loki', 0, 0, 0],
      ['elasticsearch', 0, 0, 0],
      ['webhook', 0, 0, 0],
    ])
    expect(p.health().every((h) => h.lastSuccessAt !== null)).toBe(true)
  })

  it('writes JSONL files to <data>/jsonl/<name> by default, keeping two sinks of one type apart', async () => {
    const p = await pipeline(
      sinksFrom([
        { type: 'jsonl', name: 'all' },
        { type: 'jsonl', name: 'copy' },
      ]),
    )
    p.onEvents(sessionEvents({}))
    await p.forceFlush()
    expect(await readdir(join(dataDir, 'jsonl', 'all'))).toHaveLength(1)
    expect(await readdir(join(dataDir, 'jsonl', 'copy'))).toHaveLength(1)
    expect(p.health().map((h) => h.name)).toEqual(['all', 'copy'])
  })

  it('spools records under <data>/spool/<name> while a receiver is down and delivers them after a restart', async () => {
    const loki = await server()
    loki.respondWith(() => ({ status: 503, body: 'down' }))
    const sinks = sinksFrom([{ type: 'loki', name: 'central', url: loki.url, retry: { maxAttempts: 1 } }])
    const first = await pipeline(sinks)
    const events = sessionEvents({ sessionId: 'p-down' })
    const ids = recordsOf(events).map((r) => r.id)
    first.onEvents(events)
    await first.forceFlush()
    const [down] = first.health()
    expect(down).toMatchObject({ name: 'central', queued: 0, dropped: 0 })
    expect(down!.failures).toBeGreaterThan(0)
    expect(down!.lastError).toMatch(/503/)
    expect(down!.spooledBytes).toBeGreaterThan(0)
    await first.shutdown()
    expect((await readdir(join(dataDir, 'spool', 'central'))).some((f) => f.endsWith('.seg'))).toBe(true)

    // The receiver is back; a new process (same data dir) replays the spool without any new event.
    const delivered = new Promise<string>((resolve) =>
      loki.respondWith((req) => {
        resolve(req.body)
        return { status: 204 }
      }),
    )
    const second = await pipeline(sinks)
    const body = await delivered
    for (const id of ids) expect(body).toContain(id)
    await second.forceFlush()
    expect(second.health()[0]).toMatchObject({ spooledBytes: 0, dropped: 0 })
  })

  it('never throws from onEvents, before or after shutdown, and counts late records as dropped', async () => {
    const drops: [string, number, string][] = []
    const p = await createSinkPipeline(sinksFrom([{ type: 'jsonl' }]), {
      dataDir,
      onDrop: (sink, count, reason) => drops.push([sink, count, reason]),
    })
    pipelines.push(p)
    const malformed = { ...sessionEvents({})[0]!, payload: { session: 'not an object' } }
    expect(() => p.onEvents([malformed as never])).not.toThrow()
    await p.shutdown()
    await p.shutdown()
    expect(() => p.onEvents(sessionEvents({}))).not.toThrow()
    expect(drops.length).toBeGreaterThan(0)
    expect(drops.every(([sink, , reason]) => sink === 'jsonl' && reason === 'shutdown')).toBe(true)
  })

  it('creates nothing and reports no health without sinks', async () => {
    const p = await pipeline([])
    p.onEvents(sessionEvents({}))
    await p.forceFlush()
    expect(p.health()).toEqual([])
    expect(existsSync(join(dataDir, 'spool'))).toBe(false)
  })

  it('fails at start naming the sink whose spool cannot be created', async () => {
    writeFileSync(join(dataDir, 'spool'), 'a file where the spool folder should be')
    await expect(
      createSinkPipeline(sinksFrom([{ type: 'jsonl', name: 'files' }]), { dataDir }),
    ).rejects.toThrow(/sink "files" \(jsonl\): cannot start/)
  })
})

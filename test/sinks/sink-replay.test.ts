/**
 * Sinks fed from the log (issue 10 item 10): a persisted cursor per sink, replay from a real SQLite store of
 * what a sink had not settled, in log order, whole session records after a restart, and no drop for room while
 * a receiver is down longer than the queue and the live buffer hold.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { AuditEvent, AuditEventInput } from '../../src/audit/types.js'
import { loadConfig, type SinkConfig } from '../../src/config/config.js'
import { createBatchProcessor } from '../../src/sinks/batch-processor.js'
import { InMemorySink } from '../../src/sinks/in-memory-sink.js'
import { createSinkFeeder, type SinkLog } from '../../src/sinks/sink-feeder.js'
import { createSinkPipeline, type SinkPipeline } from '../../src/sinks/sink-pipeline.js'
import { sessionEvents, startRecordingServer, type RecordingServer } from '../../src/sinks/sink-test-kit.js'
import {
  createSessionMerger,
  toSinkRecords,
  type ExportResult,
  type SinkRecord,
} from '../../src/sinks/sink.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { openSpool } from '../../src/sinks/spool.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const ORIGIN = 'replay-test'
const SECRET = 'a-webhook-secret-of-some-length'

let dir: string
let store: RuntimeStore
let webhook: RecordingServer
const pipelines: SinkPipeline[] = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sink-replay-'))
  store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: ORIGIN })
  await store.init()
  webhook = await startRecordingServer()
})

afterEach(async () => {
  await Promise.all(pipelines.splice(0).map((p) => p.shutdown()))
  await webhook.close()
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

function log(): SinkLog {
  return { origin: ORIGIN, lastSeq: () => store.lastSeq(), events: (f) => store.events(f) }
}

function webhookSinks(): SinkConfig[] {
  const file = join(dir, 'config.json')
  writeFileSync(
    file,
    JSON.stringify({
      sinks: [
        { type: 'webhook', url: webhook.url, secret: '${HOOK_SECRET}', batch: { maxExportBatchSize: 3 } },
      ],
    }),
  )
  const r = loadConfig({ file, env: { HOOK_SECRET: SECRET } })
  if (!r.ok) throw new Error(r.problems.join('; '))
  return [...r.value.sinks]
}

/** A pipeline as the gateway runs it: fed by the store's commits, reading back from its log. */
async function pipeline(): Promise<{ p: SinkPipeline; stop: () => Promise<void> }> {
  const p = await createSinkPipeline(webhookSinks(), { dataDir: dir, log: log() })
  pipelines.push(p)
  const off = store.onCommitted((events) => p.onEvents(events))
  return {
    p,
    stop: async () => {
      off()
      await p.shutdown()
    },
  }
}

function inputs(events: readonly AuditEvent[]): AuditEventInput[] {
  return events.map((e) => ({ kind: e.kind, time: e.time, session_id: e.session_id, payload: e.payload }))
}

/** Records as the webhook received them, in delivery order. */
function received(): Record<string, unknown>[] {
  return webhook.requests.flatMap(
    (r) => (JSON.parse(r.body) as { records: Record<string, unknown>[] }).records,
  )
}

/** The records the whole log yields, mapped in log order with one merger. */
async function fromLog(): Promise<SinkRecord[]> {
  const merger = createSessionMerger()
  const out: SinkRecord[] = []
  for await (const e of store.events({ origin: ORIGIN })) out.push(...toSinkRecords(e, merger))
  return out
}

describe('sinks fed from the log', () => {
  it('a restarted pipeline delivers exactly what the last one had not, in log order, with whole session records', async () => {
    const a = sessionEvents({ sessionId: 'a' })
    const b = sessionEvents({ sessionId: 'b', nodes: [{ node_id: '1' }, { node_id: '2' }] })
    const first = await pipeline()
    await store.append(inputs(a))
    await store.append(inputs(b.slice(0, 2)))
    await first.p.forceFlush()
    const before = received().length
    expect(before).toBeGreaterThan(0)
    await first.stop()

    // Committed while no sink was running (a gateway killed before its sinks got them).
    await store.append(inputs(b.slice(2)))
    const second = await pipeline()
    await store.append(inputs(sessionEvents({ sessionId: 'c' })))
    await second.p.forceFlush()

    const expected = await fromLog()
    const got = received()
    expect(got.map((r) => r.id)).toEqual(expected.map((r) => r.id))
    // The closing record of b was replayed after the restart and still carries what b's first events said.
    const closed = got.find(
      (r) => r.session_id === 'b' && r.status === 'success' && r.record_type === 'session',
    )
    expect(closed).toMatchObject({ submitter: { user: 'ada' }, queued_at: '2026-11-26T04:33:59.000Z' })
    const cursor = JSON.parse(readFileSync(join(dir, 'spool', 'webhook', 'cursor.json'), 'utf8')) as {
      seq: number
      origin: string
    }
    expect(cursor).toMatchObject({ origin: ORIGIN, seq: await store.lastSeq() })
  })

  it("starts a new sink at the log's head, with its cursor written before it ships anything", async () => {
    await store.append(inputs(sessionEvents({ sessionId: 'old' })))
    const head = await store.lastSeq()
    const { p } = await pipeline()
    const cursor = JSON.parse(readFileSync(join(dir, 'spool', 'webhook', 'cursor.json'), 'utf8')) as {
      seq: number
    }
    expect(cursor.seq).toBe(head)
    await store.append(inputs(sessionEvents({ sessionId: 'new' })))
    await p.forceFlush()
    const got = received()
    expect(got.length).toBeGreaterThan(0)
    expect(got.every((r) => r.session_id === 'new')).toBe(true)
  })

  it('catches the cursor up with the JSONL files, so a write the cursor missed is not written twice', async () => {
    const file = join(dir, 'config.json')
    writeFileSync(file, JSON.stringify({ sinks: [{ type: 'jsonl', rotation: { daily: false } }] }))
    const r = loadConfig({ file, env: {} })
    if (!r.ok) throw new Error(r.problems.join('; '))
    const start = async (): Promise<{ p: SinkPipeline; off: () => void }> => {
      const p = await createSinkPipeline(r.value.sinks, { dataDir: dir, log: log() })
      pipelines.push(p)
      return { p, off: store.onCommitted((events) => p.onEvents(events)) }
    }
    const first = await start()
    await store.append(inputs(sessionEvents({ sessionId: 'j1' })))
    await first.p.forceFlush()
    first.off()
    await first.p.shutdown()
    // As if the process died after the file's fsync and before the cursor's write.
    const cursorFile = join(dir, 'spool', 'jsonl', 'cursor.json')
    const cursor = JSON.parse(readFileSync(cursorFile, 'utf8')) as Record<string, unknown>
    writeFileSync(cursorFile, JSON.stringify({ ...cursor, seq: 0, sub: 0 }))
    const second = await start()
    await store.append(inputs(sessionEvents({ sessionId: 'j2' })))
    await second.p.forceFlush()
    second.off()
    const lines = readFileSync(join(dir, 'jsonl', 'jsonl', 'comfy-audit.jsonl'), 'utf8')
      .trimEnd()
      .split('\n')
    const ids = lines.map((l) => (JSON.parse(l) as { id: string }).id)
    expect(ids).toEqual((await fromLog()).map((rec) => rec.id))
  })

  it('flushes without waiting for a receiver that is down, and delivers all of it in order once it is back', async () => {
    webhook.respondWith(() => ({ status: 503, body: 'down' }))
    const file = join(dir, 'config.json')
    writeFileSync(
      file,
      JSON.stringify({
        sinks: [
          {
            type: 'webhook',
            url: webhook.url,
            secret: '${HOOK_SECRET}',
            batch: { maxQueueSize: 4, maxExportBatchSize: 2, scheduledDelayMillis: 10 },
            retry: { maxAttempts: 1 },
          },
        ],
      }),
    )
    const r = loadConfig({ file, env: { HOOK_SECRET: SECRET } })
    if (!r.ok) throw new Error(r.problems.join('; '))
    const p = await createSinkPipeline(r.value.sinks, { dataDir: dir, log: log() })
    pipelines.push(p)
    const off = store.onCommitted((events) => p.onEvents(events))
    try {
      for (let i = 0; i < 3; i++) await store.append(inputs(sessionEvents({ sessionId: `d${i}` })))
      await p.forceFlush()
      expect(p.health()[0]!.failures).toBeGreaterThan(0)
      // Only what the receiver took counts: the refused requests were recorded too.
      const taken = new Set<number>()
      webhook.respondWith((_req, index) => {
        taken.add(index)
        return { status: 200, body: '{}' }
      })
      const delivered = (): string[] =>
        webhook.requests
          .filter((_req, i) => taken.has(i))
          .flatMap((req) =>
            (JSON.parse(req.body) as { records: { id: string }[] }).records.map((rec) => rec.id),
          )
      const expected = (await fromLog()).map((rec) => rec.id)
      const deadline = Date.now() + 30_000
      while (delivered().length < expected.length) {
        if (Date.now() > deadline) throw new Error(`delivered ${delivered().length} of ${expected.length}`)
        await p.forceFlush()
      }
      expect(delivered()).toEqual(expected)
      expect(p.health()[0]!.dropped).toBe(0)
    } finally {
      off()
    }
  })

  it('starts a sink without a cursor before the oldest record its spool still holds', async () => {
    const events = await store.append(inputs(sessionEvents({ sessionId: 'old' })))
    await store.append(inputs(sessionEvents({ sessionId: 'later' })))
    // A spool written before cursors existed: records of the first session, never delivered.
    const records = toSinkRecords(events[1]!, createSessionMerger())
    const spool = await openSpool({ dir: join(dir, 'spool', 'webhook') })
    await spool.write(records)
    const { p } = await pipeline()
    await p.forceFlush()
    const expected = (await fromLog()).filter((rec) => rec.seq >= events[1]!.seq).map((rec) => rec.id)
    expect(received().map((rec) => rec.id)).toEqual(expected)
  })

  it('refuses to start on a cursor file it cannot read, naming the file', async () => {
    await mkdir(join(dir, 'spool', 'webhook'), { recursive: true })
    writeFileSync(join(dir, 'spool', 'webhook', 'cursor.json'), '{"version":1,"seq":')
    await expect(createSinkPipeline(webhookSinks(), { dataDir: dir, log: log() })).rejects.toThrow(
      /webhook.*cursor\.json is not JSON/,
    )
  })

  it('offers records in log order and drops none while the receiver is down longer than the queue and buffer hold', async () => {
    let up = false
    const down: ExportResult = { status: 'retryable', error: new Error('HTTP 503') }
    const sink = new InMemorySink({ respond: () => (up ? { status: 'success' } : down) })
    const drops: string[] = []
    const processor = createBatchProcessor(sink, {
      maxQueueSize: 4,
      maxExportBatchSize: 2,
      scheduledDelayMillis: 1,
      maxRetryDelayMillis: 20,
      onDrop: (n, reason) => drops.push(`${n} ${reason}`),
    })
    const feeder = createSinkFeeder({
      name: 'memory',
      log: log(),
      processor,
      after: { seq: -1, sub: 0 },
      pageSize: 5,
      maxBufferedEvents: 8,
    })
    const off = store.onCommitted((events) => feeder.onEvents(events))
    try {
      for (let i = 0; i < 10; i++) await store.append(inputs(sessionEvents({ sessionId: `s${i}` })))
      const expected = (await fromLog()).map((r) => r.id)
      expect(expected.length).toBeGreaterThan(4 + 8)
      // Down: the queue fills and the feeder waits for room; the live buffer overflows and is read back later.
      const deadline = Date.now() + 30_000
      while (processor.hasRoom() || sink.calls === 0) {
        if (Date.now() > deadline) throw new Error('the queue never filled while the receiver was down')
        await new Promise((r) => setImmediate(r))
      }
      up = true
      await sink.waitForRecords(expected.length)
      await feeder.drained()
      await processor.forceFlush()
      expect(sink.records.map((r) => r.id)).toEqual(expected)
      expect(drops).toEqual([])
    } finally {
      off()
      await feeder.close()
      await processor.shutdown()
    }
  })
})

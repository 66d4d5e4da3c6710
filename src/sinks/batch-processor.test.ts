import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createBatchProcessor, type DropReason, type RecordProcessor } from './batch-processor.js'
import { createMultiProcessor } from './multi-processor.js'
import { InMemorySink } from './in-memory-sink.js'
import { manyRecords, sessionEvents } from './sink-test-kit.js'
import { serializeRecord, type ExportResult } from './sink.js'
import { openSpool } from './spool.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bp-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const down: ExportResult = { status: 'retryable', error: new Error('HTTP 503') }

function collectDrops(): { drops: Record<string, number>; onDrop: (n: number, r: DropReason) => void } {
  const drops: Record<string, number> = {}
  return { drops, onDrop: (n, r) => void (drops[r] = (drops[r] ?? 0) + n) }
}

describe('BatchProcessor', () => {
  it('exports queued records in batches of maxExportBatchSize on forceFlush', async () => {
    const sink = new InMemorySink()
    const p = createBatchProcessor(sink, {
      maxQueueSize: 10,
      maxExportBatchSize: 4,
      scheduledDelayMillis: 60_000,
    })
    for (const r of manyRecords(3)) p.onEnd(r)
    await p.forceFlush()
    expect(sink.batches.map((b) => b.length)).toEqual([3])
    expect(sink.flushes).toBe(1)
    await p.shutdown()
  })

  it('exports a full batch without waiting for the scheduled delay', async () => {
    const sink = new InMemorySink()
    const p = createBatchProcessor(sink, {
      maxQueueSize: 10,
      maxExportBatchSize: 4,
      scheduledDelayMillis: 3_600_000,
    })
    for (const r of manyRecords(4)) p.onEnd(r)
    await sink.waitForRecords(4)
    expect(sink.batches).toHaveLength(1)
    await p.shutdown()
  })

  it('spills to the spool when the queue is full, then drops past the quota and counts it', async () => {
    const sink = new InMemorySink({ respond: () => down })
    const records = manyRecords(40)
    const lineBytes = Buffer.byteLength(serializeRecord(records[39]!)) + 1
    const spool = await openSpool({ dir, maxBytes: lineBytes * 20 })
    const { drops, onDrop } = collectDrops()
    const p = createBatchProcessor(sink, {
      maxQueueSize: 4,
      maxExportBatchSize: 4,
      maxSpillBacklog: 100,
      scheduledDelayMillis: 3_600_000,
      spool,
      onDrop,
    })
    for (const r of records) p.onEnd(r)
    await p.forceFlush()
    const h = p.health()[0]!
    expect(h.spooledBytes).toBeGreaterThan(0)
    expect(h.spooledBytes).toBeLessThanOrEqual(spool.maxBytes)
    expect(drops).toEqual({ 'spool-full': expect.any(Number) })
    expect(drops['spool-full']).toBeGreaterThanOrEqual(16)
    expect(h.dropped).toBe(drops['spool-full'])
    expect(h.failures).toBeGreaterThanOrEqual(1)
    expect(h.lastError).toBe('HTTP 503')
    // Everything not dropped is on disk, nothing is lost silently.
    let spooled = 0
    for (;;) {
      const seg = await spool.oldest()
      if (!seg) break
      spooled += seg.records.length
      await spool.remove(seg)
    }
    expect(spooled).toBeGreaterThanOrEqual(20)
    expect(spooled + h.dropped).toBe(records.length)
    await p.shutdown()
  })

  it('drops a burst that outruns the spool writer past maxSpillBacklog', async () => {
    const sink = new InMemorySink()
    const { drops, onDrop } = collectDrops()
    const p = createBatchProcessor(sink, {
      maxQueueSize: 2,
      maxExportBatchSize: 2,
      maxSpillBacklog: 3,
      scheduledDelayMillis: 3_600_000,
      spool: await openSpool({ dir }),
      onDrop,
    })
    for (const r of manyRecords(10)) p.onEnd(r)
    // 2 queued, 1 taken at once by the spool writer, 3 waiting for it.
    expect(drops).toEqual({ 'spill-backlog': 4 })
    await p.forceFlush()
    expect(sink.ids.size).toBe(6)
    await p.shutdown()
  })

  it('drops records when the queue is full and there is no spool', async () => {
    const sink = new InMemorySink()
    const { drops, onDrop } = collectDrops()
    const p = createBatchProcessor(sink, {
      maxQueueSize: 2,
      maxExportBatchSize: 2,
      scheduledDelayMillis: 3_600_000,
      onDrop,
    })
    // The full batch is exported on a timer of 0 ms, which cannot run inside this synchronous loop.
    for (const r of manyRecords(5)) p.onEnd(r)
    expect(drops).toEqual({ 'queue-full': 3 })
    await p.shutdown()
    expect(sink.records).toHaveLength(2)
  })

  it('delivers records spooled by a previous processor over the same directory', async () => {
    const records = manyRecords(7)
    const dead = new InMemorySink({ respond: () => down })
    const first = createBatchProcessor(dead, {
      maxQueueSize: 4,
      maxExportBatchSize: 2,
      scheduledDelayMillis: 3_600_000,
      spool: await openSpool({ dir }),
    })
    for (const r of records) first.onEnd(r)
    await first.shutdown()
    expect(dead.records).toEqual([])
    expect(first.health()[0]).toMatchObject({ dropped: 0 })

    const alive = new InMemorySink()
    const second = createBatchProcessor(alive, {
      scheduledDelayMillis: 3_600_000,
      spool: await openSpool({ dir }),
    })
    // The restarted processor replays the spool by itself, without new records or a flush.
    await alive.waitForRecords(records.length)
    expect([...alive.ids].sort()).toEqual(records.map((r) => r.id).sort())
    await second.shutdown()
    expect(second.health()[0]).toMatchObject({ spooledBytes: 0, dropped: 0 })
  })

  it('keeps retrying a batch in memory without a spool until the receiver recovers', async () => {
    let now = 1_000_000
    const sink = new InMemorySink({ respond: () => down })
    const p = createBatchProcessor(sink, {
      maxQueueSize: 10,
      maxExportBatchSize: 10,
      scheduledDelayMillis: 3_600_000,
      now: () => now,
    })
    for (const r of manyRecords(3)) p.onEnd(r)
    await p.forceFlush()
    expect(p.health()[0]).toMatchObject({ queued: 3, failures: 1, lastSuccessAt: null })
    sink.respondWith(() => ({ status: 'success' }))
    now += 5_000
    await p.forceFlush()
    expect(sink.records.map((r) => r.seq)).toEqual([0, 1, 2])
    expect(p.health()[0]).toMatchObject({ queued: 0, lastSuccessAt: new Date(now).toISOString() })
    await p.shutdown()
  })

  it('retries only the records a partial success names', async () => {
    const records = manyRecords(4)
    const sink = new InMemorySink({
      respond: (batch, call) =>
        call === 0
          ? { status: 'retryable', error: new Error('2 items throttled'), records: batch.slice(2) }
          : { status: 'success' },
    })
    const p = createBatchProcessor(sink, { scheduledDelayMillis: 3_600_000, spool: await openSpool({ dir }) })
    for (const r of records) p.onEnd(r)
    await p.forceFlush()
    await p.forceFlush()
    expect(sink.batches.map((b) => b.map((r) => r.seq))).toEqual([[2, 3]])
    await p.shutdown()
  })

  it('keeps offered order across a retry: records offered after a failed batch go out after it', async () => {
    const records = manyRecords(6)
    let up = false
    const sink = new InMemorySink({ respond: () => (up ? { status: 'success' } : down) })
    const settled: number[] = []
    const p = createBatchProcessor(sink, {
      maxExportBatchSize: 2,
      scheduledDelayMillis: 3_600_000,
      spool: await openSpool({ dir }),
      onDelivered: (batch) => void settled.push(...batch.map((r) => r.seq)),
    })
    for (const r of records.slice(0, 4)) p.onEnd(r)
    await p.forceFlush()
    expect(settled).toEqual([])
    // Offered while the first four wait for the receiver: they must not overtake them.
    for (const r of records.slice(4)) p.onEnd(r)
    up = true
    await p.forceFlush()
    expect(sink.records.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5])
    expect(settled).toEqual([0, 1, 2, 3, 4, 5])
    await p.shutdown()
  })

  it('holds the next export until onDelivered has finished (the cursor is on disk)', async () => {
    const sink = new InMemorySink()
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    let called!: () => void
    const firstDelivered = new Promise<void>((resolve) => (called = resolve))
    const p = createBatchProcessor(sink, {
      maxExportBatchSize: 2,
      scheduledDelayMillis: 3_600_000,
      onDelivered: () => {
        called()
        return gate
      },
    })
    for (const r of manyRecords(4)) p.onEnd(r)
    const flushed = p.forceFlush()
    await firstDelivered
    expect(sink.calls).toBe(1)
    open()
    await flushed
    expect(sink.calls).toBe(2)
    await p.shutdown()
  })

  it('settles only the records before the first one a partial success asks to retry', async () => {
    const records = manyRecords(4)
    const settled: number[][] = []
    const sink = new InMemorySink({
      respond: (batch, call) =>
        call === 0
          ? { status: 'retryable', error: new Error('1 item throttled'), records: [batch[1]!] }
          : { status: 'success' },
    })
    const p = createBatchProcessor(sink, {
      scheduledDelayMillis: 3_600_000,
      onDelivered: (batch) => void settled.push(batch.map((r) => r.seq)),
    })
    for (const r of records) p.onEnd(r)
    await p.forceFlush()
    await p.forceFlush()
    expect(settled).toEqual([[0], [1]])
    await p.shutdown()
  })

  it('drops and counts a batch the receiver refuses for good', async () => {
    const sink = new InMemorySink({ respond: () => ({ status: 'failure', error: new Error('HTTP 400') }) })
    const { drops, onDrop } = collectDrops()
    const p = createBatchProcessor(sink, {
      scheduledDelayMillis: 3_600_000,
      onDrop,
      spool: await openSpool({ dir }),
    })
    for (const r of manyRecords(3)) p.onEnd(r)
    await p.forceFlush()
    expect(drops).toEqual({ refused: 3 })
    expect(p.health()[0]).toMatchObject({ dropped: 3, failures: 1, lastError: 'HTTP 400', spooledBytes: 0 })
    await p.shutdown()
  })

  it('treats an export that outlives exportTimeoutMillis as retryable and aborts its signal', async () => {
    let aborted!: () => void
    const abortSeen = new Promise<void>((resolve) => (aborted = resolve))
    const sink = new InMemorySink()
    sink.export = (_batch, signal) =>
      new Promise(() => {
        signal.addEventListener('abort', () => aborted())
      })
    const p = createBatchProcessor(sink, { scheduledDelayMillis: 3_600_000, exportTimeoutMillis: 5 })
    p.onEnd(manyRecords(1)[0]!)
    await p.forceFlush()
    await abortSeen
    expect(p.health()[0]).toMatchObject({ queued: 1, failures: 1, lastError: 'export timed out after 5 ms' })
  })

  it('shuts down once, counts records offered afterwards, and never throws from onEnd', async () => {
    const sink = new InMemorySink()
    const p = createBatchProcessor(sink, {
      onDrop: () => {
        throw new Error('bad callback')
      },
    })
    p.onEnd(manyRecords(1)[0]!)
    await Promise.all([p.shutdown(), p.shutdown()])
    await p.shutdown()
    expect(sink.shutdowns).toBe(1)
    expect(sink.records).toHaveLength(1)
    expect(() => p.onEnd(manyRecords(1)[0]!)).not.toThrow()
    expect(p.health()[0]!.dropped).toBe(1)
  })

  it('refuses options that cannot work', () => {
    const sink = new InMemorySink()
    expect(() => createBatchProcessor(sink, { maxQueueSize: 10, maxExportBatchSize: 20 })).toThrow(
      /maxExportBatchSize/,
    )
    expect(() => createBatchProcessor(sink, { scheduledDelayMillis: 0 })).toThrow(/scheduledDelayMillis/)
  })
})

describe('MultiProcessor', () => {
  it('maps events to records and fans them out, isolating a failing processor', async () => {
    const a = new InMemorySink({ name: 'a' })
    const b = new InMemorySink({ name: 'b' })
    const broken: RecordProcessor = {
      onEnd: () => {},
      forceFlush: () => Promise.reject(new Error('broken')),
      shutdown: () => Promise.reject(new Error('broken')),
      health: () => [],
    }
    const multi = createMultiProcessor([
      createBatchProcessor(a, { scheduledDelayMillis: 3_600_000 }),
      broken,
      createBatchProcessor(b, { scheduledDelayMillis: 3_600_000 }),
    ])
    for (const e of sessionEvents({})) multi.onEvent(e)
    await multi.forceFlush()
    expect(a.records.map((r) => r.id)).toEqual(b.records.map((r) => r.id))
    expect(a.records).toHaveLength(5)
    expect(a.records.at(-1)).toMatchObject({
      record_type: 'session',
      status: 'success',
      queued_at: '2026-11-26T04:33:59.000Z',
    })
    expect(multi.health().map((h) => h.name)).toEqual(['a', 'b'])
    await multi.shutdown()
  })
})

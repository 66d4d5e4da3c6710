import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseJson } from '../../audit/json.js'
import { createBatchProcessor } from '../batch-processor.js'
import { fakeClock, manyRecords, recordsOf, sessionEvents } from '../sink-test-kit.js'
import { serializeRecord } from '../sink.js'
import { createJsonlSink } from './jsonl-sink.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-jsonl-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const signal = new AbortController().signal

async function readLines(path: string): Promise<unknown[]> {
  const raw = await readFile(path)
  const text = (path.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8')
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      // Strict JSON: any JSON reader accepts every line.
      expect(() => JSON.parse(l)).not.toThrow()
      const parsed = parseJson(l)
      if (!parsed.ok) throw new Error(parsed.reason)
      return parsed.value
    })
}

describe('JSONL sink', () => {
  it('writes one record per line with the seed field names', async () => {
    const sink = createJsonlSink({ dir }, { now: fakeClock(Date.parse('2026-11-26T10:00:00.000Z')).now })
    const records = recordsOf(sessionEvents({}))
    expect(await sink.export(records, signal)).toEqual({ status: 'success' })
    await sink.shutdown()
    const lines = await readLines(join(dir, 'comfy-audit-2026-11-26.jsonl'))
    expect(lines).toEqual(records)
    expect(Object.keys(lines[2] as object)).toEqual(
      expect.arrayContaining([
        'session_id',
        'node_id',
        'node_type',
        'timestamp_start',
        'timestamp_end',
        'duration_ms',
        'inputs',
        'outputs',
        'status',
        'error_message',
        'gpu_memory_used',
        'id',
      ]),
    )
  })

  it('rotates by size and gzips rotated files, losing no line', async () => {
    const records = manyRecords(7)
    // Ids and node ids have one digit each, so every line has the same length.
    const lineBytes = Buffer.byteLength(serializeRecord(records[0]!)) + 1
    const clock = fakeClock(Date.parse('2026-11-26T10:00:00.000Z'))
    const sink = createJsonlSink({ dir, maxFileBytes: lineBytes * 2 }, { now: clock.now })
    expect((await sink.export(records.slice(0, 4), signal)).status).toBe('success')
    expect((await sink.export(records.slice(4), signal)).status).toBe('success')
    await sink.shutdown()
    const files = (await readdir(dir)).sort()
    expect(files).toEqual([
      'comfy-audit-2026-11-26.0.jsonl.gz',
      'comfy-audit-2026-11-26.1.jsonl.gz',
      'comfy-audit-2026-11-26.2.jsonl.gz',
      'comfy-audit-2026-11-26.jsonl',
    ])
    const perFile: unknown[][] = []
    for (const f of files) perFile.push(await readLines(join(dir, f)))
    expect(perFile.map((lines) => lines.length)).toEqual([2, 2, 2, 1])
    expect(perFile.flat()).toEqual(records)
  })

  it('rotates when the UTC day changes and appends after a restart', async () => {
    const clock = fakeClock(Date.parse('2026-11-26T23:59:59.000Z'))
    const [a, b, c] = manyRecords(3)
    const first = createJsonlSink({ dir }, { now: clock.now })
    await first.export([a!], signal)
    clock.advance(2000)
    await first.export([b!], signal)
    await first.shutdown()
    const second = createJsonlSink({ dir }, { now: clock.now })
    await second.export([c!], signal)
    await second.shutdown()
    expect((await readdir(dir)).sort()).toEqual([
      'comfy-audit-2026-11-26.0.jsonl.gz',
      'comfy-audit-2026-11-27.jsonl',
    ])
    expect(await readLines(join(dir, 'comfy-audit-2026-11-26.0.jsonl.gz'))).toEqual([a])
    expect(await readLines(join(dir, 'comfy-audit-2026-11-27.jsonl'))).toEqual([b, c])
  })

  it('rotates the file of an earlier day left by a previous run when it opens', async () => {
    const clock = fakeClock(Date.parse('2026-11-26T12:00:00.000Z'))
    const [a, b] = manyRecords(2)
    const first = createJsonlSink({ dir }, { now: clock.now })
    await first.export([a!], signal)
    await first.shutdown()
    clock.advance(86_400_000)
    const second = createJsonlSink({ dir }, { now: clock.now })
    await second.export([b!], signal)
    await second.shutdown()
    expect((await readdir(dir)).sort()).toEqual([
      'comfy-audit-2026-11-26.0.jsonl.gz',
      'comfy-audit-2026-11-27.jsonl',
    ])
  })

  it('works behind a batch processor', async () => {
    const sink = createJsonlSink({ dir, rotateDaily: false })
    const p = createBatchProcessor(sink, { scheduledDelayMillis: 3_600_000 })
    const records = manyRecords(5)
    for (const r of records) p.onEnd(r)
    await p.shutdown()
    expect(await readLines(join(dir, 'comfy-audit.jsonl'))).toEqual(records)
  })

  it('reads back the last whole record it stored, from the newest file, rotated and gzipped included', async () => {
    const clock = fakeClock(Date.parse('2026-11-26T10:00:00.000Z'))
    const records = manyRecords(6)
    const first = createJsonlSink({ dir }, { now: clock.now })
    expect(await first.lastStored!()).toBeNull()
    await first.export(records.slice(0, 4), signal)
    expect(await first.lastStored!()).toEqual({ id: records[3]!.id, seq: 3 })
    await first.shutdown()
    // The next day's start rotates and gzips yesterday's file; the newest record is then only in the .gz.
    clock.advance(24 * 3_600_000)
    const second = createJsonlSink({ dir }, { now: clock.now })
    await second.export([], signal)
    expect(await second.lastStored!()).toEqual({ id: records[3]!.id, seq: 3 })
    await second.export(records.slice(4), signal)
    expect(await second.lastStored!()).toEqual({ id: records[5]!.id, seq: 5 })
    await second.shutdown()
  })

  it('cuts a line a crash left unfinished before appending, so every line stays a whole record', async () => {
    const clock = fakeClock(Date.parse('2026-11-26T10:00:00.000Z'))
    const records = manyRecords(3)
    const first = createJsonlSink({ dir }, { now: clock.now })
    await first.export(records.slice(0, 1), signal)
    await first.shutdown()
    const file = join(dir, 'comfy-audit-2026-11-26.jsonl')
    await appendFile(file, serializeRecord(records[1]!).slice(0, 40))
    const second = createJsonlSink({ dir }, { now: clock.now })
    expect(await second.lastStored!()).toEqual({ id: records[0]!.id, seq: 0 })
    await second.export(records.slice(1), signal)
    await second.shutdown()
    const lines = (await readLines(file)) as { id: string }[]
    expect(lines.map((l) => l.id)).toEqual(records.map((r) => r.id))
  })
})

import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { manyRecords } from './sink-test-kit.js'
import { serializeRecord } from './sink.js'
import { openSpool } from './spool.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-spool-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('spool', () => {
  it('replays segments oldest first and forgets removed ones', async () => {
    const spool = await openSpool({ dir })
    const records = manyRecords(6)
    await spool.write(records.slice(0, 2))
    await spool.write(records.slice(2, 6))
    const first = await spool.oldest()
    expect(first?.records.map((r) => r.seq)).toEqual([0, 1])
    await spool.remove(first!)
    const second = await spool.oldest()
    expect(second?.records.map((r) => r.seq)).toEqual([2, 3, 4, 5])
    await spool.remove(second!)
    expect(await spool.oldest()).toBeUndefined()
    expect(spool.sizeBytes()).toBe(0)
  })

  it('survives a reopen with the same segments, sizes and lossless values', async () => {
    const records = manyRecords(3)
    const a = await openSpool({ dir })
    await a.write(records)
    const b = await openSpool({ dir })
    expect(b.sizeBytes()).toBe(a.sizeBytes())
    const seg = await b.oldest()
    expect(seg?.records).toEqual(records)
    await b.write(manyRecords(1))
    expect((await readdir(dir)).sort()).toEqual(['0000000000000000.seg', '0000000000000001.seg'])
  })

  it('writes what fits under the quota and reports the rest dropped', async () => {
    const records = manyRecords(10)
    const lineBytes = Buffer.byteLength(serializeRecord(records[0]!)) + 1
    const spool = await openSpool({ dir, maxBytes: lineBytes * 4 + 10 })
    expect(await spool.write(records.slice(0, 3))).toEqual({ written: 3, dropped: 0 })
    expect(await spool.write(records.slice(3, 6))).toEqual({ written: 1, dropped: 2 })
    expect(await spool.write(records.slice(6))).toEqual({ written: 0, dropped: 4 })
    expect(spool.sizeBytes()).toBeLessThanOrEqual(spool.maxBytes)
  })

  it('deletes a torn temporary file on open', async () => {
    await writeFile(join(dir, '0000000000000005.tmp'), '{"half')
    const spool = await openSpool({ dir })
    expect(await readdir(dir)).toEqual([])
    expect(await spool.oldest()).toBeUndefined()
  })

  it('rewrites a segment in place with the records still to deliver', async () => {
    const spool = await openSpool({ dir })
    await spool.write(manyRecords(4))
    await spool.write(manyRecords(1, 'other'))
    const seg = (await spool.oldest())!
    await spool.replace(seg, seg.records.slice(2))
    const again = (await spool.oldest())!
    expect(again.name).toBe(seg.name)
    expect(again.records.map((r) => r.seq)).toEqual([2, 3])
  })
})

import { mkdtempSync, mkdirSync, utimesSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEventInput } from '../audit/types.js'
import { createRuntimeStore, type RuntimeStore } from '../store/runtime-store.js'
import { createSqliteDialect } from '../store/sqlite/sqlite-dialect.js'
import { retentionMillis, runRetention } from './retention-job.js'

let store: RuntimeStore | undefined
afterEach(async () => {
  await store?.close()
})

function event(time: string, sessionId: string): AuditEventInput {
  return {
    kind: 'prompt.submitted',
    time,
    session_id: sessionId,
    payload: { session: { status: 'queued', queued_at: time, prompt: { secret: 'old prompt text' } } },
  }
}

describe('runRetention', () => {
  it('accepts days as a number or in the prune duration syntax, and names a bad value', () => {
    expect(retentionMillis(90)).toBe(90 * 86_400_000)
    expect(retentionMillis('12w')).toBe(84 * 86_400_000)
    expect(() => retentionMillis('soon')).toThrow(/retention.days: not a duration: "soon"/)
  })

  it('removes payloads older than the window, keeps the newer ones and records the prune', async () => {
    store = createRuntimeStore(createSqliteDialect({ path: ':memory:' }), { origin: 'retention' })
    await store.init()
    await store.append([event('2026-01-01T00:00:00.000Z', 'old'), event('2026-11-20T00:00:00.000Z', 'new')])
    const jsonl = mkdtempSync(join(tmpdir(), 'retention-jsonl-'))
    mkdirSync(jsonl, { recursive: true })
    const oldFile = join(jsonl, 'comfy-audit-2026-01-01.1.jsonl.gz')
    const newFile = join(jsonl, 'comfy-audit-2026-11-25.jsonl')
    writeFileSync(oldFile, 'x')
    writeFileSync(newFile, 'y')
    utimesSync(oldFile, new Date('2026-01-02T00:00:00Z'), new Date('2026-01-02T00:00:00Z'))
    const pass = await runRetention({
      store,
      keepMillis: retentionMillis('90d'),
      jsonlDirs: [jsonl],
      user: 'gateway',
      now: new Date('2026-11-26T00:00:00.000Z'),
    })
    expect(pass.store.pruned).toBe(1)
    expect(pass.files).toEqual([oldFile])
    expect(existsSync(newFile)).toBe(true)
    const events = []
    for await (const e of store.events({})) events.push(e)
    expect(events.map((e) => e.kind)).toEqual(['prompt.submitted', 'prompt.submitted', 'audit.pruned'])
    expect(JSON.stringify(events[0]!.payload)).not.toContain('old prompt text')
    expect(JSON.stringify(events[1]!.payload)).toContain('old prompt text')
    // A second pass finds nothing more to remove and records nothing.
    const again = await runRetention({
      store,
      keepMillis: retentionMillis(90),
      jsonlDirs: [jsonl],
      user: 'gateway',
      now: new Date('2026-11-26T00:00:00.000Z'),
    })
    expect(again.store.pruned).toBe(0)
    expect(again.store.recordedAt).toBeNull()
  })
})

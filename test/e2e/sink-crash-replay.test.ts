/**
 * Issue 10 item 10, "sinks lose nothing across a crash": a real gateway child process feeds three sinks
 * (JSONL, webhook and Loki, the last two to real HTTP receivers on port 0) while clients run prompts through
 * it against the stand-in; it is killed with SIGKILL at seeded points (counted in acknowledged prompts, not in
 * time) and started again on the same data dir. At the end every record the store's log yields has reached
 * every sink, and what reached a sink twice stays within what the cursor allows: a kill between a receiver's
 * answer and the cursor's write re-sends at most that one batch (same ids), and the
 * JSONL sink, which reads back its own files at start, writes no line twice.
 *
 * `SINK_REPLAY_SEED=n` replays another sequence.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterAll, describe, expect, it } from 'vitest'
import { parseJson } from '../../src/audit/json.js'
import type { AuditEvent } from '../../src/audit/types.js'
import { seededRandom } from '../../src/demo/seeded-random.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { startRecordingServer, type RecordingServer } from '../../src/sinks/sink-test-kit.js'
import { createSessionMerger, toSinkRecords } from '../../src/sinks/sink.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { exited, gatewayProcesses } from '../helpers/gateway-process.js'

const ORIGIN = 'sink-replay'
const KILLS = 4
const CLIENTS = 3
const BATCH = 32
const SEED = Number(process.env.SINK_REPLAY_SEED ?? 7)
const SINKS = ['jsonl', 'webhook', 'loki'] as const

const gateways = gatewayProcesses()
const servers: RecordingServer[] = []
let sim: SimServer | undefined

/** Ids of the records the store's log yields, mapped as the sinks map it (one merger, in log order). */
async function expectedIds(db: string): Promise<string[]> {
  const store = createRuntimeStore(createSqliteDialect({ path: db }), { origin: 'reader' })
  await store.init()
  try {
    const merger = createSessionMerger({ maxSessions: 1_000_000 })
    const ids: string[] = []
    for await (const e of store.events({ origin: ORIGIN }) as AsyncIterable<AuditEvent>)
      for (const r of toSinkRecords(e, merger)) ids.push(r.id)
    return ids
  } finally {
    await store.close()
  }
}

function idOf(value: unknown): string {
  const id = (value as { id?: unknown }).id
  if (typeof id !== 'string') throw new Error(`a delivered record has no id: ${JSON.stringify(value)}`)
  return id
}

/** Every id each sink delivered, with repeats, in delivery order. `torn` counts JSONL lines that do not parse. */
function delivered(
  data: string,
  webhook: RecordingServer,
  loki: RecordingServer,
): { ids: Record<(typeof SINKS)[number], string[]>; torn: number } {
  const jsonl: string[] = []
  let torn = 0
  const dir = join(data, 'jsonl', 'jsonl')
  let files: string[] = []
  try {
    files = readdirSync(dir).sort()
  } catch {
    // No export yet: the sink creates its folder on the first one.
  }
  for (const name of files) {
    if (!name.endsWith('.jsonl') && !name.endsWith('.jsonl.gz')) continue
    const raw = readFileSync(join(dir, name))
    const text = (name.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8')
    for (const line of text.split('\n')) {
      if (line === '') continue
      const parsed = parseJson(line)
      if (parsed.ok) jsonl.push(idOf(parsed.value))
      else torn++
    }
  }
  const webhookIds = webhook.requests.flatMap((req) => {
    const body = JSON.parse(req.body) as { records: unknown[] }
    return body.records.map(idOf)
  })
  const lokiIds = loki.requests.flatMap((req) => {
    const body = JSON.parse(req.body) as { streams: { values: [string, string, { id: string }][] }[] }
    return body.streams.flatMap((s) => s.values.map((v) => v[2].id))
  })
  return { ids: { jsonl, webhook: webhookIds, loki: lokiIds }, torn }
}

function pipeline(prefix: string, seed: number): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds: 0.02, steps: 2 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: `${prefix}-${seed}` } },
  }
}

afterAll(async () => {
  await gateways.killAll()
  await sim?.close()
  await Promise.all(servers.map((s) => s.close()))
})

describe('sinks across a crash', () => {
  it(`delivers every stored record to every sink after ${KILLS} SIGKILLs, with no duplicate beyond the cursor window`, async () => {
    const random = seededRandom(SEED)
    sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'sink-replay-sim-')),
      port: 0,
      speed: 50,
    })
    const webhook = await startRecordingServer()
    const loki = await startRecordingServer(() => ({ status: 204 }))
    servers.push(webhook, loki)
    const data = mkdtempSync(join(tmpdir(), 'sink-replay-'))
    const db = join(data, 'audit.sqlite')
    // Small batches and a short delay: many exports per cycle, so a kill falls between them as well as
    // while records wait in the queue.
    const batch = { maxExportBatchSize: BATCH, scheduledDelayMillis: 100 }
    const retry = { maxAttempts: 2, initialBackoffMillis: 50 }
    const config = join(data, '..', `sink-replay-${process.pid}.json`)
    writeFileSync(
      config,
      JSON.stringify({
        // Hundreds of prompts from one person in a minute: the per-person rate limit would refuse them.
        limits: { promptsPerMinute: 0 },
        sinks: [
          { type: 'jsonl', batch },
          { type: 'webhook', url: webhook.url, secret: 'sink-replay-secret-0123', batch, retry },
          { type: 'loki', url: loki.url, batch, retry },
        ],
      }),
    )

    const kills: string[] = []
    let acked = 0
    for (let cycle = 0; cycle <= KILLS; cycle++) {
      const gw = await gateways.start({ comfyui: sim.url, data, origin: ORIGIN, config })
      // The last cycle runs a few prompts and stops cleanly; the others end in a SIGKILL at a seeded ack.
      const stopAt = cycle === KILLS ? 10 : 20 + Math.floor(random() * 40)
      let ackedThisCycle = 0
      let dead = false
      const client = async (c: number): Promise<void> => {
        for (let n = 0; !dead; n++) {
          const id = `r${cycle}-c${c}-${n}`
          try {
            const res = await fetch(`${gw.url}/prompt`, {
              method: 'POST',
              body: JSON.stringify({
                prompt: pipeline(`replay/${id}`, n),
                client_id: `client-${c}`,
                prompt_id: id,
              }),
            })
            if (res.status !== 200) throw new Error(`${id}: HTTP ${res.status} ${await res.text()}`)
            acked++
            if (++ackedThisCycle >= stopAt && !dead) {
              dead = true
              if (cycle < KILLS) {
                kills.push(`cycle ${cycle}: after ack ${stopAt} (${id})`)
                gw.child.kill('SIGKILL')
              }
            }
          } catch (err) {
            if (!dead) throw err
          }
        }
      }
      await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)))
      if (cycle < KILLS) {
        await exited(gw.child)
        continue
      }
      // Running again after the last kill: wait (condition, with a deadline) until every stored record has
      // reached every sink, then stop cleanly. Sessions still running finish meanwhile, so re-read the log.
      const deadline = Date.now() + 60_000
      for (;;) {
        const ids = new Set(await expectedIds(db))
        const got = delivered(data, webhook, loki).ids
        const missing = SINKS.map((s) => {
          const have = new Set(got[s])
          return [...ids].filter((id) => !have.has(id)).length
        })
        if (missing.every((n) => n === 0) || Date.now() > deadline) break
        await new Promise((r) => setTimeout(r, 200))
      }
      gw.child.kill('SIGTERM')
      await exited(gw.child)
    }

    const expected = await expectedIds(db)
    const { ids, torn } = delivered(data, webhook, loki)
    const report: string[] = []
    const problems: string[] = []
    for (const sink of SINKS) {
      const counts = new Map<string, number>()
      for (const id of ids[sink]) counts.set(id, (counts.get(id) ?? 0) + 1)
      const lost = expected.filter((id) => !counts.has(id))
      const duplicates = [...counts.values()].reduce((a, n) => a + n - 1, 0)
      report.push(`${sink}: ${lost.length} of ${expected.length} lost, ${duplicates} duplicate deliveries`)
      if (lost.length > 0) problems.push(`${sink}: lost ${lost.length}: ${lost.slice(0, 5).join(' ')}`)
      // At most one batch per kill: the next export waits for the cursor write, so only the batch whose answer
      // came (or was coming) when the kill fell is unrecorded. A clean stop leaves none.
      if (duplicates > KILLS * BATCH) problems.push(`${sink}: ${duplicates} duplicate deliveries`)
      // The JSONL files are their own witness (lastStored): no window at all.
      if (sink === 'jsonl' && duplicates > 0) problems.push(`jsonl: ${duplicates} duplicate lines`)
    }
    console.log(
      `sink replay (seed ${SEED}, ${acked} prompts, ${kills.length} kills): ${report.join('; ')}; ` +
        `torn JSONL lines: ${torn}`,
    )
    expect(kills).toHaveLength(KILLS)
    expect(expected.length).toBeGreaterThan(500)
    expect(torn, 'JSONL lines that are not whole records').toBe(0)
    expect(problems, kills.join('; ')).toEqual([])
  }, 240_000)
})

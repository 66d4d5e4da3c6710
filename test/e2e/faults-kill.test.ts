/**
 * Fault suite, SIGKILL part (issue 10, "Done when"): the gateway child process is killed with SIGKILL at
 * seeded random points of a multi-client run and started again on the same data dir, 20+ times. After each
 * kill and restart: every prompt a client got a 200 for has exactly one session with one final status, no
 * event is recorded twice, `comfy-audit verify` says OK, and its `prompt.submitted` is in the log. A kill
 * between the 200 and the commit leaves that event only in memory; the restarted gateway rebuilds it from
 * its seal in ComfyUI's copy of the prompt (`recovered: true`), so the check is made after each restart.
 *
 * The kill points are counted in acknowledged prompts (the k-th 200 of a cycle, k seeded), not in time, so
 * the run does not depend on the machine's speed; the other clients' requests are then in flight.
 * `FAULTS_SEED=n` replays another sequence.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/types.js'
import { runVerify } from '../../src/cli/commands/ledger-commands.js'
import { seededRandom } from '../../src/demo/seeded-random.js'
import { loadOrCreateSigningKey } from '../../src/ledger/key-store.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { exited, gatewayProcesses } from '../helpers/gateway-process.js'

const ORIGIN = 'faults-kill'
const CYCLES = 20
const CLIENTS = 3
const SEED = Number(process.env.FAULTS_SEED ?? 10)
const FINAL = new Set(['success', 'error', 'interrupted', 'cancelled', 'rejected', 'lost'])
/** Events a session may hold at most once (one opening, one answer, one end). */
const ONCE = ['prompt.submitted', 'prompt.accepted', 'prompt.rejected', 'execution.started']
const CLOSING = [
  'execution.finished',
  'session.cancelled',
  'session.reconciled',
  'session.lost',
  'session.bypass',
]

const gateways = gatewayProcesses()
let sim: SimServer | undefined

async function readEvents(db: string): Promise<AuditEvent[]> {
  const store = createRuntimeStore(createSqliteDialect({ path: db }), { origin: 'reader' })
  await store.init()
  try {
    const events: AuditEvent[] = []
    for await (const e of store.events({ origin: ORIGIN })) events.push(e)
    return events
  } finally {
    await store.close()
  }
}

/** Final status of each session as the store derives it. */
async function statuses(db: string): Promise<Map<string, string>> {
  return new Map([...(await sessionRows(db))].map(([id, s]) => [id, s.status]))
}

async function sessionRows(db: string): Promise<Map<string, { status: string; flags: readonly string[] }>> {
  const store = createRuntimeStore(createSqliteDialect({ path: db }), { origin: 'reader' })
  await store.init()
  try {
    const rows = await store.sessions({ origin: ORIGIN, limit: 100_000 })
    return new Map(rows.map((s) => [s.session_id, { status: s.status, flags: s.flags }]))
  } finally {
    await store.close()
  }
}

function pipeline(slowSeconds: number, prefix: string): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds: slowSeconds, steps: 2 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  }
}

/** Every logged invariant over the events of the log. Returns the problems found. */
function problemsOf(
  events: readonly AuditEvent[],
  acked: readonly string[],
  missing: string[] = [],
): string[] {
  const problems: string[] = []
  const bySession = new Map<string, AuditEvent[]>()
  for (const e of events) {
    if (e.session_id === null) continue
    let list = bySession.get(e.session_id)
    if (!list) bySession.set(e.session_id, (list = []))
    list.push(e)
  }
  for (const id of acked) {
    const list = bySession.get(id) ?? []
    if (!list.some((e) => e.kind === 'prompt.submitted')) missing.push(id)
  }
  for (const [id, list] of bySession) {
    for (const kind of ONCE) {
      const n = list.filter((e) => e.kind === kind).length
      if (n > 1) problems.push(`${id}: ${kind} recorded ${n} times`)
    }
    const closings = list.filter((e) => CLOSING.includes(e.kind))
    if (closings.length > 1)
      problems.push(`${id}: closed ${closings.length} times (${closings.map((e) => e.kind)})`)
    const nodes = list
      .filter((e) => e.kind === 'node.finished')
      .map((e) => (e.payload.node_run as { node_id: string }).node_id)
    if (new Set(nodes).size !== nodes.length) problems.push(`${id}: a node.finished twice (${nodes})`)
  }
  return problems
}

afterAll(async () => {
  await gateways.killAll()
  await sim?.close()
})

describe('fault suite: SIGKILL', () => {
  it(`kills the gateway ${CYCLES} times at seeded points of a ${CLIENTS}-client run and loses or doubles nothing`, async () => {
    const random = seededRandom(SEED)
    sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'faults-sim-')), port: 0, speed: 50 })
    const data = mkdtempSync(join(tmpdir(), 'faults-kill-'))
    const db = join(data, 'audit.sqlite')
    const acked: string[] = []
    const kills: string[] = []
    /** Acknowledged prompts whose prompt.submitted was not committed when the gateway died. */
    const missingAtKill: string[] = []

    /** Waits until every acknowledged prompt has a final status (reconciliation at start, or live frames). */
    const settled = async (why: string): Promise<void> => {
      // Beyond one reconciliation sweep (30 s), which closes what no live frame does.
      const deadline = Date.now() + 90_000
      for (;;) {
        const status = await statuses(db)
        const open = acked.filter((id) => !FINAL.has(status.get(id) ?? 'none'))
        if (open.length === 0) return
        if (Date.now() > deadline)
          throw new Error(
            `${why}: ${open.length} acknowledged prompts have no final status: ${open.slice(0, 5)}`,
          )
        // A short pause between reads leaves the CPU to the gateway being waited for.
        await new Promise((r) => setTimeout(r, 20))
      }
    }

    for (let cycle = 0; cycle <= CYCLES; cycle++) {
      const gw = await gateways.start({ comfyui: sim.url, data, origin: ORIGIN })
      await settled(`after restart ${cycle}`)
      // What the kill left uncommitted is back: rebuilt, once, from what ComfyUI holds.
      const afterRestart: string[] = []
      expect(problemsOf(await readEvents(db), acked, afterRestart), `seed ${SEED}, restart ${cycle}`).toEqual(
        [],
      )
      expect(afterRestart, `seed ${SEED}, restart ${cycle}: acknowledged without prompt.submitted`).toEqual(
        [],
      )
      if (cycle === CYCLES) {
        gw.child.kill('SIGTERM')
        await exited(gw.child)
        break
      }
      const killAt = 1 + Math.floor(random() * 6)
      let ackedThisCycle = 0
      let dead = false
      const client = async (c: number): Promise<void> => {
        // One stream per client and cycle, so the prompts do not depend on how the requests interleave.
        const mine = seededRandom(SEED * 10_000 + cycle * 10 + c)
        for (let n = 0; !dead; n++) {
          const id = `k${cycle}-c${c}-${n}`
          // Mostly quick runs, some that are still queued or running when the kill comes.
          const slow = mine() < 0.3 ? 2 : 0.05
          try {
            const res = await fetch(`${gw.url}/prompt`, {
              method: 'POST',
              body: JSON.stringify({
                prompt: pipeline(slow, `faults/${id}`),
                client_id: `client-${c}`,
                prompt_id: id,
              }),
            })
            if (res.status === 200) {
              acked.push(id)
              if (++ackedThisCycle === killAt && !dead) {
                dead = true
                kills.push(`cycle ${cycle}: after ack ${killAt} (${id})`)
                gw.child.kill('SIGKILL')
              }
            } else {
              throw new Error(`${id}: HTTP ${res.status} ${await res.text()}`)
            }
          } catch (err) {
            if (!dead) throw err
          }
        }
      }
      await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)))
      await exited(gw.child)
      // With the gateway dead: what it acknowledged is in the log, once, and the log verifies.
      const missing: string[] = []
      const problems = problemsOf(await readEvents(db), acked, missing)
      missingAtKill.push(...missing)
      expect(problems, `seed ${SEED}, ${kills.at(-1)}`).toEqual([])
      const verify = await runVerify({
        data,
        origin: ORIGIN,
        key: (await loadOrCreateSigningKey(data, ORIGIN)).verifierKey,
      })
      expect(verify.output, `seed ${SEED}, ${kills.at(-1)}`).toMatch(/\nOK\n$/)
    }

    expect(kills).toHaveLength(CYCLES)
    const status = await statuses(db)
    for (const id of acked) expect(FINAL.has(status.get(id) ?? 'none'), id).toBe(true)
    const events = await readEvents(db)
    const missing: string[] = []
    expect(problemsOf(events, acked, missing)).toEqual([])
    expect(missing, 'acknowledged prompts without prompt.submitted').toEqual([])
    // Each one the kill left uncommitted is there as what it is: rebuilt, with the evidence it rests on.
    const recovered = events.filter((e) => e.kind === 'prompt.submitted' && e.payload.recovered === true)
    for (const id of missingAtKill) {
      const e = recovered.find((r) => r.session_id === id)
      expect(e, `${id}: no recovered prompt.submitted`).toBeDefined()
      expect(e!.payload.evidence, id).toMatchObject({ prompt_digest_matches: true })
      expect((e!.payload.session as { submitter: { user: string } }).submitter.user, id).toBe('local')
    }
    console.log(
      `prompt.submitted uncommitted at a kill: ${missingAtKill.length} of ${acked.length} acknowledged, ` +
        `all rebuilt after the restart (${recovered.length} recovered events in all)`,
    )
    const verify = await runVerify({
      data,
      origin: ORIGIN,
      key: (await loadOrCreateSigningKey(data, ORIGIN)).verifierKey,
    })
    expect(verify.exitCode, verify.output).toBe(0)
    // 21 starts of a child process (tsx) dominate the run: the limit is generous for a loaded two-core machine.
  }, 600_000)
})

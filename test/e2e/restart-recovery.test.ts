/**
 * Issue 10 items 2 and 3 across a gateway restart, with a real gateway, the stand-in and SQLite. What a crash
 * leaves behind is set up exactly: events a dead process had committed are written by capture itself into the
 * data dir, and prompts it had forwarded are queued at the stand-in as the gateway would have forwarded them.
 * A long-running blocker prompt holds ComfyUI's queue until the test interrupts it, so "still queued at the
 * restart" never depends on timing. (test/e2e/faults-kill.test.ts does the same with real SIGKILLs.)
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent, AuditEventInput, Submitter } from '../../src/audit/types.js'
import { createCapture } from '../../src/capture/capture.js'
import {
  createSubmissionSeal,
  promptDigest,
  sealSecretFromSigner,
} from '../../src/capture/submission-seal.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { namespacedClientId } from '../../src/gateway/client-ids.js'
import { loadOrCreateSigningKey } from '../../src/ledger/key-store.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const ORIGIN = 'restart-recovery'
const FINAL = ['success', 'error', 'interrupted', 'cancelled', 'rejected', 'lost']
const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

const QUICK = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'restart/quick' } },
}
/** Runs until interrupted (10 minutes, a progress step a second): holds everything queued behind it. */
const BLOCKER = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds: 600, steps: 600 } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'restart/blocker' } },
}

const ALICE: Submitter = {
  user: 'alice',
  auth_method: 'token',
  client_address: '10.1.2.3',
  user_agent: 'test-client',
  client_id: 'tab-a',
}
const ALICE_UPSTREAM = namespacedClientId('alice', 'tab-a')

async function newSim(): Promise<SimServer> {
  const sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'restart-sim-')), port: 0 })
  cleanup.push(() => sim.close())
  return sim
}

async function start(sim: SimServer, data: string): Promise<AuditGateway> {
  const config = loadConfig({
    env: {},
    flags: {
      'comfyui.url': sim.url,
      listen: '127.0.0.1:0',
      data,
      origin: ORIGIN,
      'limits.promptsPerMinute': 0,
    },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  cleanup.push(() => audit.close())
  return audit
}

/** POSTs straight to the stand-in, as a gateway forwards (or as someone who bypasses it). */
async function queueAtComfy(sim: SimServer, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${sim.url}/prompt`, { method: 'POST', body: JSON.stringify(body) })
  expect(res.status, await res.clone().text()).toBe(200)
}

async function comfyHas(sim: SimServer, id: string, where: 'history' | 'running'): Promise<boolean> {
  if (where === 'history') {
    const h = (await (await fetch(`${sim.url}/history/${id}`)).json()) as Record<string, unknown>
    return id in h
  }
  const q = (await (await fetch(`${sim.url}/queue`)).json()) as { queue_running: unknown[][] }
  return q.queue_running.some((item) => item[1] === id)
}

/** Polls `check` until it holds; generous, since a loaded machine may be slow. */
async function until(what: string, check: () => Promise<boolean>, seconds = 120): Promise<void> {
  const deadline = Date.now() + seconds * 1000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function statusOf(audit: AuditGateway, id: string): Promise<string | null> {
  return (await audit.store.session(id))?.status ?? null
}

async function eventsOf(audit: AuditGateway, id: string): Promise<AuditEvent[]> {
  const out: AuditEvent[] = []
  for await (const e of audit.store.events({ origin: ORIGIN, sessionId: id })) out.push(e)
  return out
}

/** Writes into `data` what a gateway process had committed before it died, through capture itself. */
async function committedBeforeTheCrash(
  data: string,
  act: (capture: ReturnType<typeof createCapture>) => void,
): Promise<void> {
  const store = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
    origin: ORIGIN,
  })
  await store.init()
  try {
    const pending: Promise<unknown>[] = []
    const capture = createCapture({
      origin: ORIGIN,
      emit: (events: AuditEventInput[]) => void pending.push(store.append(events)),
      gpuSampleIntervalMillis: 0,
    })
    act(capture)
    await capture.flush()
    await Promise.all(pending)
    await store.flush()
  } finally {
    await store.close()
  }
}

function submit(capture: ReturnType<typeof createCapture>, promptId: string, prompt: object, timeMs: number) {
  const body = Buffer.from(JSON.stringify({ prompt, client_id: ALICE_UPSTREAM, prompt_id: promptId }))
  capture.promptSubmitted({
    promptId,
    upstreamClientId: ALICE_UPSTREAM,
    clientId: 'tab-a',
    body,
    forwardedBody: body,
    submitter: ALICE,
    timeMs,
  })
}

describe('issue 10 item 3 across a restart', () => {
  it('keeps prompts still queued in ComfyUI open over a restart, none lost, and sees them finish', async () => {
    const sim = await newSim()
    const data = mkdtempSync(join(tmpdir(), 'restart-'))
    const first = await start(sim, data)
    const post = async (audit: AuditGateway, prompt: object): Promise<string> => {
      const res = await fetch(`${audit.url}/prompt`, {
        method: 'POST',
        body: JSON.stringify({ prompt, client_id: 'tab-q' }),
      })
      expect(res.status).toBe(200)
      return ((await res.json()) as { prompt_id: string }).prompt_id
    }
    const blocker = await post(first, BLOCKER)
    const queued = [] as string[]
    for (let i = 0; i < 5; i++) queued.push(await post(first, QUICK))
    await until('the blocker running', async () => (await statusOf(first, blocker)) === 'running')
    await first.close()
    cleanup.pop()

    const second = await start(sim, data)
    // The start-up reconciliation and two more sweeps, all while the five are still queued upstream.
    await second.reconcileNow()
    await second.reconcileNow()
    for (const id of queued) expect(await statusOf(second, id), id).toBe('queued')
    expect(await statusOf(second, blocker)).toBe('running')
    await fetch(`${second.url}/interrupt`, { method: 'POST', body: '{}' })
    await until('all six closed', async () => {
      await second.reconcileNow()
      const s = await Promise.all([blocker, ...queued].map((id) => statusOf(second, id)))
      return s.every((x) => x !== null && FINAL.includes(x))
    })
    expect(await statusOf(second, blocker)).toBe('interrupted')
    for (const id of queued) expect(await statusOf(second, id), id).toBe('success')
  }, 300_000)

  it('closes what was in flight at the kill: lost if ComfyUI never got it, its real end if it did', async () => {
    const sim = await newSim()
    const data = mkdtempSync(join(tmpdir(), 'restart-'))
    const t0 = Date.now()
    // neverForwarded: prompt.submitted committed, then the kill before the body reached ComfyUI.
    // forwarded: committed and forwarded; the kill came before ComfyUI's 200 was recorded.
    await committedBeforeTheCrash(data, (capture) => {
      submit(capture, 'never-forwarded', QUICK, t0)
      submit(capture, 'forwarded', QUICK, t0 + 1)
    })
    await queueAtComfy(sim, { prompt: QUICK, client_id: ALICE_UPSTREAM, prompt_id: 'forwarded' })
    await until('ComfyUI to finish it', () => comfyHas(sim, 'forwarded', 'history'))

    const audit = await start(sim, data)
    await audit.reconcileNow()
    const lost = await audit.store.session('never-forwarded')
    expect(lost).toMatchObject({ status: 'lost' })
    expect(lost?.status_reason).toMatch(/stopped before ComfyUI answered/)
    const lostEvent = (await eventsOf(audit, 'never-forwarded')).find((e) => e.kind === 'session.lost')
    expect(lostEvent?.payload.evidence).toMatchObject({ orphaned: true, accepted: false, in_queue: false })
    expect(await audit.store.session('forwarded')).toMatchObject({
      status: 'success',
      submitter: { user: 'alice' },
    })
  }, 300_000)

  it('corrects from history a session an earlier run had closed as lost', async () => {
    const sim = await newSim()
    const data = mkdtempSync(join(tmpdir(), 'restart-'))
    // An earlier process called it lost on a reading that missed it; ComfyUI ran it all the same.
    await committedBeforeTheCrash(data, (capture) => {
      submit(capture, 'called-lost', QUICK, Date.now())
      capture.promptAnswered({
        promptId: 'called-lost',
        status: 200,
        body: Buffer.from('{"prompt_id": "called-lost", "number": 0, "node_errors": {}}'),
        timeMs: Date.now(),
      })
      capture.reconcile({ history: {}, queue: { queue_running: [], queue_pending: [] } })
    })
    await queueAtComfy(sim, { prompt: QUICK, client_id: ALICE_UPSTREAM, prompt_id: 'called-lost' })
    await until('ComfyUI to finish it', () => comfyHas(sim, 'called-lost', 'history'))

    const audit = await start(sim, data)
    await audit.reconcileNow()
    await audit.reconcileNow()
    const events = await eventsOf(audit, 'called-lost')
    expect(events.map((e) => e.kind)).toEqual([
      'prompt.submitted',
      'prompt.accepted',
      'session.lost',
      'session.corrected',
    ])
    expect(events[3]!.payload).toMatchObject({ from: 'lost', to: 'success', source: 'history' })
    expect(await audit.store.session('called-lost')).toMatchObject({
      status: 'success',
      submitter: { user: 'alice' },
    })
  }, 300_000)
})

describe('issue 10 item 2 across a crash: prompt.submitted rebuilt from ComfyUI', () => {
  it('rebuilds the submissions a crash lost from the seal ComfyUI echoes, and refuses forged seals', async () => {
    const sim = await newSim()
    const data = mkdtempSync(join(tmpdir(), 'restart-'))
    const key = await loadOrCreateSigningKey(data, ORIGIN)
    const seal = createSubmissionSeal({ origin: ORIGIN, secret: sealSecretFromSigner(key.signer) })
    const sealed = (id: string, prompt: object, at: number) => ({
      prompt,
      client_id: ALICE_UPSTREAM,
      prompt_id: id,
      extra_data: {
        comfy_audit: JSON.parse(
          seal.seal(id, {
            submitter: ALICE,
            upstream_client_id: ALICE_UPSTREAM,
            submitted_at_ms: at,
            prompt_digest: promptDigest(prompt as never),
          }),
        ) as unknown,
      },
    })
    const t0 = Date.now() - 60_000
    // What the dead gateway had forwarded: one finished, a blocker still running, one queued behind it.
    await queueAtComfy(sim, sealed('done', QUICK, t0))
    await until('ComfyUI to finish it', () => comfyHas(sim, 'done', 'history'))
    await queueAtComfy(sim, sealed('blocker', BLOCKER, t0 + 1))
    await queueAtComfy(sim, sealed('waiting', QUICK, t0 + 2))
    // Someone who reaches ComfyUI directly, claiming Alice: a copy of the blocker's seal.
    const copied = sealed('blocker', QUICK, t0 + 3)
    await queueAtComfy(sim, { ...copied, prompt_id: 'forged' })
    await until('the blocker running', () => comfyHas(sim, 'blocker', 'running'))

    const audit = await start(sim, data)
    await audit.reconcileNow()
    for (const [id, status] of [
      ['done', 'success'],
      ['blocker', 'queued'],
      ['waiting', 'queued'],
    ] as const) {
      const session = await audit.store.session(id)
      expect(session, id).toMatchObject({
        status: expect.stringMatching(status === 'queued' ? /^(queued|running)$/ : /^success$/),
        http_status: 200,
        client_id: ALICE_UPSTREAM,
        submitter: { user: 'alice', client_address: '10.1.2.3', client_id: 'tab-a' },
      })
      expect(session?.flags, id).toContain('recovered')
      const submitted = (await eventsOf(audit, id)).filter((e) => e.kind === 'prompt.submitted')
      expect(submitted, id).toHaveLength(1)
      expect(submitted[0]!.payload).toMatchObject({
        recovered: true,
        evidence: { prompt_digest_matches: true },
      })
    }
    expect(JSON.stringify((await audit.store.session('done'))?.extra_data)).not.toContain('comfy_audit')

    await fetch(`${audit.url}/interrupt`, { method: 'POST', body: '{}' })
    await until('the queue to drain', async () => {
      await audit.reconcileNow()
      return (await statusOf(audit, 'forged')) !== null && (await statusOf(audit, 'waiting')) === 'success'
    })
    expect(await audit.store.session('forged')).toMatchObject({
      submitter: null,
      flags: ['bypass', 'seal_rejected'],
    })
    expect(await statusOf(audit, 'blocker')).toBe('interrupted')
    // Clients of the gateway never see the seal in ComfyUI's answers.
    const history = await (await fetch(`${audit.url}/history`)).text()
    expect(history).toContain('"done"')
    expect(history).not.toContain('comfy_audit')
  }, 300_000)

  it("forwards its own seal, never a client's, and the seal names who really submitted", async () => {
    const sim = await newSim()
    const data = mkdtempSync(join(tmpdir(), 'restart-'))
    const audit = await start(sim, data)
    const forged = { v: 1, origin: ORIGIN, seal: 'Zm9yZ2Vk' }
    const res = await fetch(`${audit.url}/prompt`, {
      method: 'POST',
      body: JSON.stringify({ prompt: QUICK, client_id: 'tab-s', extra_data: { comfy_audit: forged } }),
    })
    expect(res.status).toBe(200)
    const id = ((await res.json()) as { prompt_id: string }).prompt_id
    await until('ComfyUI to finish it', () => comfyHas(sim, id, 'history'))
    // What ComfyUI holds (read directly, as recovery does): the gateway's seal, which opens for this prompt.
    const entry = (
      (await (await fetch(`${sim.url}/history/${id}`)).json()) as Record<string, { prompt: unknown[] }>
    )[id]!
    const extra = entry.prompt[3] as { comfy_audit: unknown }
    expect(extra.comfy_audit).not.toEqual(forged)
    const key = await loadOrCreateSigningKey(data, ORIGIN)
    const opened = createSubmissionSeal({ origin: ORIGIN, secret: sealSecretFromSigner(key.signer) }).open(
      extra.comfy_audit as never,
      id,
    )
    await until('the session closed', async () => (await statusOf(audit, id)) === 'success')
    const session = await audit.store.session(id)
    expect(opened).toMatchObject({
      ok: true,
      claim: {
        submitter: { user: session!.submitter!.user, client_id: 'tab-s' },
        upstream_client_id: session!.client_id,
        submitted_at_ms: Date.parse(session!.queued_at!),
        prompt_digest: promptDigest(QUICK as never),
      },
    })
    expect(JSON.stringify(session!.extra_data)).not.toContain('comfy_audit')
  }, 300_000)
})

/**
 * Fault suite, store part (issue 10 item 2 and "Done when"): a real gateway in front of the stand-in, several
 * clients submitting prompts, and the store failing under them. After each fault: every prompt a client got a
 * 200 for has exactly one session with one final status and its prompt.submitted, no event is duplicated, and
 * `comfy-audit verify` says OK. Past the store spool's quota new prompts get 503 and health says degraded.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { stringifyJson } from '../../src/audit/json.js'
import { FINAL_SESSION_STATUSES, type AuditEvent, type JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { parseStoreUrl, type StoreLocation } from '../../src/config/config.js'
import { openStoreDialect } from '../../src/root/store-dialects.js'
import { cli } from '../helpers/cli.js'
import { startPostgres } from '../helpers/postgres.js'
import { lockSqlite } from '../helpers/sqlite-locker.js'

const ROOT = new URL('../..', import.meta.url).pathname
const ORIGIN = 'store-faults'
const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {})
})

const PIPELINE = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: 1, sigma: 1.0 } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/faults' } },
}

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMillis = 30_000) {
  const deadline = Date.now() + timeoutMillis
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function start(store: JsonObject): Promise<{ audit: AuditGateway; sim: SimServer; data: string }> {
  const sim = await createSimServer({
    dataDir: mkdtempSync(join(tmpdir(), 'faults-sim-')),
    port: 0,
    speed: 50,
  })
  cleanup.push(() => sim.close())
  const data = mkdtempSync(join(tmpdir(), 'faults-gateway-'))
  const file = join(data, 'config.json')
  writeFileSync(file, JSON.stringify({ store }))
  const config = loadConfig({
    file,
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: ORIGIN },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  cleanup.push(() => audit.close())
  return { audit, sim, data }
}

/** Three clients submit one prompt each, all of which must be answered 200. */
async function wave(audit: AuditGateway, accepted: string[], round: number): Promise<void> {
  const answers = await Promise.all(['a', 'b', 'c'].map((c) => submit(audit, `client-${c}`, round)))
  for (const a of answers) {
    expect(a.status).toBe(200)
    accepted.push(a.id!)
  }
}

/** One client's POST /prompt: the status and, for a 200, the prompt id. */
async function submit(
  audit: AuditGateway,
  client: string,
  n: number,
): Promise<{ status: number; id?: string }> {
  const res = await fetch(`${audit.url}/prompt`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: stringifyJson({
      prompt: {
        ...PIPELINE,
        '2': { ...PIPELINE['2'], inputs: { ...PIPELINE['2'].inputs, blur_radius: 1 + (n % 20) } },
      },
      client_id: client,
    } as unknown as JsonObject),
  })
  const body = (await res.json()) as { prompt_id?: string }
  return res.status === 200 ? { status: 200, id: body.prompt_id } : { status: res.status }
}

/** The invariants every fault must keep, checked on the store once the gateway has closed. */
async function expectWholeTrail(
  audit: AuditGateway,
  data: string,
  accepted: readonly string[],
  storeUrl = 'sqlite',
): Promise<void> {
  await until('every accepted prompt closed', async () => {
    for (const id of accepted) {
      const s = await audit.store.session(id)
      if (!s || !FINAL_SESSION_STATUSES.includes(s.status)) return false
    }
    return true
  })
  await audit.close()
  const { createRuntimeStore } = await import('../../src/store/runtime-store.js')
  const reader = createRuntimeStore(await openStoreDialect(storeLocation(storeUrl, data)), {
    origin: 'reader',
  })
  const events: AuditEvent[] = []
  for await (const e of reader.events({ origin: ORIGIN })) events.push(e)
  for (const id of accepted) {
    const s = await reader.session(id, ORIGIN)
    expect(s?.status, `session ${id}`).toBe('success')
    expect(events.filter((e) => e.session_id === id && e.kind === 'prompt.submitted')).toHaveLength(1)
    expect(
      events.filter((e) => e.session_id === id && e.kind === 'execution.finished').length,
    ).toBeLessThanOrEqual(1)
  }
  await reader.close()
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i))
  const seen = new Set<string>()
  for (const e of events) {
    const key = stringifyJson({ kind: e.kind, session_id: e.session_id, time: e.time, payload: e.payload })
    expect(seen.has(key), `duplicated event seq ${e.seq} ${e.kind}`).toBe(false)
    seen.add(key)
  }
  // The origin through the environment, as `serve` takes it (verify names the key by the configured origin).
  process.env.COMFY_AUDIT_ORIGIN = ORIGIN
  const verify = await cli('verify', '--data', data, '--store', storeUrl).finally(
    () => delete process.env.COMFY_AUDIT_ORIGIN,
  )
  expect(verify.stdout + verify.stderr).toMatch(/\bOK\b/)
  expect(verify.code).toBe(0)
}

describe('fault suite: the store fails under a multi-client run (issue 10 item 2)', () => {
  it('SQLite locked by another process past busy_timeout: every acknowledged prompt is recorded once', async () => {
    const { audit, data } = await start({ busyTimeoutMillis: 50 })
    const accepted: string[] = []
    const wave = async (round: number): Promise<void> => {
      const answers = await Promise.all(['a', 'b', 'c'].map((c) => submit(audit, `client-${c}`, round)))
      for (const a of answers) {
        expect(a.status).toBe(200)
        accepted.push(a.id!)
      }
    }
    await wave(0)
    const locker = await lockSqlite(join(data, 'audit.sqlite'), ROOT)
    cleanup.push(() => locker.release())
    await wave(1)
    await until('the store to see the lock', () => audit.store.health().state === 'retrying')
    await wave(2)
    const health = (await (await fetch(`${audit.url}/_audit/health`)).json()) as JsonObject
    expect(health).toMatchObject({ status: 'degraded', store_write: { state: 'retrying' } })
    await locker.release()
    await wave(3)
    await until('the store to recover', () => audit.store.health().state === 'ok')
    expect(audit.store.health().failedCommits).toBeGreaterThan(0)
    expect(await audit.metrics.text()).toMatch(/comfy_audit_store_commit_failures_total [1-9]/)
    await expectWholeTrail(audit, data, accepted)
  }, 90_000)

  it('past a small store spool quota new prompts get 503 and health says degraded; all else is recorded', async () => {
    const { audit, data } = await start({
      busyTimeoutMillis: 20,
      outage: { maxQueuedEvents: 5, spoolMaxBytes: 6000 },
    })
    const accepted: string[] = []
    const first = await submit(audit, 'client-a', 0)
    expect(first.status).toBe(200)
    accepted.push(first.id!)
    const locker = await lockSqlite(join(data, 'audit.sqlite'), ROOT)
    cleanup.push(() => locker.release())
    let refused = 0
    const deadline = Date.now() + 30_000
    for (let n = 1; refused === 0; n++) {
      if (Date.now() > deadline) throw new Error('never refused')
      const answers = await Promise.all(['a', 'b'].map((c) => submit(audit, `client-${c}`, n)))
      for (const a of answers) {
        if (a.status === 200) accepted.push(a.id!)
        else {
          expect(a.status).toBe(503)
          refused++
        }
      }
    }
    expect(audit.store.health().state).toBe('over-quota')
    const health = (await (await fetch(`${audit.url}/_audit/health`)).json()) as JsonObject
    expect(health).toMatchObject({ status: 'degraded', store_write: { state: 'over-quota' } })
    expect(await audit.metrics.text()).toMatch(/comfy_audit_prompts_refused_total\{reason="store"\} [1-9]/)
    expect((await submit(audit, 'client-c', 999)).status).toBe(503)
    await locker.release()
    await until('the store to recover', () => audit.store.health().state === 'ok')
    const after = await submit(audit, 'client-c', 1000)
    expect(after.status).toBe(200)
    accepted.push(after.id!)
    expect(accepted.length).toBeGreaterThan(1)
    await expectWholeTrail(audit, data, accepted)
  }, 90_000)

  it('PostgreSQL stopped and started again mid-run: every acknowledged prompt is recorded once', async () => {
    const cluster = await startPostgres()
    cleanup.push(() => cluster.stop())
    const { audit, data } = await start({ url: cluster.url })
    const accepted: string[] = []
    await wave(audit, accepted, 0)
    await cluster.pause()
    await wave(audit, accepted, 1)
    await until('the store to see the outage', () => audit.store.health().state === 'retrying')
    await wave(audit, accepted, 2)
    const health = (await (await fetch(`${audit.url}/_audit/health`)).json()) as JsonObject
    expect(health).toMatchObject({ status: 'degraded', store_write: { state: 'retrying' } })
    await cluster.resume()
    await until('the store to recover', () => audit.store.health().state === 'ok')
    await wave(audit, accepted, 3)
    await expectWholeTrail(audit, data, accepted, cluster.url)
  }, 120_000)
})

/** The store a URL names (the URL is the config's, already checked). */
function storeLocation(url: string, dataDir: string): StoreLocation {
  const parsed = parseStoreUrl(url, dataDir)
  if (!parsed.ok) throw new Error(parsed.reason)
  return parsed.value
}

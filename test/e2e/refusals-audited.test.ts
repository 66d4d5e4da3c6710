/**
 * Issue 10 item 6, refusals are audited: every request the gateway refuses (403 on someone else's run, an
 * auditor's POST /prompt, 401 without credentials, a cross-site POST) is an `access.refused` event with the
 * person when known, the client address, the route and the reason; a flood is counted, not recorded one by
 * one. Real gateway (token auth, people in its SQLite store) in front of the real stand-in.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent, JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createSimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { addPeople } from '../helpers/people.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

const BURST = 5

interface Setup {
  audit: AuditGateway
  data: string
  tokens: Record<'alice' | 'bob' | 'audrey', string>
}

async function setup(): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'refusals-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  // speed 1: alice's slow run is still running when bob tries to stop it
  const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 1 })
  cleanups.push(() => sim.close())
  const data = join(dir, 'data')
  const config = loadConfig({
    env: {},
    flags: {
      data,
      'comfyui.url': sim.url,
      listen: '127.0.0.1:0',
      'auth.mode': 'token',
      origin: 'refusals',
      'limits.refusals.burst': BURST,
      'limits.refusals.perMinute': 0,
    },
  })
  if (!config.ok) throw new Error(config.problems.join('\n'))
  const admin = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
    origin: 'cli',
  })
  const people = createIdentityDirectory(admin, { scrypt: { N: 1 << 10, r: 8, p: 1 } })
  const tokens = await addPeople(
    people,
    [
      ['alice', 'artist'],
      ['bob', 'artist'],
      ['audrey', 'auditor'],
    ],
    'local:test',
  )
  await admin.close()
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  let closed = false
  cleanups.push(async () => {
    if (!closed) await audit.close()
  })
  const close = audit.close.bind(audit)
  return {
    audit: {
      ...audit,
      close: async () => {
        closed = true
        await close()
      },
    } as AuditGateway,
    data,
    tokens,
  }
}

function slowPrompt(prefix: string): JsonObject {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds: 60, steps: 4 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  }
}

async function post(
  url: string,
  path: string,
  token: string | null,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(body),
  })
}

const REFUSAL_KINDS = ['access.refused', 'access.refused.summary'] as const

async function refusalEvents(audit: AuditGateway): Promise<AuditEvent[]> {
  await audit.store.flush()
  const out: AuditEvent[] = []
  for await (const e of audit.store.events({ kinds: REFUSAL_KINDS })) out.push(e)
  return out
}

/** The refusal events in a stopped gateway's store, read as `comfy-audit` reads it. */
async function storedRefusals(data: string): Promise<AuditEvent[]> {
  const store = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
    origin: 'refusals',
  })
  try {
    const out: AuditEvent[] = []
    for await (const e of store.events({ kinds: REFUSAL_KINDS })) out.push(e)
    return out
  } finally {
    await store.close()
  }
}

/** `count` GETs without credentials over a few keep-alive connections; resolves with the statuses seen. */
async function flood(url: string, path: string, count: number): Promise<Map<number, number>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  const statuses = new Map<number, number>()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++
      const status = await new Promise<number>((resolve, reject) => {
        http
          .get(`${url}${path}`, { agent }, (res) => {
            res.resume()
            res.on('end', () => resolve(res.statusCode ?? 0))
          })
          .on('error', reject)
      })
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker))
  agent.destroy()
  return statuses
}

describe('refusals are audited (issue 10 item 6)', () => {
  it("records who was refused what and why: another artist's run, an auditor's prompt, a stranger, a cross-site POST", async () => {
    const { audit, tokens } = await setup()
    const running = await post(audit.url, '/prompt', tokens.alice, { prompt: slowPrompt('audit/ref-a') })
    expect(running.status).toBe(200)
    const runningId = ((await running.json()) as { prompt_id: string }).prompt_id
    const queued = await post(audit.url, '/prompt', tokens.alice, { prompt: slowPrompt('audit/ref-b') })
    const queuedId = ((await queued.json()) as { prompt_id: string }).prompt_id
    await audit.capture.flush()
    await audit.store.flush()

    expect((await post(audit.url, '/interrupt', tokens.bob, { prompt_id: runningId })).status).toBe(403)
    expect((await post(audit.url, '/queue', tokens.bob, { delete: [queuedId] })).status).toBe(403)
    expect((await post(audit.url, '/history', tokens.bob, { clear: true })).status).toBe(403)
    expect(
      (await post(audit.url, '/prompt', tokens.audrey, { prompt: slowPrompt('audit/ref-c') })).status,
    ).toBe(403)
    expect((await post(audit.url, '/free', null, { unload_models: true })).status).toBe(401)
    expect(
      (
        await post(
          audit.url,
          '/interrupt',
          tokens.alice,
          {},
          { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
        )
      ).status,
    ).toBe(403)

    // A target the gateway cannot read one way only (an encoded dot segment) is refused before any guard.
    const badTarget = await new Promise<number>((resolve, reject) => {
      const u = new URL(audit.url)
      http
        .get({ host: u.hostname, port: u.port, path: '/view/%2e%2e/secret?token=abc' }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        .on('error', reject)
    })
    expect(badTarget).toBe(400)

    const events = await refusalEvents(audit)
    const rows = events.map((e) => e.payload)
    expect(rows).toEqual([
      expect.objectContaining({
        status: 403,
        method: 'POST',
        path: '/interrupt',
        user: 'bob',
        role: 'artist',
        reason: 'you may interrupt only your own prompts',
        client_address: expect.stringMatching(/127\.0\.0\.1/),
      }),
      expect.objectContaining({
        status: 403,
        path: '/queue',
        user: 'bob',
        reason: `you may delete only your own prompts (not ${queuedId})`,
      }),
      expect.objectContaining({
        status: 403,
        path: '/history',
        user: 'bob',
        reason: 'clearing the history is for admins only',
      }),
      expect.objectContaining({ status: 403, path: '/prompt', user: 'audrey', role: 'auditor' }),
      expect.objectContaining({ status: 401, path: '/free', user: null }),
      expect.objectContaining({
        status: 403,
        path: '/interrupt',
        user: null,
        reason: 'cross-site request refused',
      }),
      expect.objectContaining({
        status: 400,
        path: '/view/%2e%2e/secret',
        user: null,
        reason: expect.stringMatching(/^bad request target/),
      }),
    ])
    expect(events.every((e) => e.kind === 'access.refused' && e.session_id === null)).toBe(true)
    // The refused interrupt changed nothing: alice's run is still hers and still running.
    const session = await audit.store.session(runningId)
    expect(session?.submitter?.user).toBe('alice')
    expect(session?.status).toBe('running')
  }, 60_000)

  it('records a flood of 10,000 unauthenticated requests as a bounded number of events with the right count', async () => {
    const { audit, data } = await setup()
    const statuses = await flood(audit.url, '/prompt', 10_000)
    expect(Object.fromEntries(statuses)).toEqual({ 401: 10_000 })
    await audit.close()
    const events = await storedRefusals(data)
    const one = events.filter((e) => e.kind === 'access.refused')
    const summaries = events.filter((e) => e.kind === 'access.refused.summary')
    // perMinute 0: the first BURST one by one, then only counted; a summary at least at close.
    expect(one).toHaveLength(BURST)
    expect(summaries.length).toBeGreaterThanOrEqual(1)
    expect(summaries.length).toBeLessThan(10)
    const counted = summaries.reduce((n, e) => n + Number(e.payload.count), 0)
    expect(one.length + counted).toBe(10_000)
    for (const s of summaries) {
      expect(s.payload).toMatchObject({
        user: null,
        client_address: expect.stringMatching(/127\.0\.0\.1/),
        reason: (one[0]!.payload as JsonObject).reason,
        sample: { status: 401, path: '/prompt', method: 'GET' },
      })
    }
  }, 180_000)
})

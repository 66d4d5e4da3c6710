/**
 * Issue 10 item 1, "no overwritten history": a POST /prompt whose client-chosen prompt_id is already known
 * (finished, running, queued, or submitted a moment ago and not yet committed) is refused with ComfyUI's 400
 * shape and changes nothing stored. Two people, a real gateway, the ComfyUI stand-in and SQLite.
 */
import { mkdtempSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Submitter } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

/** The person is named by a test header; the gateway's own authentication is not under test here. */
function identify(req: IncomingMessage): Submitter {
  return {
    user: String(req.headers['x-test-user'] ?? 'nobody'),
    auth_method: 'token',
    client_address: req.socket.remoteAddress ?? null,
    user_agent: null,
    client_id: null,
  }
}

async function gatewayOn(sim: SimServer, data: string): Promise<AuditGateway> {
  const config = loadConfig({
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: 'reuse' },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0, identify })
  let closed = false
  cleanup.push(async () => {
    if (!closed) await audit.close()
  })
  const close = audit.close.bind(audit)
  return Object.assign(audit, {
    close: async () => {
      closed = true
      await close()
    },
  })
}

function pipeline(seconds: number, prefix: string): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds, steps: 2 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  }
}

async function post(
  url: string,
  user: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/prompt`, {
    method: 'POST',
    headers: { 'x-test-user': user },
    body: JSON.stringify(body),
  })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setImmediate(r))
  }
}

/** Everything stored about one session, and both people's session lists. */
async function snapshot(audit: AuditGateway, id: string): Promise<unknown> {
  await audit.capture.flush()
  await audit.store.flush()
  const rows = await audit.store.derivedRows()
  const events: unknown[] = []
  for await (const e of audit.store.rawEvents({ sessionId: id })) events.push(e)
  return {
    session: rows.sessions.filter((s) => s.session_id === id),
    nodeRuns: rows.nodeRuns.filter((n) => n.session_id === id),
    outputs: rows.outputs.filter((o) => o.session_id === id),
    events,
    alice: (await audit.store.sessions({ user: 'alice' })).map((s) => s.session_id),
    bob: (await audit.store.sessions({ user: 'bob' })).map((s) => s.session_id),
  }
}

function expectComfyRefusal(reply: { status: number; json: Record<string, unknown> }): void {
  expect(reply.status).toBe(400)
  expect(reply.json).toMatchObject({ error: { type: 'invalid_prompt', extra_info: {} }, node_errors: {} })
}

async function refusals(audit: AuditGateway): Promise<{ prompt_id: unknown; user: unknown }[]> {
  await audit.capture.flush()
  await audit.store.flush()
  const out: { prompt_id: unknown; user: unknown }[] = []
  for await (const e of audit.store.events({ kinds: ['prompt.refused'] })) {
    expect(e.session_id).toBeNull()
    const submitter = e.payload.submitter as { user?: unknown }
    out.push({ prompt_id: e.payload.prompt_id, user: submitter.user })
  }
  return out
}

describe('issue 10 item 1: no overwritten history', () => {
  it('refuses a reused prompt_id of a finished, a running and a queued run, and changes nothing stored', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'reuse-sim-')),
      port: 0,
      speed: 50,
    })
    cleanup.push(() => sim.close())
    const audit = await gatewayOn(sim, mkdtempSync(join(tmpdir(), 'reuse-')))

    expect(
      (await post(audit.url, 'alice', { prompt: pipeline(0.1, 'a/done'), prompt_id: 'done-1' })).status,
    ).toBe(200)
    await until('done-1 to finish', async () => (await audit.store.session('done-1'))?.status === 'success')
    // Long enough at speed 50 to stay running and queued while bob tries.
    expect(
      (await post(audit.url, 'alice', { prompt: pipeline(200, 'a/run'), prompt_id: 'run-1' })).status,
    ).toBe(200)
    expect(
      (await post(audit.url, 'alice', { prompt: pipeline(1, 'a/q'), prompt_id: 'queued-1' })).status,
    ).toBe(200)
    await until('run-1 to run', async () => (await audit.store.session('run-1'))?.status === 'running')

    for (const id of ['done-1', 'run-1', 'queued-1']) {
      const before = await snapshot(audit, id)
      const reply = await post(audit.url, 'bob', { prompt: pipeline(0.1, 'b/steal'), prompt_id: id })
      expectComfyRefusal(reply)
      expect(await snapshot(audit, id), id).toEqual(before)
    }
    expect(await refusals(audit)).toEqual([
      { prompt_id: 'done-1', user: 'bob' },
      { prompt_id: 'run-1', user: 'bob' },
      { prompt_id: 'queued-1', user: 'bob' },
    ])
    // ComfyUI never saw bob's prompts: its queue holds alice's two only.
    const queue = (await (await fetch(`${sim.url}/queue`)).json()) as {
      queue_running: unknown[][]
      queue_pending: unknown[][]
    }
    expect([...queue.queue_running, ...queue.queue_pending].map((q) => q[1]).sort()).toEqual([
      'queued-1',
      'run-1',
    ])
    await fetch(`${sim.url}/interrupt`, { method: 'POST', body: '{}' })
  }, 60_000)

  it('lets only one of two simultaneous submissions of one new prompt_id through', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'reuse-sim-')),
      port: 0,
      speed: 50,
    })
    cleanup.push(() => sim.close())
    const audit = await gatewayOn(sim, mkdtempSync(join(tmpdir(), 'reuse-')))
    const ids = Array.from({ length: 10 }, (_, i) => `race-${i}`)
    const replies = await Promise.all(
      ids.flatMap((id) => [
        post(audit.url, 'alice', { prompt: pipeline(0.01, 'a/race'), prompt_id: id }),
        post(audit.url, 'bob', { prompt: pipeline(0.01, 'b/race'), prompt_id: id }),
      ]),
    )
    for (let i = 0; i < ids.length; i++) {
      const pair = [replies[2 * i]!.status, replies[2 * i + 1]!.status].sort()
      expect(pair, ids[i]).toEqual([200, 400])
    }
    await until('all races to end', async () =>
      (await audit.store.sessions({ limit: 100 })).every((s) => s.status === 'success'),
    )
    const sessions = await audit.store.sessions({ limit: 100 })
    expect(sessions.map((s) => s.session_id).sort()).toEqual([...ids].sort())
    // The submitter stored is the one who got the 200.
    for (let i = 0; i < ids.length; i++) {
      const winner = replies[2 * i]!.status === 200 ? 'alice' : 'bob'
      expect(sessions.find((s) => s.session_id === ids[i])?.submitter?.user).toBe(winner)
    }
  }, 60_000)

  it('still refuses a reused id after a gateway restart (the index is loaded from the store)', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'reuse-sim-')),
      port: 0,
      speed: 50,
    })
    cleanup.push(() => sim.close())
    const data = mkdtempSync(join(tmpdir(), 'reuse-'))
    const first = await gatewayOn(sim, data)
    expect(
      (await post(first.url, 'alice', { prompt: pipeline(0.05, 'a/x'), prompt_id: 'old-1' })).status,
    ).toBe(200)
    await until('old-1 to finish', async () => (await first.store.session('old-1'))?.status === 'success')
    await first.close()

    const second = await gatewayOn(sim, data)
    const before = await snapshot(second, 'old-1')
    expectComfyRefusal(await post(second.url, 'bob', { prompt: pipeline(0.05, 'b/x'), prompt_id: 'old-1' }))
    expect(await snapshot(second, 'old-1')).toEqual(before)
    expect(await refusals(second)).toEqual([{ prompt_id: 'old-1', user: 'bob' }])
  }, 60_000)
})

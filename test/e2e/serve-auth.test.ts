/**
 * The composition root with authentication on: people from the store, roles enforced, secrets redacted before
 * they are stored, and the session export attributing runs to the right person.
 */
import { cli } from '../helpers/cli.js'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AuditEvent } from '../../src/audit/types.js'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway } from '../../src/create-gateway.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createSimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

const SECRET = 'sk-proj-THISISASECRETKEYTHATMUSTNOTBESTORED0123'

describe('serve with --auth token', () => {
  it('refuses mode none on a public address, saying why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'serve-auth-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const config = loadConfig({ env: {}, flags: { data: dir, listen: '0.0.0.0:0' } })
    if (!config.ok) throw new Error(config.problems.join('\n'))
    await expect(startAuditGateway(config.value, { sweepIntervalMillis: 0 })).rejects.toThrow(/allowInsecure/)
  })

  it('attributes runs to people, refuses strangers, and stores no planted secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'serve-auth-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 20 })
    cleanups.push(() => sim.close())
    const data = join(dir, 'data')
    const config = loadConfig({
      env: {},
      flags: { data, 'comfyui.url': sim.url, listen: '127.0.0.1:0', 'auth.mode': 'token' },
    })
    if (!config.ok) throw new Error(config.problems.join('\n'))
    // people are added the way `comfy-audit users add` does: straight into the store, before serve starts
    const admin = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
      origin: 'cli',
    })
    const people = createIdentityDirectory(admin, { scrypt: { N: 1 << 10, r: 8, p: 1 } })
    const alice = await people.addPerson('alice', 'artist', 'local:test')
    const bob = await people.addPerson('bob', 'artist', 'local:test')
    await admin.close()
    if (!alice.ok || !bob.ok) throw new Error('add failed')
    const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
    cleanups.push(() => audit.close())
    const prompt = {
      '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
      '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    }
    const send = (token: string | null, extra: Record<string, string> = {}): Promise<Response> =>
      fetch(`${audit.url}/prompt`, {
        method: 'POST',
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra },
        body: JSON.stringify({ prompt, extra_data: { api_key: SECRET, note: `key ${SECRET}` } }),
      })
    expect((await send(null, { 'x-forwarded-user': 'alice' })).status).toBe(401)
    const a = (await (await send(alice.value.token)).json()) as { prompt_id: string }
    const b = (await (
      await send(bob.value.token, { 'x-forwarded-user': 'alice', 'comfy-user': 'alice' })
    ).json()) as {
      prompt_id: string
    }
    await sim.idle()
    await audit.reconcileNow()
    await audit.store.flush()
    expect((await audit.store.session(a.prompt_id))?.submitter?.user).toBe('alice')
    expect((await audit.store.session(b.prompt_id))?.submitter?.user).toBe('bob')
    const files = await readdir(data, { recursive: true })
    for (const f of files) {
      const bytes = await readFile(join(data, f)).catch(() => Buffer.alloc(0))
      expect([f, bytes.includes(SECRET)]).toEqual([f, false])
    }
    // an artist reads only their own sessions through the audit API
    const mine = await fetch(`${audit.url}/_audit/api/sessions`, {
      headers: { authorization: `Bearer ${alice.value.token}` },
    })
    expect(mine.status).toBe(200)
    const text = await mine.text()
    expect(text).toContain(a.prompt_id)
    expect(text).not.toContain(b.prompt_id)

    // Node runs: an artist gets their own session's, and nothing of another's; the key is for admins/auditors.
    const asAlice = { authorization: `Bearer ${alice.value.token}` }
    const ownRuns = await fetch(`${audit.url}/_audit/api/node-runs?session=${a.prompt_id}`, {
      headers: asAlice,
    })
    expect(ownRuns.status).toBe(200)
    const runs = ((await ownRuns.json()) as { node_runs: { session_id: string }[] }).node_runs
    expect(runs.length).toBeGreaterThan(0)
    expect(new Set(runs.map((r) => r.session_id))).toEqual(new Set([a.prompt_id]))
    expect(
      (await fetch(`${audit.url}/_audit/api/node-runs?session=${b.prompt_id}`, { headers: asAlice })).status,
    ).toBe(403)
    expect((await fetch(`${audit.url}/_audit/api/key`, { headers: asAlice })).status).toBe(403)

    // The log says who changed people, who read the audit trail, and when the gateway started.
    await audit.store.flush()
    const events: AuditEvent[] = []
    for await (const e of audit.store.events({
      kinds: ['security.person_changed', 'audit.read', 'gateway.started'],
    }))
      events.push(e)
    expect(
      events
        .filter((e) => e.kind === 'security.person_changed')
        .map((e) => [e.payload.person, e.payload.action, e.payload.by]),
    ).toEqual([
      ['alice', 'added', 'local:test'],
      ['bob', 'added', 'local:test'],
    ])
    expect(events.filter((e) => e.kind === 'audit.read').length).toBeGreaterThanOrEqual(2)
    expect(events.find((e) => e.kind === 'audit.read')?.payload).toMatchObject({
      user: 'alice',
      auth_method: 'token',
      path: '/_audit/api/sessions?user=alice',
      status: 200,
    })
    expect(events.find((e) => e.kind === 'gateway.started')?.payload).toMatchObject({ auth_mode: 'token' })

    // The session export names each run's person, the spoofed run included.
    const exported = await cli('export', '--table', 'sessions', '--format', 'csv', '--data', data)
    expect(exported.code).toBe(0)
    const lines = exported.stdout.trim().split('\r\n')
    const header = lines[0]!.split(',')
    const userOf = (id: string): string | undefined => {
      const row = lines.find((l) => l.includes(id))
      return row?.split(',')[header.indexOf('user')]
    }
    expect(userOf(a.prompt_id)).toBe('alice')
    expect(userOf(b.prompt_id)).toBe('bob')
  })
})

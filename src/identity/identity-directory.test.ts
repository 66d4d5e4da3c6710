import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createRuntimeStore, type RuntimeStore } from '../store/runtime-store.js'
import { createSqliteDialect } from '../store/sqlite/sqlite-dialect.js'
import { createIdentityDirectory } from './identity-directory.js'
import { parseToken } from './tokens.js'

// Cheap scrypt for tests: the cost parameters are stored per token, so verification uses the same.
const FAST = { N: 1 << 10, r: 8, p: 1 }

let dir = ''
const stores: RuntimeStore[] = []
async function openStore(): Promise<RuntimeStore> {
  const s = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: 'test' })
  await s.init()
  stores.push(s)
  return s
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-identity-'))
})
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close()
  await rm(dir, { recursive: true, force: true })
})

describe('identity directory', () => {
  it('issues id.secret tokens that verify, and stores only a hash', async () => {
    const store = await openStore()
    const dirA = createIdentityDirectory(store, { scrypt: FAST })
    const added = await dirA.addPerson('alice', 'artist', 'local:test')
    expect(added.ok).toBe(true)
    if (!added.ok) return
    const token = added.value.token
    expect(parseToken(token)).not.toBeNull()
    const v = await dirA.verifyToken(token)
    expect(v.ok && v.value.name).toBe('alice')
    const stored = JSON.stringify(await store.getState('identity.directory'), (_k, x: unknown) =>
      typeof x === 'bigint' ? x.toString() : x,
    )
    expect(stored).not.toContain(parseToken(token)!.secret)
    const wrong = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA')
    expect((await dirA.verifyToken(wrong)).ok).toBe(false)
    expect((await dirA.verifyToken('not-a-token')).ok).toBe(false)
  })

  it('refuses duplicate, reserved and malformed names', async () => {
    const d = createIdentityDirectory(await openStore(), { scrypt: FAST })
    expect((await d.addPerson('bob', 'admin', 'x')).ok).toBe(true)
    expect((await d.addPerson('bob', 'admin', 'x')).ok).toBe(false)
    expect((await d.addPerson('local', 'admin', 'x')).ok).toBe(false)
    expect((await d.addPerson('local:me', 'admin', 'x')).ok).toBe(false)
    expect((await d.addPerson('a b', 'admin', 'x')).ok).toBe(false)
    expect((await d.addPerson('__proto__', 'admin', 'x')).ok).toBe(false)
  })

  it('makes a disable by another process bite on the next check despite the token cache', async () => {
    const gatewayStore = await openStore()
    const cliStore = await openStore()
    const gateway = createIdentityDirectory(gatewayStore, { scrypt: FAST, cacheMillis: 60_000 })
    const cli = createIdentityDirectory(cliStore, { scrypt: FAST })
    const added = await cli.addPerson('carol', 'artist', 'local:test')
    if (!added.ok) throw new Error(added.reason)
    expect((await gateway.verifyToken(added.value.token)).ok).toBe(true)
    expect((await gateway.verifyToken(added.value.token)).ok).toBe(true) // cached
    expect((await cli.disablePerson('carol', 'local:test')).ok).toBe(true)
    const after = await gateway.verifyToken(added.value.token)
    expect(after).toEqual({ ok: false, reason: 'person is disabled' })
    expect((await cli.enablePerson('carol', 'local:test')).ok).toBe(true)
    expect((await gateway.verifyToken(added.value.token)).ok).toBe(true)
  })

  it('changes a role for the next check despite the token cache, and journals who did it', async () => {
    const gateway = createIdentityDirectory(await openStore(), { scrypt: FAST, cacheMillis: 60_000 })
    const admin = createIdentityDirectory(await openStore(), { scrypt: FAST })
    const added = await admin.addPerson('erin', 'auditor', 'local:test')
    if (!added.ok) throw new Error(added.reason)
    const before = await gateway.verifyToken(added.value.token)
    expect(before.ok && before.value.role).toBe('auditor')
    const changed = await admin.setRole('erin', 'artist', 'dashboard:ada')
    expect(changed.ok && changed.value.role).toBe('artist')
    const after = await gateway.verifyToken(added.value.token)
    expect(after.ok && after.value.role).toBe('artist')
    const journal = await gateway.changesSince(0)
    expect(journal.at(-1)).toMatchObject({
      action: 'role_changed',
      person: 'erin',
      by: 'dashboard:ada',
      role: 'artist',
    })
    expect(await admin.setRole('nobody', 'admin', 'dashboard:ada')).toEqual({
      ok: false,
      reason: 'no person named "nobody"',
    })
  })

  it('revokes old tokens and login sessions when a person is re-tokened', async () => {
    let t = Date.parse('2026-01-01T00:00:00Z')
    const now = (): number => t
    const gateway = createIdentityDirectory(await openStore(), { scrypt: FAST, cacheMillis: 60_000, now })
    const cli = createIdentityDirectory(await openStore(), { scrypt: FAST, now })
    const added = await cli.addPerson('dave', 'artist', 'local:test')
    if (!added.ok) throw new Error(added.reason)
    const login = await gateway.createLoginSession('dave', 3600_000)
    if (!login.ok) throw new Error(login.reason)
    expect((await gateway.loginSession(login.value.sessionId)).ok).toBe(true)
    expect((await gateway.verifyToken(added.value.token)).ok).toBe(true)
    t += 1000
    const again = await cli.reissueToken('dave', 'local:test')
    if (!again.ok) throw new Error(again.reason)
    expect((await gateway.verifyToken(added.value.token)).ok).toBe(false)
    expect((await gateway.verifyToken(again.value.token)).ok).toBe(true)
    expect(await gateway.loginSession(login.value.sessionId)).toEqual({
      ok: false,
      reason: 'session revoked',
    })
  })

  it('expires and ends login sessions', async () => {
    let t = Date.parse('2026-01-01T00:00:00Z')
    const d = createIdentityDirectory(await openStore(), { scrypt: FAST, now: () => t })
    await d.addPerson('erin', 'auditor', 'x')
    const a = await d.createLoginSession('erin', 1000)
    const b = await d.createLoginSession('erin', 10_000)
    if (!a.ok || !b.ok) throw new Error('login failed')
    t += 2000
    expect(await d.loginSession(a.value.sessionId)).toEqual({ ok: false, reason: 'session expired' })
    expect((await d.loginSession(b.value.sessionId)).ok).toBe(true)
    await d.endLoginSession(b.value.sessionId)
    expect((await d.loginSession(b.value.sessionId)).ok).toBe(false)
    expect((await d.loginSession('x'.repeat(43))).ok).toBe(false)
  })

  it('lists people without secrets and provisions unknown names once', async () => {
    const d = createIdentityDirectory(await openStore(), { scrypt: FAST })
    await d.addPerson('zed', 'admin', 'x')
    const p1 = await d.provisionPerson('amy', 'artist', 'trusted-header')
    const p2 = await d.provisionPerson('amy', 'admin', 'trusted-header')
    expect(p1.ok && p2.ok && p2.value.role).toBe('artist')
    const list = await d.listPeople()
    expect(list.map((p) => [p.name, p.role, p.tokens])).toEqual([
      ['amy', 'artist', 0],
      ['zed', 'admin', 1],
    ])
    expect(JSON.stringify(list)).not.toMatch(/hash|salt/)
  })
})

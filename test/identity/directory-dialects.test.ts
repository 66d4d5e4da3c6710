/**
 * The identity directory lives in the store's state table: the same behaviour on SQLite and PostgreSQL,
 * including a disable made through one connection biting at once on another (the CLI and a running gateway).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import type { StoreDialect } from '../../src/store/store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'

const FAST = { N: 1 << 10, r: 8, p: 1 }
let cluster: PostgresCluster | undefined
let dir = ''
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'identity-dialects-'))
  cluster = await startPostgres()
})
afterAll(async () => {
  await cluster?.stop()
  await rm(dir, { recursive: true, force: true })
})

const dialects: [string, () => Promise<() => StoreDialect>][] = [
  [
    'sqlite',
    async () => {
      const path = join(dir, `${Math.random().toString(36).slice(2)}.sqlite`)
      return () => createSqliteDialect({ path })
    },
  ],
  [
    'postgres',
    async () => {
      const url = await cluster!.createDatabase()
      return () => createPostgresDialect({ url })
    },
  ],
]

describe.each(dialects)('identity directory on %s', (_name, makeDialect) => {
  it('adds, verifies, disables across connections, re-tokens and ends sessions', async () => {
    const dialect = await makeDialect()
    const stores: RuntimeStore[] = [0, 1].map((i) => createRuntimeStore(dialect(), { origin: `o${i}` }))
    try {
      await Promise.all(stores.map((s) => s.init()))
      const gateway = createIdentityDirectory(stores[0]!, { scrypt: FAST, cacheMillis: 60_000 })
      const cli = createIdentityDirectory(stores[1]!, { scrypt: FAST })
      const added = await cli.addPerson('alice', 'artist', 'local:test')
      if (!added.ok) throw new Error(added.reason)
      expect((await gateway.verifyToken(added.value.token)).ok).toBe(true)
      const login = await gateway.createLoginSession('alice', 60_000)
      if (!login.ok) throw new Error(login.reason)
      await cli.disablePerson('alice', 'local:test')
      expect(await gateway.verifyToken(added.value.token)).toEqual({
        ok: false,
        reason: 'person is disabled',
      })
      expect((await gateway.loginSession(login.value.sessionId)).ok).toBe(false)
      await cli.enablePerson('alice', 'local:test')
      const again = await cli.reissueToken('alice', 'local:test')
      if (!again.ok) throw new Error(again.reason)
      expect((await gateway.verifyToken(added.value.token)).ok).toBe(false)
      expect((await gateway.verifyToken(again.value.token)).ok).toBe(true)
      expect((await cli.listPeople()).map((p) => [p.name, p.role, p.disabled, p.tokens])).toEqual([
        ['alice', 'artist', false, 1],
      ])
    } finally {
      for (const s of stores) await s.close()
    }
  })
})

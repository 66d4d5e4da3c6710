import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'
import { describeStoreContract, input } from './contract.js'

let cluster: PostgresCluster | undefined
beforeAll(async () => {
  cluster = await startPostgres()
})
afterAll(async () => {
  await cluster?.stop()
})

function server(): PostgresCluster {
  if (!cluster) throw new Error('PostgreSQL cluster did not start')
  return cluster
}

describeStoreContract(
  'postgres',
  async () => createPostgresDialect({ url: await server().createDatabase() }),
  {
    persistent: true,
  },
)

describe('postgres dialect', () => {
  it('migrates once when many gateways start at the same moment', async () => {
    const url = await server().createDatabase()
    const stores = Array.from({ length: 5 }, (_, i) =>
      createRuntimeStore(createPostgresDialect({ url }), { origin: `gw/${i}` }),
    )
    await Promise.all(stores.map((s) => s.init()))
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      const { rows } = await client.query('SELECT version, name FROM schema_migrations ORDER BY version')
      expect(rows).toEqual([
        { version: 1, name: 'initial' },
        { version: 2, name: 'ledger' },
        { version: 3, name: 'node run rollups' },
        { version: 4, name: 'node run previews' },
        { version: 5, name: 'analysis indexes' },
        { version: 6, name: 'analysis rollups' },
      ])
    } finally {
      await client.end()
    }
    await Promise.all(stores.map((s) => s.close()))
  })

  it('stores payloads as the exact JSON text it was given', async () => {
    const url = await server().createDatabase()
    const store = createRuntimeStore(createPostgresDialect({ url }), { origin: 'gw/a' })
    await store.append([input('prompt.submitted', 's1', { seed: 2n ** 64n - 1n, cfg: NaN, b: 1, a: 2 })])
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      const { rows } = await client.query('SELECT payload FROM events')
      expect(rows).toEqual([{ payload: '{"seed":18446744073709551615,"cfg":NaN,"b":1,"a":2}' }])
    } finally {
      await client.end()
    }
    await store.close()
  })

  it('fails init with the connection error when the server is unreachable', async () => {
    const store = createRuntimeStore(createPostgresDialect({ url: 'postgres://postgres@127.0.0.1:1/none' }), {
      origin: 'gw/a',
    })
    await expect(store.init()).rejects.toThrow()
    await store.close()
  })
})

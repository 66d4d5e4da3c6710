import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson } from '../../src/audit/json.js'
import type { JsonObject } from '../../src/audit/types.js'
import { NODE_RUN_COLUMNS, SESSION_COLUMNS } from '../../src/store/derived-columns.js'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'
import { describeStoreContract, input, nodeRun } from './contract.js'

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
        { version: 7, name: 'analysis index fix' },
        { version: 8, name: 'event payloads as standard JSON' },
        { version: 9, name: 'daily and model usage rollups' },
        { version: 10, name: 'query indexes' },
      ])
    } finally {
      await client.end()
    }
    await Promise.all(stores.map((s) => s.close()))
  })

  it('stores sessions and node-run JSON columns as standard JSON that ::json reads (issue 10 item 12)', async () => {
    const url = await server().createDatabase()
    const store = createRuntimeStore(createPostgresDialect({ url }), { origin: 'gw/a' })
    const parsed = parseJson('{"session":{"status":"queued","extra_data":{"v":NaN,"cfg":1.0}}}')
    if (!parsed.ok) throw new Error(parsed.reason)
    await store.append([
      input('prompt.submitted', 's1', parsed.value as JsonObject),
      input('node.finished', 's1', {
        node_run: nodeRun('s1', '3', { inputs: { cfg: -Infinity, steps: 20 } }) as unknown as JsonObject,
      }),
    ])
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      // A cast that fails on any row fails the whole query: every stored JSON column must be standard JSON.
      const json = (table: string, columns: readonly (readonly [string, string])[]): string =>
        columns
          .filter(([, kind]) => kind === 'json')
          .map(([name]) => `${name}::json IS NOT NULL OR ${name} IS NULL`)
          .join(' AND ')
      await client.query(`SELECT ${json('sessions', SESSION_COLUMNS)} FROM sessions`)
      await client.query(`SELECT ${json('node_runs', NODE_RUN_COLUMNS)} FROM node_runs`)
      const { rows } = await client.query(
        `SELECT s.extra_data::json->'v'->>'$float' AS v, s.extra_data::json->>'cfg' AS cfg,
                n.inputs::json->'cfg'->>'$float' AS inf FROM sessions s JOIN node_runs n USING (origin, session_id)`,
      )
      expect(rows).toEqual([{ v: 'NaN', cfg: '1.0', inf: '-Infinity' }])
    } finally {
      await client.end()
    }
    const session = await store.session('s1')
    expect(Number.isNaN((session?.extra_data as JsonObject).v)).toBe(true)
    const [run] = await store.nodeRuns({ sessionId: 's1' })
    expect((run?.inputs as JsonObject).cfg).toBe(-Infinity)
    await store.close()
  })

  it('stores payloads as standard JSON text in the order given, which ::json reads (NaN tagged)', async () => {
    const url = await server().createDatabase()
    const store = createRuntimeStore(createPostgresDialect({ url }), { origin: 'gw/a' })
    await store.append([input('prompt.submitted', 's1', { seed: 2n ** 64n - 1n, cfg: NaN, b: 1, a: 2 })])
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      const { rows } = await client.query(
        `SELECT payload, payload_format, payload::json -> 'cfg' ->> '$float' AS cfg FROM events`,
      )
      expect(rows).toEqual([
        {
          payload: '{"seed":18446744073709551615,"cfg":{"$float":"NaN"},"b":1,"a":2}',
          payload_format: 1,
          cfg: 'NaN',
        },
      ])
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

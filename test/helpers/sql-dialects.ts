/**
 * Each store dialect with a raw SQL handle on the same database, for tests that look at query plans and
 * indexes: SQLite files in a temporary folder, and a throwaway PostgreSQL cluster when one is installed.
 * Registers its own beforeAll/afterAll hooks, so call it at the top level of a test file.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { afterAll, beforeAll } from 'vitest'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import type { StoreDialect } from '../../src/store/store.js'
import { findPostgresBin, startPostgres, type PostgresCluster } from './postgres.js'

/** One dialect under test; `make()` gives a fresh, empty database. */
export interface SqlDialect {
  readonly name: string
  make(): Promise<{ dialect: StoreDialect; sql(text: string): Promise<unknown[]>; done(): Promise<void> }>
}

/**
 * The dialects to run a suite on (`describe.each`), and a path in the suite's temporary folder (`prefix`
 * names it) for a test that opens its own SQLite file.
 */
export function sqlDialects(prefix: string): {
  readonly dialects: SqlDialect[]
  tempPath(name: string): string
} {
  let dir = ''
  let cluster: PostgresCluster | undefined
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix))
  })
  afterAll(async () => {
    await cluster?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  let counter = 0
  const dialects: SqlDialect[] = [
    {
      name: 'sqlite',
      async make() {
        const path = join(dir, `db-${++counter}.sqlite`)
        return {
          dialect: createSqliteDialect({ path }),
          async sql(text) {
            const db = new Database(path)
            try {
              const stmt = db.prepare(text)
              return stmt.reader ? stmt.all() : (stmt.run(), [])
            } finally {
              db.close()
            }
          },
          async done() {},
        }
      },
    },
  ]
  if (findPostgresBin()) {
    dialects.push({
      name: 'postgres',
      async make() {
        cluster ??= await startPostgres()
        const url = await cluster.createDatabase()
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        return {
          dialect: createPostgresDialect({ url }),
          sql: async (text) => (await client.query(text)).rows,
          done: async () => void (await client.end()),
        }
      },
    })
  }
  return { dialects, tempPath: (name) => join(dir, name) }
}

/**
 * Event paging (verify, evidence, prune, ledger catch-up and sink replay all read the log through it) must seek
 * to each page through the (origin, seq) primary key, so that reading a log is linear in its length.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { EventFilter } from '../../src/store/store.js'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { EVENT_PAGE_SIZE } from '../../src/store/sql-common.js'
import { eventsPageQuery } from '../../src/store/sql-queries.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { generateHistory } from '../helpers/history-generator.js'
import { findPostgresBin, startPostgres, type PostgresCluster } from '../helpers/postgres.js'

const ORIGIN = 'comfy-audit/paging'
const AFTER = { origin: ORIGIN, seq: 5000 }

/** The filters the log's readers page with. */
const FILTERS: [string, EventFilter][] = [
  ['one origin (verify, ledger catch-up, sink replay)', { origin: ORIGIN }],
  ['a seq range (evidence, prune)', { origin: ORIGIN, fromSeq: 0, toSeq: 9000 }],
]

let dir: string
let dbPath: string
let events = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-paging-'))
  dbPath = join(dir, 'audit.sqlite')
  const store = createRuntimeStore(createSqliteDialect({ path: dbPath, synchronous: 'normal' }), {
    origin: ORIGIN,
  })
  try {
    events = (await generateHistory(store, { seed: 3, sessions: 400, batchEvents: 1000 })).events
  } finally {
    await store.close()
  }
}, 120_000)

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('event paging on SQLite', () => {
  it.each(FILTERS)('seeks each later page of %s through the primary key', (_, filter) => {
    const db = new Database(dbPath, { readonly: true })
    try {
      const query = eventsPageQuery(filter, AFTER, EVENT_PAGE_SIZE)
      expect(query.sql).toContain('seq > ?')
      const plan = (
        db.prepare(`EXPLAIN QUERY PLAN ${query.sql}`).all(...query.params) as { detail: string }[]
      )
        .map((r) => r.detail)
        .join('\n')
      // The range must be part of the seek (`seq>?` inside the key's search), not a filter after it.
      expect(plan).toMatch(/SEARCH events USING PRIMARY KEY \(origin=\? AND seq>\?/)
      expect(plan).not.toMatch(/\bSCAN\b/)
      expect(plan).not.toMatch(/TEMP B-TREE/)
    } finally {
      db.close()
    }
  })

  it('streams every event once, in order (page timings are printed)', async () => {
    const store: RuntimeStore = createRuntimeStore(createSqliteDialect({ path: dbPath }), { origin: ORIGIN })
    try {
      const pageMillis: number[] = []
      let expected = 0
      let start = performance.now()
      for await (const row of store.rawEvents({ origin: ORIGIN })) {
        expect(row.seq).toBe(expected)
        expected++
        if (expected % EVENT_PAGE_SIZE === 0) {
          const now = performance.now()
          pageMillis.push(now - start)
          start = now
        }
      }
      expect(expected).toBe(events)
      // Timings are reported, not judged (a loaded machine makes them noisy); the plan test above decides.
      process.stdout.write(
        `event paging: ${events} events, ${pageMillis.length} pages of ${EVENT_PAGE_SIZE}; first page ` +
          `${pageMillis[0]?.toFixed(2)} ms, last page ${pageMillis[pageMillis.length - 1]?.toFixed(2)} ms\n`,
      )
    } finally {
      await store.close()
    }
  })
})

describe.runIf(findPostgresBin() !== undefined)('event paging on PostgreSQL', () => {
  let cluster: PostgresCluster | undefined
  let url: string
  beforeAll(async () => {
    cluster = await startPostgres()
    url = await cluster.createDatabase()
    const store = createRuntimeStore(createPostgresDialect({ url }), { origin: ORIGIN })
    try {
      await generateHistory(store, { seed: 3, sessions: 40, batchEvents: 500 })
    } finally {
      await store.close()
    }
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it.each(FILTERS)('seeks each later page of %s with seq in the index condition', async (_, filter) => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      // This log is shorter than the SQLite one: page on from a position inside it.
      const query = eventsPageQuery(filter, { origin: ORIGIN, seq: 100 }, EVENT_PAGE_SIZE)
      let n = 0
      const sql = query.sql.replace(/\?/g, () => `$${++n}`)
      // A small table would be read sequentially (or through a bitmap, then sorted) whatever the indexes:
      // ask what a plain index scan can serve, ordered, for this page.
      await client.query('ANALYZE events')
      await client.query('SET enable_seqscan = off')
      await client.query('SET enable_bitmapscan = off')
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, query.params)
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
      expect(plan).toMatch(/Index (Only )?Scan using events_pkey/)
      expect(plan).toMatch(/Index Cond: .*\(seq > /)
      expect(plan).not.toMatch(/Sort|Seq Scan/)
    } finally {
      await client.end()
    }
  })
})

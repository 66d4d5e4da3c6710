/**
 * Issue 14 item 4: migration 10's indexes on both stores. Sessions list by person, status and time window in
 * the listing's order through the (column, queued_at …) indexes, page by cursor exactly as by offset, and are
 * found by their prompt's hash or its graph hash (a PNG's prompt chunk, with or without `is_changed`); a store
 * of schema version 9 upgrades, its stored prompts' graph hashes filled.
 */
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { canonicalJson, sha256Hex } from '../../src/audit/json.js'
import type { AuditEventInput, JsonObject, SessionRecord } from '../../src/audit/types.js'
import { promptGraphSha256 } from '../../src/store/query-indexes.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { sessionQuery } from '../../src/store/sql-common.js'
import { sessionsQuery } from '../../src/store/sql-queries.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import type { SessionFilter } from '../../src/store/store.js'
import { sqlDialects } from '../helpers/sql-dialects.js'

const ORIGIN = 'gw/query'
const USERS = ['ana', 'ben', 'chloe']

function graph(n: number, isChanged: boolean): JsonObject {
  return {
    '1': {
      class_type: 'CLIPTextEncode',
      inputs: { text: `prompt ${n % 4}` },
      ...(isChanged ? { is_changed: ['x'] } : {}),
    },
  }
}

/** 24 sessions, two per hour, 3 people, every fifth failed, prompts repeating every 4; the last not queued. */
function history(): AuditEventInput[] {
  const events: AuditEventInput[] = []
  for (let i = 0; i < 24; i++) {
    const time = new Date(Date.UTC(2026, 10, 1, i)).toISOString()
    // Two sessions share each hour's queue time: ties order by key.
    events.push({
      kind: 'prompt.submitted',
      time,
      session_id: `s${String(i).padStart(2, '0')}`,
      payload: {
        session: {
          status: i % 5 === 0 ? 'error' : 'success',
          queued_at: i === 23 ? null : new Date(Date.UTC(2026, 10, 1, Math.floor(i / 2))).toISOString(),
          submitter: { user: USERS[i % 3]!, auth_method: 'header' },
          prompt: graph(i, i % 2 === 1),
          prompt_sha256: sha256Hex(canonicalJson(graph(i, i % 2 === 1))),
        },
      },
    })
  }
  return events
}

const ids = (rows: readonly SessionRecord[]): string[] => rows.map((s) => s.session_id)

const { dialects, tempPath } = sqlDialects('comfy-audit-query-')

/** Every page by cursor (as the API pages), joined. */
async function byCursor(store: RuntimeStore, filter: SessionFilter, limit: number): Promise<string[]> {
  const out: string[] = []
  let after: SessionFilter['after']
  for (;;) {
    const page = await store.sessions({ ...filter, limit, ...(after ? { after } : {}) })
    out.push(...ids(page))
    const last = page[page.length - 1]
    if (page.length < limit || !last?.queued_at) return out
    after = { queued_at: last.queued_at, origin: last.origin, session_id: last.session_id }
  }
}

describe.each(dialects)('query indexes on $name', ({ make }) => {
  it('lists by person, status and window in order, pages by cursor as by offset, finds prompts by hash', async () => {
    const db = await make()
    const store = createRuntimeStore(db.dialect, { origin: ORIGIN })
    try {
      await store.append(history())
      const all = ids(await store.sessions({}))
      // Newest first, ties (two per hour) by id, the session without a queue time last.
      expect(all.slice(0, 4)).toEqual(['s22', 's20', 's21', 's18'])
      expect(all[all.length - 1]).toBe('s23')
      const window = { since: '2026-11-01T03:00:00.000Z', until: '2026-11-01T08:00:00.000Z' }
      expect(ids(await store.sessions({ user: 'ben', ...window }))).toEqual(['s13', 's10', 's07'])
      expect(ids(await store.sessions({ status: ['error'] }))).toEqual(['s20', 's15', 's10', 's05', 's00'])
      expect(ids(await store.sessions({ status: ['error'], ...window }))).toEqual(['s15', 's10'])
      const timed = all.filter((id) => id !== 's23')
      expect(await byCursor(store, {}, 5)).toEqual(timed)
      expect(await byCursor(store, { user: 'ana' }, 2)).toEqual(
        ids(await store.sessions({ user: 'ana' })).filter((id) => id !== 's23'),
      )
      expect(await byCursor(store, window, 3)).toEqual(ids(await store.sessions(window)))
      // The odd sessions' prompts carry is_changed: their graph hash is the plain prompt's.
      const plain = graph(1, false)
      const found = await store.sessions({
        prompt: { sha256: sha256Hex(canonicalJson(plain)), graphSha256: promptGraphSha256(plain)! },
      })
      expect(ids(found).sort()).toEqual(['s01', 's05', 's09', 's13', 's17', 's21'])
      const exact = graph(2, false)
      const same = await store.sessions({
        prompt: { sha256: sha256Hex(canonicalJson(exact)), graphSha256: 'none' },
      })
      expect(ids(same).sort()).toEqual(['s02', 's06', 's10', 's14', 's18', 's22'])
      expect((await store.session('s07'))?.submitter?.user).toBe('ben')
    } finally {
      await store.close()
      await db.done()
    }
  })

  it('upgrades a store of schema version 9, filling the graph hashes of the prompts stored before', async () => {
    const db = await make()
    const first = createRuntimeStore(db.dialect, { origin: ORIGIN })
    await first.append(history())
    await first.close()
    // Back to version 9: migration 10's indexes and column gone, the indexes it replaced back.
    for (const index of [
      'sessions_prompt_sha256',
      'sessions_prompt_graph_sha256',
      'sessions_user_time',
      'sessions_status_time',
      'sessions_time',
      'sessions_session_id_origin',
    ])
      await db.sql(`DROP INDEX ${index}`)
    await db.sql('CREATE INDEX sessions_submitter_user ON sessions (submitter_user)')
    await db.sql('CREATE INDEX sessions_status ON sessions (status)')
    await db.sql('CREATE INDEX sessions_session_id ON sessions (session_id)')
    await db.sql('ALTER TABLE sessions DROP COLUMN prompt_graph_sha256')
    await db.sql('DELETE FROM schema_migrations WHERE version = 10')
    const store = createRuntimeStore(db.dialect, { origin: ORIGIN })
    try {
      const plain = graph(3, false)
      const found = await store.sessions({
        prompt: { sha256: 'none', graphSha256: promptGraphSha256(plain)! },
      })
      expect(ids(found).sort()).toEqual(['s03', 's07', 's11', 's15', 's19', 's23'])
      expect(ids(await store.sessions({ user: 'chloe', limit: 2 }))).toEqual(['s20', 's17'])
      expect(await db.sql('SELECT version FROM schema_migrations WHERE version = 10')).toHaveLength(1)
    } finally {
      await store.close()
      await db.done()
    }
  })
})

describe('query plans on sqlite', () => {
  it('reads the listings, the id lookup and the prompt lookup through indexes, sorting nothing', async () => {
    const path = tempPath('plans.sqlite')
    const store = createRuntimeStore(createSqliteDialect({ path }), { origin: ORIGIN })
    await store.append(history())
    await store.close()
    const db = new Database(path, { readonly: true })
    try {
      const plan = (q: { sql: string; params: unknown[] }): string =>
        (db.prepare(`EXPLAIN QUERY PLAN ${q.sql}`).all(...q.params) as { detail: string }[])
          .map((r) => r.detail)
          .join('; ')
      const window = { since: '2026-11-01T03:00:00.000Z', until: '2026-11-01T08:00:00.000Z' }
      const cursor = { queued_at: '2026-11-01T05:00:00.000Z', origin: ORIGIN, session_id: 's10' }
      for (const [filter, index] of [
        [{ user: 'ana', ...window, limit: 100 }, 'sessions_user_time'],
        [{ user: 'ana', limit: 100 }, 'sessions_user_time'],
        [{ user: 'ana', after: cursor, limit: 100 }, 'sessions_user_time'],
        [{ status: ['error'], limit: 100 }, 'sessions_status_time'],
        [{ status: ['error'], ...window, limit: 100 }, 'sessions_status_time'],
        [{ limit: 100 }, 'sessions_time'],
        [{ after: cursor, limit: 100 }, 'sessions_time'],
      ] as const) {
        const p = plan(sessionsQuery(filter as SessionFilter))
        expect(p, JSON.stringify(filter)).toMatch(new RegExp(`INDEX ${index}\\b`))
        expect(p, JSON.stringify(filter)).not.toMatch(/TEMP B-TREE/)
      }
      expect(plan(sessionQuery('s01'))).toMatch(/USING INDEX sessions_session_id_origin \(session_id=\?\)$/)
      const prompt = plan(sessionsQuery({ prompt: { sha256: 'a', graphSha256: 'b' } }))
      expect(prompt).toMatch(/sessions_prompt_sha256/)
      expect(prompt).toMatch(/sessions_prompt_graph_sha256/)
    } finally {
      db.close()
    }
  })
})

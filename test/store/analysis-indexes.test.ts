/**
 * Issue 12: the indexes the analysis commands read through (migration 5), on both stores. The UI workflow's
 * id is copied out of the session's JSON into an indexed column, filled for rows written before the
 * migration; `diff` finds a session by id alone; and the queries use those indexes.
 */
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import type { AuditEventInput, JsonObject } from '../../src/audit/types.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { SELECT_BUCKET_RUNS_SQL } from '../../src/store/rollups.js'
import { nodeRunsQuery, sessionsQuery } from '../../src/store/sql-queries.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { sqlDialects } from '../helpers/sql-dialects.js'

const ORIGIN = 'gw/indexes'

function submitted(id: string, workflow: JsonObject | null, minute: number): AuditEventInput[] {
  const time = new Date(Date.UTC(2026, 10, 1, 12, minute)).toISOString()
  return [
    {
      kind: 'prompt.submitted',
      time,
      session_id: id,
      payload: { session: { status: 'queued', queued_at: time, workflow } },
    },
    {
      kind: 'node.finished',
      time,
      session_id: id,
      payload: {
        node_run: {
          session_id: id,
          node_id: '1',
          node_type: 'KSampler',
          timestamp_start: time,
          timestamp_end: time,
          duration_ms: 10,
          inputs: {},
          outputs: null,
          status: 'success',
          error_message: null,
          exception_type: null,
          traceback: null,
          gpu_memory_used: null,
          gpu_memory_torch: null,
          display_node: null,
          real_node_id: null,
          parent_node_id: null,
          progress: null,
        },
      },
    },
  ]
}

async function populate(store: RuntimeStore): Promise<void> {
  await store.append([
    ...submitted('a1', { id: 'wf-a', nodes: [] }, 1),
    ...submitted('b1', { id: 'wf-b', nodes: [] }, 2),
    ...submitted('a2', { id: 'wf-a', nodes: [] }, 3),
    // A numeric id is not a UI workflow id; NaN is valid in the lossless JSON but not in SQL JSON functions.
    ...submitted('n1', { id: 7 }, 4),
    ...submitted('x1', { id: 'wf-nan', scale: NaN }, 5),
    ...submitted('z1', null, 6),
  ])
}

const { dialects, tempPath } = sqlDialects('comfy-audit-indexes-')

describe.each(dialects)('analysis indexes on $name', ({ make }) => {
  it('fills workflow_id on write, filters sessions and node runs by it, and finds a session by id alone', async () => {
    const db = await make()
    const store = createRuntimeStore(db.dialect, { origin: ORIGIN })
    try {
      await populate(store)
      const ids = async (workflow: string): Promise<string[]> =>
        (await store.sessions({ workflow })).map((s) => s.session_id)
      expect(await ids('wf-a')).toEqual(['a2', 'a1'])
      expect(await ids('wf-b')).toEqual(['b1'])
      expect(await ids('wf-nan')).toEqual(['x1'])
      expect(await ids('7')).toEqual([])
      expect((await store.sessions({ workflow: 'wf-a', limit: 1 })).map((s) => s.session_id)).toEqual(['a2'])
      expect((await store.nodeRuns({ workflow: 'wf-a' })).map((r) => r.session_id)).toEqual(['a1', 'a2'])
      expect(
        (await store.sessions({ origin: ORIGIN, sessionIds: ['b1', 'z1', 'nope'] })).map((s) => s.session_id),
      ).toEqual(['z1', 'b1'])
      expect(await store.sessions({ origin: ORIGIN, sessionIds: [] })).toEqual([])
      expect((await store.session('b1'))?.session_id).toBe('b1')
    } finally {
      await store.close()
      await db.done()
    }
  })

  it('fills workflow_id for rows written before the migration', async () => {
    const db = await make()
    const first = createRuntimeStore(db.dialect, { origin: ORIGIN })
    await populate(first)
    await first.close()
    // Back to schema version 4: no column, no indexes, the migration not yet applied.
    await db.sql('DROP INDEX sessions_workflow_id')
    await db.sql('DROP INDEX IF EXISTS sessions_session_id')
    await db.sql('ALTER TABLE sessions DROP COLUMN workflow_id')
    await db.sql('DELETE FROM schema_migrations WHERE version = 5')
    const store = createRuntimeStore(db.dialect, { origin: ORIGIN })
    try {
      expect((await store.sessions({ workflow: 'wf-a' })).map((s) => s.session_id)).toEqual(['a2', 'a1'])
      expect((await store.sessions({ workflow: 'wf-b' })).map((s) => s.session_id)).toEqual(['b1'])
      // A workflow holding NaN is standard JSON too (NaN tagged, issue 10 item 12), so the migration fills it.
      expect((await store.sessions({ workflow: 'wf-nan' })).map((s) => s.session_id)).toEqual(['x1'])
      await store.rebuildDerived()
      expect((await store.sessions({ workflow: 'wf-nan' })).map((s) => s.session_id)).toEqual(['x1'])
      expect(await db.sql('SELECT version FROM schema_migrations WHERE version = 5')).toHaveLength(1)
    } finally {
      await store.close()
      await db.done()
    }
  })
})

describe.each(dialects)('analysis rollups migration on $name', ({ make }) => {
  it('fills workflow_rollups and usage_rollups from the rows stored before the migration', async () => {
    const db = await make()
    try {
      const first = createRuntimeStore(db.dialect, { origin: ORIGIN })
      await populate(first)
      const workflow = await first.workflowRollups()
      const perUser = await first.usageRollups()
      await first.close()
      // One hour: a bucket per workflow ('' for none), one per person (none here) and hour.
      expect(workflow.map((r) => [r.workflow, r.successes])).toEqual([
        ['', 2],
        ['wf-a', 2],
        ['wf-b', 1],
        ['wf-nan', 1],
      ])
      expect(perUser.map((r) => [r.user, r.sessions, r.node_runs, r.gpu_ms])).toEqual([['', 6, 6, 60]])
      // Back to before migration 6: the tables do not exist yet (migration 7 only drops indexes of 6; later
      // migrations touch other tables and stay applied).
      await db.sql('DROP TABLE workflow_rollups')
      await db.sql('DROP TABLE usage_rollups')
      await db.sql('DELETE FROM schema_migrations WHERE version IN (6, 7)')
      const store = createRuntimeStore(db.dialect, { origin: ORIGIN })
      try {
        expect(await store.workflowRollups()).toEqual(workflow)
        expect(await store.usageRollups()).toEqual(perUser)
      } finally {
        await store.close()
      }
    } finally {
      await db.done()
    }
  })
})

describe('analysis query plans on sqlite', () => {
  it('reads the workflow and session-id lookups through their indexes', async () => {
    const path = tempPath('plans.sqlite')
    const store = createRuntimeStore(createSqliteDialect({ path }), { origin: ORIGIN })
    await populate(store)
    await store.close()
    const db = new Database(path, { readonly: true })
    try {
      const plan = (q: { sql: string; params: unknown[] }): string =>
        (db.prepare(`EXPLAIN QUERY PLAN ${q.sql}`).all(...q.params) as { detail: string }[])
          .map((r) => r.detail)
          .join('; ')
      expect(plan(sessionsQuery({ workflow: 'wf-a', limit: 2 }))).toMatch(/USING INDEX sessions_workflow_id/)
      expect(plan(nodeRunsQuery({ workflow: 'wf-a' }))).toMatch(/sessions_workflow_id/)
      expect(
        plan({ sql: 'SELECT * FROM sessions WHERE session_id = ? ORDER BY origin LIMIT 1', params: ['a1'] }),
      ).toMatch(/USING INDEX sessions_session_id/)
      // One session's runs by key, not a scan of the origin in start order; rollup buckets by start time.
      expect(plan(nodeRunsQuery({ origin: ORIGIN, sessionId: 'a1' }))).toMatch(
        /USING INDEX sqlite_autoindex_node_runs_1 \(origin=\? AND session_id=\?\)/,
      )
      expect(plan(nodeRunsQuery({ origin: ORIGIN, sessionIds: ['a1', 'b1'] }))).toMatch(
        /USING INDEX sqlite_autoindex_node_runs_1 \(origin=\? AND session_id=\?\)/,
      )
      expect(plan({ sql: SELECT_BUCKET_RUNS_SQL, params: [ORIGIN, 'KSampler', 'a', 'b'] })).toMatch(
        /USING INDEX node_runs_timestamp_start/,
      )
      expect(plan(sessionsQuery({ origin: ORIGIN, sessionIds: ['a1', 'b1'] }))).toMatch(
        /USING (INDEX sqlite_autoindex_sessions_1|PRIMARY KEY)/,
      )
    } finally {
      db.close()
    }
  })
})

/**
 * The read queries both dialects share (events by page, sessions by filter, node runs, session counts), written
 * once with `?` placeholders as in sql-common.ts.
 */
import type { SessionStatus } from '../audit/types.js'
import {
  SESSION_USER_COLUMN,
  SESSION_WORKFLOW_COLUMN,
  SESSION_PROMPT_GRAPH_COLUMN,
  type ColumnValue,
} from './derived-columns.js'
import type { EventFilter, NodeRunFilter, SessionCount, SessionFilter, StoredEventRow } from './store.js'
import { SESSION_LIST_ORDER } from './query-indexes.js'
import {
  EVENT_PAGE_SIZE,
  EVENT_READ_COLUMNS,
  rowToStoredEvent,
  type SqlQuery,
  type SqlRow,
} from './sql-common.js'

function checkCount(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`)
  }
}

/**
 * One page of the events query: rows after `after` (exclusive) in (origin, seq) order, at most `pageSize`.
 * Keyset pagination keeps pages consistent without holding a cursor (or a connection) between them.
 */
export function eventsPageQuery(
  filter: EventFilter,
  after: { origin: string; seq: number } | undefined,
  pageSize: number,
): SqlQuery {
  checkCount('limit', filter.limit)
  const where: string[] = []
  const params: ColumnValue[] = []
  const add = (clause: string, ...values: ColumnValue[]): void => {
    where.push(clause)
    params.push(...values)
  }
  if (filter.origin !== undefined) add('origin = ?', filter.origin)
  if (filter.fromSeq !== undefined) add('seq >= ?', filter.fromSeq)
  if (filter.toSeq !== undefined) add('seq <= ?', filter.toSeq)
  if (filter.sessionId !== undefined) add('session_id = ?', filter.sessionId)
  if (filter.kinds !== undefined) {
    if (filter.kinds.length === 0) where.push('1 = 0')
    else add(`kind IN (${filter.kinds.map(() => '?').join(', ')})`, ...filter.kinds)
  }
  if (filter.since !== undefined) add('time >= ?', filter.since)
  if (filter.until !== undefined) add('time < ?', filter.until)
  if (after) {
    // With the origin fixed, `seq > ?` is a range on the primary key (origin, seq): each page is one seek.
    // The row value next to `origin = ?` would only seek on the origin (SQLite's planner takes the equality
    // and filters the row value row by row), so every page rescanned the log from seq 0 and paging through a
    // log was quadratic. Across origins the row value alone is a range on the key in both dialects.
    if (filter.origin !== undefined) add('seq > ?', after.seq)
    else add('(origin, seq) > (?, ?)', after.origin, after.seq)
  }
  return {
    sql:
      `SELECT ${EVENT_READ_COLUMNS.join(', ')} FROM events` +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY origin, seq LIMIT ${pageSize}`,
    params,
  }
}

/**
 * Streams raw event rows page by page through `page`, honouring `filter.limit` across pages.
 */
export async function* pagedEvents(
  filter: EventFilter,
  page: (query: SqlQuery) => Promise<SqlRow[]>,
): AsyncGenerator<StoredEventRow> {
  let remaining = filter.limit ?? Infinity
  let after: { origin: string; seq: number } | undefined
  while (remaining > 0) {
    const size = Math.min(EVENT_PAGE_SIZE, remaining)
    const rows = await page(eventsPageQuery(filter, after, size))
    for (const row of rows) {
      const stored = rowToStoredEvent(row)
      after = { origin: stored.origin, seq: stored.seq }
      yield stored
    }
    remaining -= rows.length
    if (rows.length < size) return
  }
}

/** The sessions query: newest first by queued_at (sessions without one last), ties by key. */
export function sessionsQuery(filter: SessionFilter): SqlQuery {
  checkCount('limit', filter.limit)
  checkCount('offset', filter.offset)
  const where: string[] = []
  const params: ColumnValue[] = []
  const add = (clause: string, ...values: ColumnValue[]): void => {
    where.push(clause)
    params.push(...values)
  }
  if (filter.origin !== undefined) add('origin = ?', filter.origin)
  if (filter.since !== undefined) add('queued_at >= ?', filter.since)
  if (filter.until !== undefined) add('queued_at < ?', filter.until)
  if (filter.after !== undefined) {
    // Keyset: the rows after the cursor in the listing's order. `queued_at <= ?` is the bound the index seeks to.
    const a = filter.after
    add(
      'queued_at <= ? AND (queued_at < ? OR origin > ? OR (origin = ? AND session_id > ?))',
      a.queued_at,
      a.queued_at,
      a.origin,
      a.origin,
      a.session_id,
    )
  }
  if (filter.status !== undefined) {
    if (filter.status.length === 0) where.push('1 = 0')
    else add(`status IN (${filter.status.map(() => '?').join(', ')})`, ...filter.status)
  }
  if (filter.user !== undefined) add(`${SESSION_USER_COLUMN} = ?`, filter.user)
  if (filter.workflow !== undefined) add(`${SESSION_WORKFLOW_COLUMN} = ?`, filter.workflow)
  if (filter.prompt !== undefined) {
    add(
      `(prompt_sha256 = ? OR ${SESSION_PROMPT_GRAPH_COLUMN} = ?)`,
      filter.prompt.sha256,
      filter.prompt.graphSha256,
    )
  }
  if (filter.sessionIds !== undefined) {
    if (filter.sessionIds.length === 0) where.push('1 = 0')
    else add(`session_id IN (${filter.sessionIds.map(() => '?').join(', ')})`, ...filter.sessionIds)
  }
  // With a time bound every row has a queue time: saying so lets the planner seek the (column, queued_at IS
  // NULL, queued_at DESC, …) indexes of migration 10 to the window and read it in order, sorting nothing.
  const timed = filter.since !== undefined || filter.until !== undefined || filter.after !== undefined
  if (timed) where.push('(queued_at IS NULL) = FALSE')
  let sql =
    'SELECT * FROM sessions' +
    (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
    // NULLs sort differently in SQLite and PostgreSQL; put them last explicitly in both.
    (timed ? ' ORDER BY queued_at DESC, origin, session_id' : ` ORDER BY ${SESSION_LIST_ORDER}`)
  if (filter.limit !== undefined || filter.offset !== undefined) {
    // OFFSET needs a LIMIT in SQLite, and `LIMIT -1` means "no limit" only there: use a bound both accept.
    sql += ` LIMIT ${filter.limit ?? Number.MAX_SAFE_INTEGER} OFFSET ${filter.offset ?? 0}`
  }
  return { sql, params }
}

/** Sessions per origin and status, counted by the database (`status` reads these, not every row). */
export const SESSION_COUNTS_SQL =
  'SELECT origin, status, COUNT(*) AS count FROM sessions GROUP BY origin, status ORDER BY origin, status'

/** A row of {@link SESSION_COUNTS_SQL}; PostgreSQL answers COUNT as a bigint in text. */
export function rowToSessionCount(row: SqlRow): SessionCount {
  return { origin: String(row.origin), status: String(row.status) as SessionStatus, count: Number(row.count) }
}

/** The columns of {@link NodeRunFilter.lean}: the others (JSON among them) read back null. */
const LEAN_NODE_RUN_COLUMNS =
  'origin, session_id, node_id, node_type, timestamp_start, timestamp_end, duration_ms, status, gpu_memory_used'

/** The node runs query: by timestamp_start, then key. */
export function nodeRunsQuery(filter: NodeRunFilter): SqlQuery {
  checkCount('limit', filter.limit)
  const where: string[] = []
  const params: ColumnValue[] = []
  const add = (clause: string, value: ColumnValue): void => {
    where.push(clause)
    params.push(value)
  }
  if (filter.origin !== undefined) add('origin = ?', filter.origin)
  if (filter.sessionId !== undefined) add('session_id = ?', filter.sessionId)
  if (filter.nodeType !== undefined) add('node_type = ?', filter.nodeType)
  if (filter.since !== undefined) add('timestamp_start >= ?', filter.since)
  if (filter.until !== undefined) add('timestamp_start < ?', filter.until)
  if (filter.sessionIds !== undefined) {
    if (filter.sessionIds.length === 0) where.push('1 = 0')
    else {
      where.push(`session_id IN (${filter.sessionIds.map(() => '?').join(', ')})`)
      params.push(...filter.sessionIds)
    }
  }
  if (filter.workflow !== undefined) {
    add(
      // A row-value IN, so the planner can read the workflow's sessions by index and their runs by key.
      `(origin, session_id) IN (SELECT origin, session_id FROM sessions WHERE ${SESSION_WORKFLOW_COLUMN} = ?)`,
      filter.workflow,
    )
  }
  return {
    sql:
      `SELECT ${filter.lean ? LEAN_NODE_RUN_COLUMNS : '*'} FROM node_runs` +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ' ORDER BY timestamp_start, origin, session_id, node_id' +
      (filter.limit !== undefined ? ` LIMIT ${filter.limit}` : ''),
    params,
  }
}

/**
 * The audit API's record routes: sessions and node runs as exported rows (`/_audit/api/sessions`,
 * `/_audit/api/sessions/{id}`, `/_audit/api/node-runs`), the dashboard's run table (`/_audit/api/runs`) and
 * its live updates (`/_audit/api/live`).
 */
import { asJsonValue } from '../audit/json-value.js'
import { SESSION_STATUSES, type SessionStatus } from '../audit/types.js'
import type { NodeRunFilter, SessionCursor, SessionFilter } from '../store/store.js'
import { badRequest, countParam, notFound, send, timeRange, type ApiHandler } from './audit-api-http.js'
import { nodeRunExportRow, sessionExportRow } from './format.js'
import { serveLiveUpdates } from './live-updates.js'
import { parseRunsQuery, queryRuns } from './runs-query.js'

/** The run table looks at this many of the newest sessions (after the user and status filters). */
const MAX_TABLE_SESSIONS = 20_000

export const listSessions: ApiHandler = async ({ res, url, options }) => {
  const filter: { -readonly [K in keyof SessionFilter]: SessionFilter[K] } = {}
  const range = timeRange(url)
  if (!range.ok) return badRequest(res, range.reason)
  Object.assign(filter, range.value)
  const status = url.searchParams.get('status')
  if (status !== null) {
    const list = status.split(',')
    const unknown = list.find((s) => !(SESSION_STATUSES as readonly string[]).includes(s))
    if (unknown !== undefined) return badRequest(res, `status: unknown status ${JSON.stringify(unknown)}`)
    filter.status = list as SessionStatus[]
  }
  const user = url.searchParams.get('user')
  if (user !== null) filter.user = user
  const limit = countParam(url, 'limit', 100)
  const offset = countParam(url, 'offset', 0)
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    return badRequest(res, 'limit: expected 1..10000')
  if (!Number.isInteger(offset) || offset < 0) return badRequest(res, 'offset: expected an integer >= 0')
  filter.limit = limit
  filter.offset = offset
  const cursor = url.searchParams.get('cursor')
  if (cursor !== null) {
    const after = decodeCursor(cursor)
    if (after === null) return badRequest(res, 'cursor: not a next_cursor this API gave')
    filter.after = after
  }
  const sessions = await options.store.sessions(filter)
  // The next page seeks from the last row instead of skipping `offset` rows (none once the queue times end).
  const last = sessions.length === limit ? sessions[sessions.length - 1] : undefined
  const next = last?.queued_at
    ? encodeCursor({ queued_at: last.queued_at, origin: last.origin, session_id: last.session_id })
    : null
  send(res, 200, { sessions: sessions.map(sessionExportRow), next_cursor: next })
  return true
}

function encodeCursor(c: SessionCursor): string {
  return Buffer.from(JSON.stringify([c.queued_at, c.origin, c.session_id])).toString('base64url')
}

function decodeCursor(text: string): SessionCursor | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'string')) return null
    const [queued_at, origin, session_id] = v as [string, string, string]
    return { queued_at, origin, session_id }
  } catch {
    return null
  }
}

export const listRuns: ApiHandler = async ({ res, url, options }) => {
  const q = parseRunsQuery(url.searchParams)
  if (!q.ok) return badRequest(res, q.reason)
  // `user` scopes what is counted at all (an artist's own runs); the rest filter and count in memory over the
  // newest sessions of the time range.
  const scope = url.searchParams.get('user')
  const sessions = await options.store.sessions({
    ...(scope !== null ? { user: scope } : {}),
    ...(q.value.since !== undefined ? { since: q.value.since } : {}),
    ...(q.value.until !== undefined ? { until: q.value.until } : {}),
    limit: MAX_TABLE_SESSIONS,
  })
  send(res, 200, asJsonValue(queryRuns(sessions, q.value)))
  return true
}

export const liveUpdates: ApiHandler = async ({ req, res, url, options }) => {
  if (!options.onCommitted) return false
  await serveLiveUpdates(req, res, {
    subscribe: options.onCommitted,
    user: url.searchParams.get('user') ?? undefined,
    owner: async (id) => (await options.store.session(id))?.submitter?.user ?? null,
    ...(options.signal ? { signal: options.signal } : {}),
  })
  return true
}

/** One session with its prompt, workflow and node runs; `id` is the decoded path segment. */
export async function oneSession(call: Parameters<ApiHandler>[0], id: string): Promise<boolean> {
  const { res, url, options } = call
  const session = await options.store.session(id, url.searchParams.get('origin') ?? undefined)
  if (!session) return notFound(res, `no session ${id}`)
  const runs = await options.store.nodeRuns({ sessionId: id, origin: session.origin })
  send(res, 200, {
    session: { ...sessionExportRow(session), prompt: session.prompt, workflow: session.workflow },
    node_runs: runs.map(nodeRunExportRow),
  })
  return true
}

export const listNodeRuns: ApiHandler = async ({ res, url, options }) => {
  const filter: { -readonly [K in keyof NodeRunFilter]: NodeRunFilter[K] } = {}
  const nodeType = url.searchParams.get('node_type')
  if (nodeType !== null) filter.nodeType = nodeType
  const session = url.searchParams.get('session') ?? url.searchParams.get('session_id')
  if (session !== null) filter.sessionId = session
  const range = timeRange(url)
  if (!range.ok) return badRequest(res, range.reason)
  Object.assign(filter, range.value)
  const limit = countParam(url, 'limit', 1000)
  if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
    return badRequest(res, `limit: expected 1..100000, got ${JSON.stringify(url.searchParams.get('limit'))}`)
  }
  filter.limit = limit
  const runs = await options.store.nodeRuns(filter)
  send(res, 200, { node_runs: runs.map(nodeRunExportRow) })
  return true
}

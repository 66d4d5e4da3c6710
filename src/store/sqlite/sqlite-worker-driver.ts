/**
 * The SQLite driver on a worker thread. better-sqlite3 is synchronous: on the gateway's own thread every commit
 * (with its fsync) would stall proxying for its duration. Here the main thread only posts messages; the worker
 * owns the database and answers each call. Calls are answered in order, one at a time, as the runtime store
 * already serializes writes for SQLite.
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { parseJson, stringifyJson } from '../../audit/json.js'
import type { AuditEvent } from '../../audit/types.js'
import {
  DERIVED_TABLES,
  rowToNodeRun,
  rowToOutput,
  rowToSession,
  sessionQuery,
  derivedTableQuery,
  storedToEvent,
  type SqlQuery,
  type SqlRow,
} from '../sql-common.js'
import {
  SESSION_COUNTS_SQL,
  nodeRunsQuery,
  pagedEvents,
  rowToSessionCount,
  sessionsQuery,
} from '../sql-queries.js'
import type { EventFilter, StoreDriver, StoredEventRow } from '../store.js'
import type { SqliteDialectOptions } from './sqlite-dialect.js'

/** Messages to the worker. */
export interface WorkerCall {
  readonly id: number
  readonly method: string
  readonly args: unknown[]
}

/** Answers from the worker. */
export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | {
      readonly id: number
      readonly ok: false
      readonly error: { message: string; name: string; code?: string }
    }

/**
 * An event as posted to the worker: the payload as JSON text. A structured clone would copy the values but
 * not the number spellings the JSON module keeps beside them (`cfg: 1.0`, see audit/json.ts); text carries both.
 */
export interface PostedEvent extends Omit<AuditEvent, 'payload'> {
  readonly payload: string
}

/** The events to post to the worker. */
function postedEvents(events: readonly AuditEvent[]): PostedEvent[] {
  return events.map((event) => ({ ...event, payload: stringifyJson(event.payload) }))
}

/** The events the main thread posted, read back on the worker. */
export function receivedEvents(posted: readonly PostedEvent[]): AuditEvent[] {
  return posted.map((event) => {
    const parsed = parseJson(event.payload)
    if (
      !parsed.ok ||
      typeof parsed.value !== 'object' ||
      parsed.value === null ||
      Array.isArray(parsed.value)
    )
      throw new Error(`SQLite worker: posted payload of ${event.origin}#${event.seq} does not read back`)
    return { ...event, payload: parsed.value }
  })
}

/** Starts the worker: the compiled `.js` in production; from TypeScript sources (tests, tsx) through tsx's loader. */
function startWorker(options: SqliteDialectOptions): Worker {
  const fromSources = import.meta.url.endsWith('.ts')
  const entry = new URL(fromSources ? './sqlite-worker.ts' : './sqlite-worker.js', import.meta.url)
  const workerData = { ...options, thread: 'main' }
  if (!fromSources) return new Worker(entry, { workerData })
  const tsx = pathToFileURL(
    createRequire(import.meta.url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(code, { eval: true, workerData })
}

export function createWorkerSqliteDriver(options: SqliteDialectOptions): StoreDriver {
  let worker: Worker | null = null
  let nextId = 1
  let failure: Error | null = null
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()

  const fail = (error: Error): void => {
    failure = error
    for (const w of waiting.values()) w.reject(error)
    waiting.clear()
  }

  const ensure = (): Worker => {
    if (worker) return worker
    const w = startWorker(options)
    w.on('message', (reply: WorkerReply) => {
      const pending = waiting.get(reply.id)
      if (!pending) return
      waiting.delete(reply.id)
      if (reply.ok) pending.resolve(reply.value)
      else {
        const error = Object.assign(new Error(reply.error.message), {
          name: reply.error.name,
          code: reply.error.code,
        })
        pending.reject(error)
      }
    })
    w.on('error', (error) => fail(error))
    w.on('exit', (code) => {
      if (waiting.size > 0) fail(new Error(`SQLite worker exited (code ${code}) with calls pending`))
      worker = null
    })
    worker = w
    return w
  }

  const call = <T>(method: string, ...args: unknown[]): Promise<T> => {
    if (failure) return Promise.reject(failure)
    const id = nextId++
    return new Promise<T>((resolve, reject) => {
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject })
      ensure().postMessage({ id, method, args } satisfies WorkerCall)
    })
  }

  const rawEvents = (filter: EventFilter): AsyncGenerator<StoredEventRow> =>
    pagedEvents(filter, (query: SqlQuery) => call<SqlRow[]>('queryRows', query))

  const driver: StoreDriver = {
    // An AbortSignal cannot cross threads; a start-up abort is checked here instead.
    init: async (signal) => {
      signal?.throwIfAborted()
      await call('init')
    },
    append: (batch) => call('append', postedEvents(batch.events)),
    lastSeq: (origin) => call('lastSeq', origin),
    origins: () => call('origins'),
    sessionIds: (origin) => call('sessionIds', origin),
    async *events(filter: EventFilter): AsyncGenerator<AuditEvent> {
      for await (const row of rawEvents(filter)) yield storedToEvent(row)
    },
    rawEvents,
    // Records are read as rows and decoded here, not cloned from the worker's decoding: JSON columns keep
    // the number spellings they were stored with (see PostedEvent).
    sessions: async (filter) => (await call<SqlRow[]>('queryRows', sessionsQuery(filter))).map(rowToSession),
    session: async (sessionId, origin) => {
      const [row] = await call<SqlRow[]>('queryRows', sessionQuery(sessionId, origin))
      return row ? rowToSession(row) : undefined
    },
    nodeRuns: async (filter) => (await call<SqlRow[]>('queryRows', nodeRunsQuery(filter))).map(rowToNodeRun),
    rollups: (filter) => call('rollups', filter),
    workflowRollups: (filter) => call('workflowRollups', filter),
    usageRollups: (filter) => call('usageRollups', filter),
    outputsBySha256: (sha256) => call('outputsBySha256', sha256),
    derivedRows: async (origin) => {
      const [sessions, nodeRuns, outputs] = await Promise.all(
        DERIVED_TABLES.map((table) => call<SqlRow[]>('queryRows', derivedTableQuery(table, origin))),
      )
      return {
        sessions: (sessions ?? []).map(rowToSession),
        nodeRuns: (nodeRuns ?? []).map(rowToNodeRun),
        outputs: (outputs ?? []).map(rowToOutput),
      }
    },
    sessionCounts: async () =>
      (await call<SqlRow[]>('queryRows', { sql: SESSION_COUNTS_SQL, params: [] })).map(rowToSessionCount),
    rebuildDerived: (origin) => call('rebuildDerived', origin),
    addCheckpoint: (checkpoint) => call('addCheckpoint', checkpoint),
    checkpoints: (origin) => call('checkpoints', origin),
    prunePayloads: (request) => call('prunePayloads', request),
    getState: (key) => call('getState', key),
    setState: (key, value) => call('setState', key, value),
    close: async () => {
      if (!worker) return
      const w = worker
      try {
        await call('close')
      } finally {
        await w.terminate()
        worker = null
      }
    },
  }
  return driver
}

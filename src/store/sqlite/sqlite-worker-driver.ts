/**
 * The SQLite driver on a worker thread. better-sqlite3 is synchronous: on the gateway's own thread every commit
 * (with its fsync) would stall proxying for its duration. Here the main thread only posts messages; the worker
 * owns the database and answers each call. Calls are answered in order, one at a time, as the runtime store
 * already serializes writes for SQLite.
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { AuditEvent } from '../../audit/types.js'
import { pagedEvents, storedToEvent, type SqlQuery, type SqlRow } from '../sql-common.js'
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
    append: (events) => call('append', events),
    lastSeq: (origin) => call('lastSeq', origin),
    origins: () => call('origins'),
    sessionIds: (origin) => call('sessionIds', origin),
    async *events(filter: EventFilter): AsyncGenerator<AuditEvent> {
      for await (const row of rawEvents(filter)) yield storedToEvent(row)
    },
    rawEvents,
    sessions: (filter) => call('sessions', filter),
    session: (sessionId, origin) => call('session', sessionId, origin),
    nodeRuns: (filter) => call('nodeRuns', filter),
    rollups: (filter) => call('rollups', filter),
    workflowRollups: (filter) => call('workflowRollups', filter),
    usageRollups: (filter) => call('usageRollups', filter),
    outputsBySha256: (sha256) => call('outputsBySha256', sha256),
    derivedRows: (origin) => call('derivedRows', origin),
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

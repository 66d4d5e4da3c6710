/**
 * `GET /_audit/api/live`: a Server-Sent Events stream telling the dashboard which sessions changed, as their
 * events are committed, so the run table and an open run refresh themselves. Only ids travel; the page reads
 * the rows through the usual routes (and their access checks). With a `user` scope (an artist) only that
 * person's sessions are announced.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AuditEvent } from '../audit/types.js'
import type { LiveSessionsEvent } from './dashboard-types.js'

/** Options of {@link serveLiveUpdates}. */
interface LiveUpdatesOptions {
  /** Subscribes to committed events; returns the unsubscribe function. */
  readonly subscribe: (listener: (events: readonly AuditEvent[]) => void) => () => void
  /** Announce only this person's sessions. */
  readonly user?: string
  /** Who submitted a session (null: nobody known). */
  readonly owner: (sessionId: string) => Promise<string | null>
  /** Ends the stream (gateway shutdown). */
  readonly signal?: AbortSignal
  /** Commits closer together than this are announced as one message, ms (default 250). */
  readonly coalesceMillis?: number
  /** A comment line this often keeps proxies from closing an idle stream, ms (default 15 000). */
  readonly heartbeatMillis?: number
}

/** Serves one stream until the client goes away or `signal` aborts. */
export async function serveLiveUpdates(
  req: IncomingMessage,
  res: ServerResponse,
  options: LiveUpdatesOptions,
): Promise<void> {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-accel-buffering': 'no',
  })
  res.write('retry: 3000\n\n')
  const owners = new Map<string, string | null>()
  let pending = new Set<string>()
  let timer: NodeJS.Timeout | null = null
  let chain: Promise<void> = Promise.resolve()

  const flush = (): void => {
    timer = null
    const ids = [...pending]
    pending = new Set()
    // Owner lookups run one batch at a time, so announcements keep commit order.
    chain = chain.then(async () => {
      let visible = ids
      if (options.user !== undefined) {
        visible = []
        for (const id of ids) {
          if (!owners.has(id)) owners.set(id, await options.owner(id).catch(() => null))
          if (owners.get(id) === options.user) visible.push(id)
        }
      }
      if (visible.length === 0 || res.writableEnded) return
      const message: LiveSessionsEvent = { session_ids: visible }
      res.write(`event: sessions\ndata: ${JSON.stringify(message)}\n\n`)
    })
  }

  const unsubscribe = options.subscribe((events) => {
    for (const e of events) if (e.session_id !== null) pending.add(e.session_id)
    if (pending.size > 0 && timer === null) {
      timer = setTimeout(flush, options.coalesceMillis ?? 250)
      timer.unref()
    }
  })
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), options.heartbeatMillis ?? 15_000)
  heartbeat.unref()

  await new Promise<void>((resolve) => {
    const done = (): void => {
      options.signal?.removeEventListener('abort', done)
      resolve()
    }
    if (options.signal?.aborted) return done()
    options.signal?.addEventListener('abort', done)
    req.on('close', done)
    res.on('close', done)
  })
  unsubscribe()
  clearInterval(heartbeat)
  if (timer !== null) clearTimeout(timer)
  await chain
  if (!res.writableEnded) res.end()
}

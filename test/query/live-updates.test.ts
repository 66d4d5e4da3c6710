/**
 * `/_audit/api/live` over a real HTTP server: commits become `sessions` messages, an artist's stream names
 * only their own sessions, and shutdown ends every stream.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/types.js'
import { serveLiveUpdates } from '../../src/query/live-updates.js'

type Listener = (events: readonly AuditEvent[]) => void

function event(sessionId: string | null, seq: number): AuditEvent {
  return {
    kind: 'node.finished',
    seq,
    time: '2026-12-01T00:00:00.000Z',
    session_id: sessionId,
    payload: {},
  } as unknown as AuditEvent
}

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections()
    await new Promise((r) => s.close(r))
  }
})

async function start(opts: {
  user?: string
  signal?: AbortSignal
}): Promise<{ url: string; commit: Listener; subscribers: () => number }> {
  const listeners = new Set<Listener>()
  const owners: Record<string, string> = { 'p-alice': 'alice', 'p-bob': 'bob' }
  const server = createServer((req, res) => {
    void serveLiveUpdates(req, res, {
      subscribe: (l) => {
        listeners.add(l)
        return () => listeners.delete(l)
      },
      owner: async (id) => owners[id] ?? null,
      coalesceMillis: 20,
      ...(opts.user ? { user: opts.user } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    })
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    commit: (events) => listeners.forEach((l) => l(events)),
    subscribers: () => listeners.size,
  }
}

/** Reads the stream until `count` `sessions` messages arrived; returns their data. */
async function messages(body: ReadableStream<Uint8Array>, count: number): Promise<string[][]> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  const found: string[][] = []
  while (found.length < count) {
    const { value, done } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
    let end: number
    while ((end = text.indexOf('\n\n')) >= 0) {
      const block = text.slice(0, end)
      text = text.slice(end + 2)
      const data = /^event: sessions\ndata: (.*)$/m.exec(block)
      if (data) found.push((JSON.parse(data[1]!) as { session_ids: string[] }).session_ids)
    }
  }
  await reader.cancel()
  return found
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s')
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('live updates (SSE)', () => {
  it('announces the sessions of committed events, one message per burst, none for gateway events', async () => {
    const live = await start({})
    const res = await fetch(live.url)
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    await until(() => live.subscribers() === 1)
    live.commit([event(null, 1)])
    live.commit([event('p-alice', 2), event('p-alice', 3)])
    live.commit([event('p-bob', 4)])
    expect(await messages(res.body!, 1)).toEqual([['p-alice', 'p-bob']])
    await until(() => live.subscribers() === 0)
  })

  it('tells an artist only about their own sessions', async () => {
    const live = await start({ user: 'bob' })
    const res = await fetch(live.url)
    await until(() => live.subscribers() === 1)
    live.commit([event('p-alice', 1), event('p-unknown', 2)])
    // Whether these two bursts go out apart or together, only bob's session may be named.
    live.commit([event('p-bob', 3), event('p-alice', 4)])
    expect(await messages(res.body!, 1)).toEqual([['p-bob']])
  })

  it('ends every stream when the gateway shuts down', async () => {
    const shutdown = new AbortController()
    const live = await start({ signal: shutdown.signal })
    const res = await fetch(live.url)
    await until(() => live.subscribers() === 1)
    shutdown.abort()
    expect(await res.text()).toBe('retry: 3000\n\n')
    expect(live.subscribers()).toBe(0)
  })
})

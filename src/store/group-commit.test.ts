import { createServer } from 'node:net'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { isTransientStoreError } from './group-commit.js'

/** A port nothing listens on: bound, then closed. */
async function deadPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** The error a real `pg` client gives for `run`, caught. */
async function pgError(run: (client: pg.Client) => Promise<unknown>, client: pg.Client): Promise<unknown> {
  try {
    await run(client)
  } catch (error) {
    return error
  }
  throw new Error('expected the client to fail')
}

describe('isTransientStoreError', () => {
  // A commit that fails with one of these is retried; any other error fails its append, so a connection
  // problem that is not recognised here loses events while PostgreSQL restarts.
  it("recognises pg's errors for a client whose connection failed or was closed", async () => {
    const port = await deadPort()
    const refused = new pg.Client({ host: '127.0.0.1', port, connectionTimeoutMillis: 2000 })
    const connectError = await pgError((c) => c.connect(), refused)
    const afterFailure = await pgError((c) => c.query('SELECT 1'), refused)
    const closed = new pg.Client({ host: '127.0.0.1', port })
    await closed.end()
    const afterEnd = await pgError((c) => c.query('SELECT 1'), closed)

    expect(String(afterFailure)).toMatch(/connection terminated/i)
    expect(String(afterEnd)).toMatch(/not queryable/)
    for (const error of [connectError, afterFailure, afterEnd])
      expect(isTransientStoreError(error)).toBe(true)
  })

  it('does not retry an error that will not pass', () => {
    expect(isTransientStoreError(new Error('UNIQUE constraint failed: events.origin, events.seq'))).toBe(
      false,
    )
    expect(isTransientStoreError(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false)
    expect(isTransientStoreError('connection terminated')).toBe(false)
  })
})

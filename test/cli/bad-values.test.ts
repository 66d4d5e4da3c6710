/**
 * Issue 10 item 11: bad values get a clear message (CLI) or a 400 naming the parameter (API), times take one
 * syntax everywhere (`prune --older-than` accepts ISO dates like `--since`), and `prune --dry-run` changes
 * nothing.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runPrune } from '../../src/cli/commands/ledger-commands.js'
import { createAuditApi } from '../../src/query/audit-api.js'
import type { RuntimeStore } from '../../src/store/runtime-store.js'
import { cli } from '../helpers/cli.js'
import { ORIGIN, populate, withDb, type Populated } from '../ledger/ledger-fixture.js'

let p: Populated
let opts: { data: string; config: string }
let store: RuntimeStore
let server: Server
let base: string
beforeAll(async () => {
  p = await populate(3, 5)
  const config = join(p.dir, 'config.json')
  await writeFile(config, JSON.stringify({ origin: ORIGIN }))
  opts = { data: p.dir, config }
  store = p.open()
  await store.init()
  const api = createAuditApi({ store, upstreamHealthy: () => true, draining: () => false })
  server = createServer((req, res) => {
    void api(req, res).then((served) => {
      if (!served) res.writeHead(404).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve))
  await store.close()
  await rm(p.dir, { recursive: true, force: true })
})

const payloads = (): string =>
  JSON.stringify(withDb(p.dbPath, (db) => db.prepare('SELECT * FROM events ORDER BY seq').all()))

describe('issue 10 item 11: bad values in the API', () => {
  it.each([
    ['/_audit/api/sessions?limit=-5', /limit/],
    ['/_audit/api/sessions?limit=abc', /limit/],
    ['/_audit/api/sessions?limit=', /limit/],
    ['/_audit/api/sessions?limit=1e2', /limit/],
    ['/_audit/api/sessions?status=bogus', /status: unknown status "bogus"/],
    ['/_audit/api/node-runs?limit=-5', /limit/],
    ['/_audit/api/node-runs?limit=abc', /limit/],
    ['/_audit/api/node-runs?limit=0', /limit/],
  ])('GET %s is a 400 naming the parameter', async (path, message) => {
    const res = await fetch(base + path)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toMatch(message)
  })

  it('a good limit still answers', async () => {
    const res = await fetch(`${base}/_audit/api/node-runs?limit=2`)
    expect(res.status).toBe(200)
    expect(((await res.json()) as { node_runs: unknown[] }).node_runs).toHaveLength(2)
  })
})

describe('issue 10 item 11: prune takes one time syntax and --dry-run', () => {
  it('--dry-run with an ISO date says what it would prune and changes nothing', async () => {
    const before = payloads()
    const r = await runPrune({ ...opts, olderThan: '2026-01-01T00:03:00Z', dryRun: true })
    expect(r.exitCode).toBe(0)
    expect(r.output).toMatch(/^dry run: would prune [1-9]\d* event payloads before 2026-01-01T00:03:00.000Z/)
    expect(r.output).toContain('nothing changed')
    expect(payloads()).toBe(before)
  })

  it('a bad --older-than names the value and both accepted forms', async () => {
    await expect(runPrune({ ...opts, olderThan: 'last tuesday' })).rejects.toThrow(
      /--older-than: not a time: "last tuesday".*90d.*2026-11-01/,
    )
  })
})

describe('issue 10 item 11: bad values in the CLI', () => {
  it.each([
    [['--limit', '-5'], /--limit: expected a whole number/],
    [['--limit', 'abc'], /--limit: expected a whole number/],
    [['--status', 'bogus'], /--status: unknown status "bogus"/],
  ])('sessions %j: one line and a non-zero exit', async (args, message) => {
    const r = await cli('sessions', '--data', p.dir, '--config', opts.config, ...args)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })
})

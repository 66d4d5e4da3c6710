/**
 * Issue 12: the analysis routes of the audit API give the CLI's JSON, and an artist (whose requests the
 * access guard narrows to `?user=` themselves) sees only their own runs in every aggregate.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAuditApi } from '../../src/query/audit-api.js'
import { runAnalysis } from '../../src/query/analysis/analysis-request.js'
import { authorize } from '../../src/identity/policy.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { PLANTED, generateHistory, type GeneratedHistory } from '../helpers/history-generator.js'
import { cli } from '../helpers/cli.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

let store: RuntimeStore
let server: Server
let base: string
let history: GeneratedHistory
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'analysis-api-'))
  store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), {
    origin: 'comfy-audit/api',
  })
  history = await generateHistory(store, { seed: 3, sessions: 200 })
  const api = createAuditApi({ store, upstreamHealthy: () => true, draining: () => false })
  server = createServer((req, res) => {
    void api(req, res).then((served) => {
      if (!served) res.writeHead(404).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}, 60_000)

afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()))
  await store?.close()
  await rm(dir, { recursive: true, force: true })
})

async function get(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(base + path)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** The URL an artist's request reaches the API with, after the policy's narrowing. */
function asArtist(user: string, path: string): string {
  const url = new URL(path, 'http://gateway')
  const d = authorize(
    { role: 'artist', user, method: 'GET', path: url.pathname, query: url.searchParams },
    { owners: new Map(), running: [] },
    { visibility: 'own', adminOnlyPaths: [] },
  )
  if (d.action !== 'allow') throw new Error(`denied: ${JSON.stringify(d)}`)
  if (d.auditUser !== undefined) url.searchParams.set('user', d.auditUser)
  return url.pathname + url.search
}

describe('analysis HTTP API', () => {
  it.each([
    ['stats', '/_audit/api/stats?by=user'],
    ['usage', '/_audit/api/usage?by=day'],
    ['trends', '/_audit/api/trends?node_type=KSampler&bucket=1d'],
    ['regressions', '/_audit/api/regressions?baseline=2d&recent=1d&min_samples=10'],
    ['correlate', '/_audit/api/correlate?node_type=VAEDecode'],
    ['suggest', '/_audit/api/suggest?node_type=KSampler&where=width%3D1024,height%3D1024'],
    ['diff', `/_audit/api/diff?workflow=${PLANTED.loraWorkflow}&last=2`],
  ] as const)('%s answers with the same JSON as the analysis function', async (command, path) => {
    const r = await get(path)
    expect(r.status).toBe(200)
    const params = Object.fromEntries(new URL(path, base).searchParams)
    const direct = await runAnalysis(store, command, params)
    if (!direct.ok) throw new Error(direct.reason)
    // Windows computed from "now" differ by the milliseconds between the two calls.
    if (command === 'regressions') {
      expect((r.body as { regressions: unknown }).regressions).toEqual(
        JSON.parse(JSON.stringify(direct.value)).regressions,
      )
    } else expect(r.body).toEqual(JSON.parse(JSON.stringify(direct.value)))
  })

  it('names the bad parameter with a 400', async () => {
    expect(await get('/_audit/api/stats?by=colour')).toEqual({
      status: 400,
      body: { error: 'by: "colour" is not one of node_type, user, model, origin, day, hour' },
    })
    expect((await get('/_audit/api/trends')).body).toEqual({ error: 'trends: node_type is required' })
    expect((await get('/_audit/api/stats?since=yesterday')).status).toBe(400)
  })

  it('shows an artist only their own runs in every aggregate', async () => {
    const usage = await get(asArtist('ana', '/_audit/api/usage?by=user'))
    expect((usage.body.groups as { key: unknown }[]).map((g) => g.key)).toEqual([{ user: 'ana' }])
    const stats = await get(asArtist('ana', '/_audit/api/stats?by=user'))
    expect((stats.body.groups as { key: unknown }[]).map((g) => g.key)).toEqual([{ user: 'ana' }])
    const all = await get('/_audit/api/stats?by=node_type')
    const own = await get(asArtist('ana', '/_audit/api/stats?by=node_type'))
    const runs = (b: Record<string, unknown>): number =>
      (b.groups as { runs: number }[]).reduce((s, g) => s + g.runs, 0)
    expect(runs(own.body)).toBeLessThan(runs(all.body))
    const anas = new Set((await store.sessions({ user: 'ana' })).map((s) => s.session_id))
    expect(runs(own.body)).toBe((await store.nodeRuns()).filter((r) => anas.has(r.session_id)).length)
  })

  it("does not diff someone else's session for an artist", async () => {
    const dana = history.loraRuns.find((r) => r.session_id)!.session_id
    const owner = (await store.session(dana))!.submitter!.user
    const other = PLANTED.users.find((u) => u !== owner)!
    const r = await get(asArtist(other, `/_audit/api/diff?a=${dana}&b=${dana}`))
    expect(r.status).toBe(404)
    expect(r.body.error).toContain('among your runs')
    expect((await get(asArtist(owner, `/_audit/api/diff?a=${dana}&b=${dana}`))).status).toBe(200)
  })

  it('answers the same on the command line (--json)', async () => {
    const r = await cli('usage', '--by', 'user', '--json', '--store', `sqlite:${join(dir, 'audit.sqlite')}`)
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toEqual((await get('/_audit/api/usage?by=user')).body)
    const text = await cli(
      'regressions',
      '--baseline',
      '2d',
      '--min-samples',
      '10',
      '--store',
      `sqlite:${join(dir, 'audit.sqlite')}`,
    )
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('groups with >= 10 runs each compared')
    const rollups = await store.rollups()
    await store.close()
    const rebuilt = await cli('rebuild', '--store', `sqlite:${join(dir, 'audit.sqlite')}`)
    expect(rebuilt.stdout).toBe(`rebuilt derived tables and rollups from ${history.events} events\n`)
    store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), {
      origin: 'comfy-audit/api',
    })
    expect(await store.rollups()).toEqual(rollups)
  }, 60_000)
})

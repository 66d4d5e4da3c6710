/**
 * `comfy-audit status` against a real store written by two gateways (origins) and a real `/_audit/health`
 * (the audit API with a real sink pipeline whose receiver is down), run through commander in-process.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { Command } from 'commander'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson } from '../../src/audit/json.js'
import type { AuditEventInput, JsonObject } from '../../src/audit/types.js'
import { registerStatusCommand } from '../../src/cli/commands/status.js'
import { loadConfig } from '../../src/config/config.js'
import { createAuditApi } from '../../src/query/audit-api.js'
import { createSinkPipeline, sinkHealthJson, type SinkPipeline } from '../../src/sinks/sink-pipeline.js'
import { sessionEvents, startRecordingServer, type RecordingServer } from '../../src/sinks/sink-test-kit.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

let dir: string
let storeUrl: string
let receiver: RecordingServer
let sinks: SinkPipeline
let server: Server
let gatewayUrl: string
let store: RuntimeStore

function inputs(sessionId: string, status: 'success' | 'error'): AuditEventInput[] {
  return sessionEvents({ sessionId, status }).map(({ kind, time, session_id, payload }) => ({
    kind,
    time,
    session_id,
    payload,
  }))
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-status-'))
  const file = join(dir, 'audit.sqlite')
  storeUrl = `sqlite:${file}`
  const a = createRuntimeStore(createSqliteDialect({ path: file }), { origin: 'gw-a' })
  await a.append([...inputs('a-1', 'success'), ...inputs('a-2', 'error')])
  await a.close()
  store = createRuntimeStore(createSqliteDialect({ path: file }), { origin: 'gw-b' })
  await store.append([...inputs('b-1', 'success'), { ...inputs('b-2', 'success')[0]! }])

  // A gateway's health route with one sink whose receiver is down, as the composition root wires it.
  receiver = await startRecordingServer(() => ({ status: 503, body: 'maintenance' }))
  const configFile = join(dir, 'config.json')
  await writeFile(
    configFile,
    JSON.stringify({
      sinks: [{ type: 'loki', name: 'central-loki', url: receiver.url, retry: { maxAttempts: 1 } }],
    }),
  )
  const config = loadConfig({ file: configFile, env: {} })
  if (!config.ok) throw new Error(config.problems.join('; '))
  sinks = await createSinkPipeline(config.value.sinks, { dataDir: dir })
  sinks.onEvents(sessionEvents({ sessionId: 'b-1' }))
  await sinks.forceFlush()
  const api = createAuditApi({
    store,
    upstreamHealthy: () => true,
    draining: () => false,
    version: '0.1.0',
    healthDetails: () => ({
      origin: 'gw-b',
      store: 'sqlite',
      open_sessions: 1,
      sinks: sinkHealthJson(sinks.health()),
    }),
  })
  server = createServer((req, res) => {
    void api(req, res).then((handled) => {
      if (!handled) res.writeHead(404).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  gatewayUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()))
  await sinks?.shutdown()
  await receiver?.close()
  await store?.close()
  await rm(dir, { recursive: true, force: true })
})

async function status(...args: string[]): Promise<{ out: string; error?: Error }> {
  let out = ''
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString()
      done()
    },
  })
  const program = new Command().exitOverride()
  registerStatusCommand(program, { out: sink })
  try {
    await program.parseAsync(['node', 'comfy-audit', 'status', '--data', dir, ...args])
    return { out }
  } catch (error) {
    return { out, error: error as Error }
  }
}

describe('comfy-audit status', () => {
  it('counts sessions by status, events and origins of the store', async () => {
    const r = await status('--store', storeUrl)
    expect(r.error).toBeUndefined()
    const lines = r.out.trimEnd().split('\n')
    expect(lines).toEqual([
      'store: sqlite, 2 origin(s), 4 session(s), 16 event(s)',
      '  sessions: queued 1, success 2, error 1',
      '  origin gw-a: 10 event(s), 2 session(s) (success 1, error 1)',
      '  origin gw-b: 6 event(s), 2 session(s) (queued 1, success 1)',
    ])
  })

  it("adds the gateway's health with each sink's queue, spool and failures", async () => {
    const r = await status('--store', storeUrl, '--gateway', `${gatewayUrl}/`)
    expect(r.error).toBeUndefined()
    const lines = r.out.trimEnd().split('\n')
    expect(lines[4]).toBe(`gateway ${gatewayUrl}: ok, ComfyUI up, origin gw-b, 1 open session(s)`)
    expect(lines[5]).toMatch(
      /^ {2}sink central-loki: 0 queued, [1-9]\d* bytes spooled, [1-9]\d* failure\(s\), 0 dropped, last success -, last error: .*503/,
    )
  })

  it('prints one JSON object with --json', async () => {
    const r = await status('--store', storeUrl, '--gateway', gatewayUrl, '--json')
    const parsed = parseJson(r.out)
    if (!parsed.ok) throw new Error(parsed.reason)
    const report = parsed.value as JsonObject
    expect(report).toMatchObject({
      store: 'sqlite',
      sessions: 4,
      events: 16,
      byStatus: { success: 2, error: 1, queued: 1, running: 0 },
      gateway: { ok: true, health: { origin: 'gw-b', sinks: [{ name: 'central-loki', dropped: 0 }] } },
    })
  })

  it('prints the store part and fails naming the gateway when it does not answer', async () => {
    const closed = await new Promise<string>((resolve) => {
      const s = createServer()
      s.listen(0, '127.0.0.1', () => {
        const port = (s.address() as AddressInfo).port
        s.close(() => resolve(`http://127.0.0.1:${port}`))
      })
    })
    const r = await status('--store', storeUrl, '--gateway', closed)
    expect(r.out).toContain('store: sqlite, 2 origin(s)')
    expect(r.out).toContain(`gateway ${closed}: unreachable: `)
    expect(r.error?.name).toBe('CliError')
    expect(r.error?.message).toMatch(new RegExp(`gateway ${closed} is unreachable`))
  })
})

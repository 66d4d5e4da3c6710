import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, request } from 'node:http'
import type { IncomingHttpHeaders, Server } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSimServer } from '../../src/sim/index.js'
import type { SimServer } from '../../src/sim/index.js'
import { compareTraces } from './compare-traces.js'
import { recordScenarios } from './recorder.js'
import type { TraceRow } from './recorder.js'
import { parseTrace, readTraceFile } from './trace-row.js'

const FIXTURE = new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url).pathname
const SPEED = 5

interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
}

/** A pass-through proxy that remembers every request and upgrade; `/custom-ws` goes to the stand-in's `/ws`. */
function startRecordingProxy(
  target: URL,
): Promise<{ server: Server; url: string; requests: Seen[]; upgrades: Seen[] }> {
  const requests: Seen[] = []
  const upgrades: Seen[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, body: body.toString('utf8') })
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          res.writeHead(ur.statusCode!, ur.headers)
          ur.pipe(res)
        },
      )
      up.on('error', () => res.destroy())
      up.end(body)
    })
  })
  server.on('upgrade', (req, socket, head: Buffer) => {
    upgrades.push({ method: req.method!, url: req.url!, headers: req.headers, body: '' })
    const path = req.url!.replace(/^\/custom-ws/, '/ws')
    const up = connect(Number(target.port), target.hostname, () => {
      const lines = Object.entries(req.headers).map(([k, v]) => `${k}: ${String(v)}`)
      up.write(`GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`)
      up.write(head)
      socket.pipe(up)
      up.pipe(socket)
    })
    up.on('error', () => socket.destroy())
    socket.on('error', () => up.destroy())
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({ server, url: `http://127.0.0.1:${port}`, requests, upgrades })
    }),
  )
}

describe('recordScenarios', { timeout: 120_000 }, () => {
  let dir: string
  let sim: SimServer
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>
  let rows: TraceRow[]

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'recorder-'))
    sim = await createSimServer({ dataDir: join(dir, 'sim'), port: 0, speed: SPEED })
    proxy = await startRecordingProxy(new URL(sim.url))
    rows = await recordScenarios(proxy.url, {
      speedHint: SPEED,
      outDir: join(dir, 'out'),
      headers: { 'x-audit-test': 'on-every-request' },
      wsUrl: `${proxy.url.replace('http', 'ws')}/custom-ws?token=t1`,
    })
  })

  afterAll(async () => {
    proxy?.server.closeAllConnections()
    await new Promise((resolve) => proxy?.server.close(resolve))
    await sim?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('runs every scenario but the model one, as record.py without --with-model', async () => {
    const { lines } = compareTraces(await readTraceFile(FIXTURE), rows)
    // The final history then lacks the model workflow's three runs.
    expect(lines.filter((l) => !l.startsWith('same'))).toEqual([
      'DIFF  sd15_model_workflow: scenario missing',
      "DIFF  final: http 0: ('GET', '/history', 200, ('history', 16)) != real ('GET', '/history', 200, ('history', 19))",
      'conformance: 14/16 scenarios match',
    ])
  })

  it('sends the given headers with every HTTP request and WebSocket upgrade', () => {
    expect(proxy.requests.length).toBeGreaterThan(60)
    expect(proxy.requests.filter((r) => r.headers['x-audit-test'] !== 'on-every-request')).toEqual([])
    expect(proxy.upgrades.map((u) => u.headers['x-audit-test'])).toEqual(Array(6).fill('on-every-request'))
  })

  it('opens its sockets at the wsUrl given, adding the clientId', () => {
    const opened = rows
      .filter((r) => r.kind === 'ws_open')
      .map((r) => `/custom-ws?token=t1&clientId=${String(r.client_id)}`)
    expect(opened).toHaveLength(6)
    expect(proxy.upgrades.map((u) => u.url)).toEqual(opened)
  })

  it('sends bodies as json.dumps writes them, floats with their .0', () => {
    const posts = proxy.requests.filter((r) => r.method === 'POST' && r.url === '/prompt')
    expect(posts[0]!.headers['content-type']).toBe('application/json')
    expect(posts[0]!.body).toMatch(
      /^\{"prompt": \{"1": \{"class_type": "LoadImage", "inputs": \{"image": "audit-input.png"\}\}, /,
    )
    expect(posts[0]!.body).toContain('"blur_radius": 3, "sigma": 1.0}')
    const interrupt = proxy.requests.find((r) => r.url === '/interrupt')
    expect(interrupt?.body).toMatch(/^\{"prompt_id": "[0-9a-f-]{36}"\}$/)
  })

  it('writes trace.jsonl with the rows it returns, and the bodies it saves', async () => {
    const written = parseTrace(await readFile(join(dir, 'out', 'trace.jsonl'), 'utf8'))
    expect(written).toEqual({ ok: true, value: rows })
    const objectInfo = JSON.parse(await readFile(join(dir, 'out', 'object_info.json'), 'utf8')) as object
    expect(Object.keys(objectInfo)).toContain('AuditSlowProgress')
    const png = await readFile(join(dir, 'out', 'output-0.png'))
    expect(png.subarray(1, 4).toString()).toBe('PNG')
  })

  it('records rows in record.py format', () => {
    const http = rows.find((r) => r.kind === 'http')!
    expect(Object.keys(http)).toEqual([
      't_ms',
      'wall',
      'scenario',
      'kind',
      'method',
      'path',
      'request',
      'status',
      'ms',
      'content_type',
      'bytes',
      'response',
    ])
    const open = rows.find((r) => r.kind === 'ws_open')!
    expect(Object.keys(open)).toEqual(['t_ms', 'wall', 'scenario', 'kind', 'client', 'client_id'])
    expect(rows.find((r) => r.kind === 'ws_sent')?.msg).toEqual({
      type: 'feature_flags',
      data: { supports_preview_metadata: true },
    })
    expect(rows.filter((r) => r.kind === 'scenario_end').every((r) => r.ok === true)).toBe(true)
    expect(rows.filter((r) => r.kind === 'ws_closed').map((r) => r.client)).toEqual([
      'C',
      'C-reconnected',
      'C-duplicate',
      'A',
      'B',
      'observer',
    ])
    const times = rows.map((r) => r.t_ms)
    expect(times).toEqual([...times].sort((a, b) => a - b))
  })
})

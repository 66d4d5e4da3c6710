/**
 * Property-based robustness: thousands of malformed HTTP bodies and WebSocket frames, from clients and from the
 * ComfyUI side, after which the same gateway process still answers and every accepted prompt was tapped.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { zAuthConfig, zLimitsConfig } from '../../src/config/security-config.js'
import { createGateway, type Gateway } from '../../src/gateway/create-gateway.js'
import { createRecordingTap, type RecordingTap } from '../../src/gateway/recording-tap.js'
import { createAccessGuard } from '../../src/identity/access-guard.js'
import { createAuthenticator } from '../../src/identity/authenticator.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createSimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function gatewayFor(
  upstreamUrl: string,
  dir: string,
): Promise<{ gw: Gateway; tap: RecordingTap; token: string }> {
  const store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: 't' })
  await store.init()
  cleanups.push(() => store.close())
  const added = await createIdentityDirectory(store, { scrypt: { N: 1 << 10, r: 8, p: 1 } }).addPerson(
    'admin',
    'admin',
    'test',
  )
  if (!added.ok) throw new Error(added.reason)
  const auth = { ...zAuthConfig.parse({}), mode: 'token' as const }
  const limits = { ...zLimitsConfig.parse({}), promptsPerMinute: 0, maxWsFrameBytes: 64 * 1024 }
  const authenticator = createAuthenticator({ auth, listen: '127.0.0.1:0' }, store)
  const tap = createRecordingTap()
  const gw = await createGateway({
    upstreamUrl,
    port: 0,
    tap,
    guard: createAccessGuard({
      authenticator,
      auth,
      limits,
      listenHost: '127.0.0.1',
      upstreamUrl,
      promptOwner: async () => null,
    }),
    auditHandler: (req, res) => authenticator.handleAuditRoute(req, res),
    maxClientFrameBytes: limits.maxWsFrameBytes,
    idleCloseMillis: 0,
    upstreamTimeoutMillis: 5000,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) await new Promise<void>((r) => gw.on('upstream', (e) => e.healthy && r()))
  return { gw, tap, token: added.value.token }
}

const malformedBody = fc.oneof(
  fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s)),
  fc
    .integer({ min: 1, max: 20_000 })
    .map((n) => Buffer.from('['.repeat(n) + ']'.repeat(n % 3 === 0 ? n : 0))),
  fc
    .record({
      prompt: fc.anything({ maxDepth: 3 }),
      client_id: fc.oneof(fc.string(), fc.integer()),
      prompt_id: fc.oneof(fc.string(), fc.constant(null)),
    })
    .map((o) =>
      Buffer.from(JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) ?? 'null'),
    ),
  fc
    .constantFrom(
      '{"prompt": {"1": {"class_type": "SaveImage", "inputs": {"images": NaN}}}}',
      '{"prompt": {}, "number": 1e999, "front": "yes"}',
      '{"delete": [1, 2, {"x": []}], "clear": "maybe"}',
      '{"prompt_id": ["not", "a", "string"]}',
      '\u0000\u0001\u00ff',
      '--boundary\r\nContent-Disposition: form-data; name="image"; filename="../x.png"\r\n\r\nabc\r\n--boundary--\r\n',
    )
    .map((s) => Buffer.from(s)),
)
const route = fc.constantFrom(
  '/prompt',
  '/api/prompt',
  '/interrupt',
  '/queue',
  '/history',
  '/upload/image',
  '/api/jobs',
  '/internal/logs/subscribe',
)

async function stillAnswers(gw: Gateway, token: string): Promise<void> {
  const r = await fetch(`${gw.url}/_audit/whoami`, { headers: { authorization: `Bearer ${token}` } })
  expect(r.status).toBe(200)
}

describe('gateway under malformed input', () => {
  it(
    'survives thousands of malformed HTTP bodies and client WebSocket frames, and taps every accepted prompt',
    { timeout: 180_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'gw-fuzz-'))
      cleanups.push(() => rm(dir, { recursive: true, force: true }))
      const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 20 })
      cleanups.push(() => sim.close())
      const { gw, tap, token } = await gatewayFor(sim.url, dir)
      const accepted: string[] = []
      await fc.assert(
        fc.asyncProperty(
          route,
          malformedBody,
          fc.constantFrom('POST', 'PATCH', 'PUT'),
          async (path, body, method) => {
            const r = await fetch(gw.url + path, {
              method,
              headers: { authorization: `Bearer ${token}` },
              body,
            })
            expect(r.status).toBeLessThan(600)
            const text = await r.text()
            if ((path === '/prompt' || path === '/api/prompt') && method === 'POST' && r.status === 200) {
              accepted.push((JSON.parse(text) as { prompt_id: string }).prompt_id)
            }
          },
        ),
        { numRuns: 1500 },
      )
      await stillAnswers(gw, token)

      // client side: garbage text and binary frames, then one over the frame limit
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws?clientId=fuzz`, {
        headers: { authorization: `Bearer ${token}` },
      })
      await once(ws, 'open')
      const frames = fc.sample(
        fc.oneof(
          fc.string({ maxLength: 500 }),
          fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a)),
          fc.json(),
        ),
        2000,
      )
      for (const f of frames) ws.send(f)
      const closed = once(ws, 'close')
      ws.send(Buffer.alloc(64 * 1024 + 1))
      const [code] = (await closed) as [number]
      expect(code).toBe(1009)
      await stillAnswers(gw, token)

      // a well-formed prompt still runs end to end
      const ok = await fetch(`${gw.url}/prompt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({
          prompt: {
            '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
            '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
          },
        }),
      })
      expect(ok.status).toBe(200)
      accepted.push(((await ok.json()) as { prompt_id: string }).prompt_id)
      const tapped = new Set(
        tap.calls.flatMap((c) =>
          c.method === 'promptAnswered' && c.event.status === 200 ? [c.event.promptId] : [],
        ),
      )
      const submitted = new Set(
        tap.calls.flatMap((c) => (c.method === 'promptSubmitted' ? [c.event.promptId] : [])),
      )
      for (const id of accepted) {
        expect(tapped.has(id)).toBe(true)
        expect(submitted.has(id)).toBe(true)
      }
    },
  )

  it('survives thousands of garbage frames from the ComfyUI side', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-fuzz-up-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const upstream = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(req.url?.startsWith('/queue') ? '{"queue_running":[],"queue_pending":[]}' : '{}')
    })
    const wss = new WebSocketServer({ server: upstream })
    const sockets: WebSocket[] = []
    const connected: (() => void)[] = []
    wss.on('connection', (s) => {
      // ComfyUI greets every socket with its status (the gateway counts ComfyUI as up from here).
      s.send(
        JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid: 'x' } }),
      )
      sockets.push(s)
      for (const c of connected.splice(0)) c()
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    cleanups.push(async () => {
      for (const c of wss.clients) c.terminate()
      upstream.closeAllConnections()
      await new Promise((r) => upstream.close(r))
    })
    const { gw, token } = await gatewayFor(
      `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      dir,
    )
    const before = sockets.length
    const client = new WebSocket(`${gw.url.replace('http', 'ws')}/ws?clientId=victim`, {
      headers: { authorization: `Bearer ${token}` },
    })
    await once(client, 'open')
    if (sockets.length === before) await new Promise<void>((r) => connected.push(r))
    const frames = fc.sample(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.json(),
        fc
          .record({ type: fc.string(), data: fc.anything({ maxDepth: 3 }) })
          .map((o) => JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) ?? '{}'),
        fc.constantFrom(
          '{"type":"executing","data":null}',
          '{"type":"progress_state","data":{"prompt_id":5,"nodes":[]}}',
          '{"type":"executed"}',
          'NaN',
          '{"type": "status", "data": {"status": "x"}}',
        ),
        fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
      ),
      3000,
    )
    for (const f of frames) for (const s of sockets) if (s.readyState === WebSocket.OPEN) s.send(f)
    // a last, well-formed frame proves the path still works after the garbage
    const marker = JSON.stringify({ type: 'crystools.monitor', data: { marker: 1 } })
    const got = new Promise<void>((resolve) => client.on('message', (m) => String(m) === marker && resolve()))
    for (const s of sockets) if (s.readyState === WebSocket.OPEN) s.send(marker)
    await got
    await stillAnswers(gw, token)
    client.close()
  })
})

/**
 * Access control against real servers: the ComfyUI stand-in (or a recording upstream) behind the gateway, with
 * the authenticator and the access guard, people in a real SQLite store.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import {
  zAuthConfig,
  zLimitsConfig,
  type AuthConfig,
  type LimitsConfig,
} from '../../src/config/security-config.js'
import { createGateway, type Gateway } from '../../src/gateway/create-gateway.js'
import { createRecordingTap, type RecordingTap } from '../../src/gateway/recording-tap.js'
import { createAccessGuard } from '../../src/identity/access-guard.js'
import { createAuthenticator, type Authenticator } from '../../src/identity/authenticator.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createSimServer } from '../../src/sim/index.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { addPeople } from '../helpers/people.js'

const FAST = { N: 1 << 10, r: 8, p: 1 }
const PIPELINE = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '5': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/access' } },
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

interface Setup {
  gw: Gateway
  tap: RecordingTap
  tokens: Record<'admin' | 'alice' | 'bob' | 'audrey', string>
  auth: Authenticator
  store: RuntimeStore
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function setup(opts: {
  upstreamUrl?: string
  auth?: Partial<AuthConfig>
  limits?: Partial<LimitsConfig>
  multiUser?: boolean
}): Promise<Setup> {
  const dir = await tempDir('gw-access-')
  let upstreamUrl = opts.upstreamUrl
  if (!upstreamUrl) {
    const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 20 })
    cleanups.push(() => sim.close())
    upstreamUrl = sim.url
  }
  const store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: 't' })
  await store.init()
  cleanups.push(() => store.close())
  const people = createIdentityDirectory(store, { scrypt: FAST })
  const tokens = await addPeople(
    people,
    [
      ['admin', 'admin'],
      ['alice', 'artist'],
      ['bob', 'artist'],
      ['audrey', 'auditor'],
    ],
    'test',
  )
  const auth: AuthConfig = { ...zAuthConfig.parse({}), mode: 'token', ...opts.auth }
  const authenticator = createAuthenticator({ auth, listen: '127.0.0.1:0' }, store)
  const tap = createRecordingTap()
  const owners = new Map<string, string>()
  const guard = createAccessGuard({
    authenticator,
    auth,
    limits: { ...zLimitsConfig.parse({}), ...opts.limits },
    multiUser: opts.multiUser ?? false,
    listenHost: '127.0.0.1',
    upstreamUrl,
    // Stands in for the store's sessions: who submitted each prompt, from what the gateway tapped.
    promptOwner: async (id) => {
      for (const c of tap.calls)
        if (c.method === 'promptSubmitted') owners.set(c.event.promptId, c.event.submitter.user)
      return owners.get(id) ?? null
    },
  })
  const gw = await createGateway({
    upstreamUrl,
    port: 0,
    tap,
    guard,
    auditHandler: async (req, res) => {
      if (await authenticator.handleAuditRoute(req, res)) return true
      if (req.url?.startsWith('/_audit/api/sessions') || req.url?.startsWith('/_audit/api/stats')) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ url: req.url }))
        return true
      }
      return false
    },
    idleCloseMillis: 0,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  if (!gw.upstreamHealthy) await new Promise<void>((r) => gw.on('upstream', (e) => e.healthy && r()))
  return { gw, tap, tokens, auth: authenticator, store }
}

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

function wsOutcome(url: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers })
    ws.on('open', () => {
      resolve('open')
      ws.close()
    })
    ws.on('unexpected-response', (_req, res) => {
      resolve(`status:${res.statusCode}`)
      res.resume()
    })
    ws.on('error', (e) => resolve(`error:${e.message}`))
  })
}

async function submit(base: string, token: string, prefix: string, clientId = 'tab-1'): Promise<string> {
  // Distinct prefixes: an identical prompt would be a cached re-run sharing the first one's output file.
  const prompt = {
    ...PIPELINE,
    '5': { ...PIPELINE['5'], inputs: { ...PIPELINE['5'].inputs, filename_prefix: prefix } },
  }
  const r = await fetch(`${base}/prompt`, {
    method: 'POST',
    headers: { ...bearer(token), 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, client_id: clientId }),
  })
  expect(r.status).toBe(200)
  return ((await r.json()) as { prompt_id: string }).prompt_id
}

const ROUTES: [string, string, string?][] = [
  ['GET', '/'],
  ['GET', '/object_info'],
  ['GET', '/history'],
  ['GET', '/queue'],
  ['GET', '/api/jobs'],
  ['GET', '/view?filename=x.png&type=output'],
  ['POST', '/prompt', JSON.stringify({ prompt: PIPELINE })],
  ['POST', '/interrupt', '{}'],
  ['POST', '/queue', '{"clear": true}'],
  ['POST', '/history', '{"clear": true}'],
  ['POST', '/free', '{}'],
  ['GET', '/internal/logs'],
  ['POST', '/manager/reboot'],
  ['GET', '/_audit/api/sessions'],
  ['GET', '/_audit/whoami'],
]

describe('gateway access control', () => {
  it('answers 401 on every route class and the WebSocket upgrade without or with wrong credentials', async () => {
    const { gw, tap, tokens } = await setup({})
    const wrong = tokens.alice.slice(0, -3) + 'AAA'
    for (const [method, path, body] of ROUTES) {
      for (const headers of [
        {},
        bearer(wrong),
        bearer('garbage'),
        { cookie: `comfy_audit_session=${'x'.repeat(43)}` },
      ]) {
        const r = await fetch(gw.url + path, { method, headers, ...(body ? { body } : {}) })
        expect([method, path, r.status]).toEqual([method, path, 401])
      }
    }
    const ws = gw.url.replace('http', 'ws')
    expect(await wsOutcome(`${ws}/ws?clientId=a`)).toBe('status:401')
    expect(await wsOutcome(`${ws}/ws?clientId=a&token=${wrong}`)).toBe('status:401')
    expect(await wsOutcome(`${ws}/some_pack/ws`)).toBe('status:401')
    expect(tap.calls.filter((c) => c.method !== 'frame')).toEqual([])
    // a browser navigating without a session is sent to the login page
    const nav = await fetch(gw.url + '/', { headers: { accept: 'text/html' }, redirect: 'manual' })
    expect(nav.status).toBe(303)
    expect(nav.headers.get('location')).toBe('/_audit/login?next=%2F')
  })

  it('keeps auditors out of ComfyUI and artists out of admin routes', async () => {
    const { gw, tokens } = await setup({})
    const ws = gw.url.replace('http', 'ws')
    expect((await fetch(gw.url + '/object_info', { headers: bearer(tokens.audrey) })).status).toBe(403)
    expect(await wsOutcome(`${ws}/ws?clientId=a&token=${tokens.audrey}`)).toBe('status:403')
    expect((await fetch(gw.url + '/_audit/api/sessions', { headers: bearer(tokens.audrey) })).status).toBe(
      200,
    )
    expect(
      (await fetch(gw.url + '/free', { method: 'POST', body: '{}', headers: bearer(tokens.alice) })).status,
    ).toBe(403)
    expect((await fetch(gw.url + '/internal/logs', { headers: bearer(tokens.alice) })).status).toBe(403)
    expect(
      (
        await fetch(gw.url + '/queue', {
          method: 'POST',
          body: '{"clear":true}',
          headers: bearer(tokens.alice),
        })
      ).status,
    ).toBe(403)
    expect(
      (await fetch(gw.url + '/free', { method: 'POST', body: '{}', headers: bearer(tokens.admin) })).status,
    ).toBe(200)
    expect(await wsOutcome(`${ws}/ws?clientId=a&token=${tokens.alice}`)).toBe('open')
    expect(await wsOutcome(`${ws}/ws?clientId=a`, bearer(tokens.admin))).toBe('open')
    // an artist's audit query is narrowed to their own runs
    const mine = await fetch(gw.url + '/_audit/api/sessions?limit=5', { headers: bearer(tokens.alice) })
    expect(await mine.json()).toEqual({ url: '/_audit/api/sessions?limit=5&user=alice' })
    // issue 12: so is every aggregate of the analysis API, and another person's is refused
    const stats = await fetch(gw.url + '/_audit/api/stats?by=user', { headers: bearer(tokens.alice) })
    expect(await stats.json()).toEqual({ url: '/_audit/api/stats?by=user&user=alice' })
    expect(
      (await fetch(gw.url + '/_audit/api/stats?user=bob', { headers: bearer(tokens.alice) })).status,
    ).toBe(403)
  })

  it('refuses a cross-origin POST with a valid session cookie, and a foreign Host', async () => {
    const { gw, tokens } = await setup({})
    const login = await fetch(gw.url + '/_audit/login', {
      method: 'POST',
      body: new URLSearchParams({ token: tokens.alice }),
      redirect: 'manual',
    })
    expect(login.status).toBe(303)
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!
    const body = JSON.stringify({ prompt: PIPELINE })
    const cross = await fetch(gw.url + '/prompt', {
      method: 'POST',
      headers: { cookie, origin: 'https://evil.example' },
      body,
    })
    expect(cross.status).toBe(403)
    const sameSite = await fetch(gw.url + '/prompt', {
      method: 'POST',
      headers: { cookie, origin: gw.url },
      body,
    })
    expect(sameSite.status).toBe(200)
    const ws = gw.url.replace('http', 'ws')
    expect(await wsOutcome(`${ws}/ws?clientId=c`, { cookie, origin: 'https://evil.example' })).toBe(
      'status:403',
    )
    expect(await wsOutcome(`${ws}/ws?clientId=c`, { cookie, origin: gw.url })).toBe('open')
    const rebound = await new Promise<number>((resolve) => {
      const req = http.request(
        gw.url + '/queue',
        { headers: { host: 'evil.example:8190', cookie } },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.end()
    })
    expect(rebound).toBe(403)
  })

  it("stops an artist from interrupting, deleting or reading another artist's prompts (visibility own)", async () => {
    const { gw, tokens, tap } = await setup({ auth: { visibility: 'own' } })
    const alicePrompt = await submit(gw.url, tokens.alice, 'audit/alice')
    const bobPrompt = await submit(gw.url, tokens.bob, 'audit/bob')
    const asBob = { ...bearer(tokens.bob), 'content-type': 'application/json' }
    const post = (path: string, body: unknown, headers = asBob): Promise<Response> =>
      fetch(gw.url + path, { method: 'POST', headers, body: JSON.stringify(body) })
    expect((await post('/interrupt', { prompt_id: alicePrompt })).status).toBe(403)
    expect((await post('/queue', { delete: [alicePrompt] })).status).toBe(403)
    expect((await post('/api/history', { delete: [alicePrompt] })).status).toBe(403)
    // wait for both runs to finish, then compare what each sees
    for (;;) {
      const h = (await (
        await fetch(`${gw.url}/history`, { headers: bearer(tokens.admin) })
      ).json()) as Record<string, unknown>
      if (alicePrompt in h && bobPrompt in h) break
      await new Promise((r) => setImmediate(r))
    }
    const bobHistory = (await (
      await fetch(`${gw.url}/history`, { headers: bearer(tokens.bob) })
    ).json()) as Record<string, unknown>
    expect(Object.keys(bobHistory)).toEqual([bobPrompt])
    expect((await fetch(`${gw.url}/history/${alicePrompt}`, { headers: bearer(tokens.bob) })).status).toBe(
      404,
    )
    expect((await fetch(`${gw.url}/api/jobs/${alicePrompt}`, { headers: bearer(tokens.bob) })).status).toBe(
      404,
    )
    expect((await fetch(`${gw.url}/history/${bobPrompt}`, { headers: bearer(tokens.bob) })).status).toBe(200)
    const jobs = (await (await fetch(`${gw.url}/api/jobs`, { headers: bearer(tokens.bob) })).json()) as {
      jobs: { id: string }[]
    }
    expect(jobs.jobs.map((j) => j.id)).toEqual([bobPrompt])
    // outputs: each artist sees their own files only
    const all = (await (
      await fetch(`${gw.url}/history`, { headers: bearer(tokens.admin) })
    ).json()) as Record<
      string,
      { outputs: Record<string, { images?: { filename: string; subfolder: string; type: string }[] }> }
    >
    const viewOf = (id: string): string => {
      const f = all[id]!.outputs['5']!.images![0]!
      return `/view?${new URLSearchParams({ filename: f.filename, subfolder: f.subfolder, type: f.type })}`
    }
    expect((await fetch(gw.url + viewOf(alicePrompt), { headers: bearer(tokens.bob) })).status).toBe(404)
    expect((await fetch(gw.url + viewOf(bobPrompt), { headers: bearer(tokens.bob) })).status).toBe(200)
    expect((await fetch(gw.url + viewOf(alicePrompt), { headers: bearer(tokens.alice) })).status).toBe(200)
    expect((await fetch(gw.url + viewOf(alicePrompt), { headers: bearer(tokens.admin) })).status).toBe(200)
    // ... but may delete their own, and an admin may delete anyone's
    expect((await post('/history', { delete: [bobPrompt] })).status).toBe(200)
    expect(
      (
        await post(
          '/history',
          { delete: [alicePrompt] },
          { ...bearer(tokens.admin), 'content-type': 'application/json' },
        )
      ).status,
    ).toBe(200)
    // nothing of bob's refused attempts reached ComfyUI or the tap as an action
    const actions = tap.calls
      .filter((c) => c.method === 'action')
      .map((c) => (c.method === 'action' ? c.event.submitter.user : ''))
    expect(actions).toEqual(['bob', 'admin'])
    // a global interrupt from an artist with nothing running is refused
    expect((await post('/interrupt', {})).status).toBe(403)
  })

  it('limits POST /prompt per person', async () => {
    const { gw, tokens } = await setup({ limits: { promptsPerMinute: 1, promptBurst: 2 } })
    const statuses: number[] = []
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${gw.url}/prompt`, {
        method: 'POST',
        headers: bearer(tokens.alice),
        body: JSON.stringify({ prompt: PIPELINE }),
      })
      statuses.push(r.status)
    }
    expect(statuses).toEqual([200, 200, 429])
    const other = await fetch(`${gw.url}/prompt`, {
      method: 'POST',
      headers: bearer(tokens.bob),
      body: JSON.stringify({ prompt: PIPELINE }),
    })
    expect(other.status).toBe(200)
  })

  it('refuses path traversal through /view, /userdata and uploads', async () => {
    const { gw, tokens } = await setup({})
    const h = bearer(tokens.admin)
    for (const path of [
      '/view?filename=../../etc/passwd',
      '/view?filename=a.png&subfolder=../../..',
      '/userdata/..%2F..%2Fetc%2Fpasswd',
      '/api/userdata?dir=../',
    ]) {
      expect([path, (await fetch(gw.url + path, { headers: h })).status]).toEqual([path, 400])
    }
    const form = new FormData()
    form.append('image', new Blob([Buffer.from('x')], { type: 'image/png' }), 'a.png')
    form.append('subfolder', '../../escape')
    expect((await fetch(gw.url + '/upload/image', { method: 'POST', headers: h, body: form })).status).toBe(
      400,
    )
    const fine = new FormData()
    fine.append('image', new Blob([Buffer.from('x')], { type: 'image/png' }), 'ok.png')
    expect((await fetch(gw.url + '/upload/image', { method: 'POST', headers: h, body: fine })).status).toBe(
      200,
    )
  })

  it('ignores a spoofed X-Forwarded-User from an untrusted address', async () => {
    const { gw, tokens, tap } = await setup({
      auth: { mode: 'trusted-header', trustedProxies: ['10.0.0.0/8'] },
    })
    const spoofOnly = await fetch(`${gw.url}/prompt`, {
      method: 'POST',
      headers: { 'x-forwarded-user': 'admin' },
      body: JSON.stringify({ prompt: PIPELINE }),
    })
    expect(spoofOnly.status).toBe(401)
    const withToken = await fetch(`${gw.url}/prompt`, {
      method: 'POST',
      headers: { ...bearer(tokens.alice), 'x-forwarded-user': 'admin' },
      body: JSON.stringify({ prompt: PIPELINE }),
    })
    expect(withToken.status).toBe(200)
    const submitted = tap.calls.flatMap((c) => (c.method === 'promptSubmitted' ? [c.event.submitter] : []))
    expect(submitted.map((s) => [s.user, s.auth_method])).toEqual([['alice', 'token']])
    expect(
      (
        await fetch(`${gw.url}/free`, {
          method: 'POST',
          headers: { ...bearer(tokens.alice), 'x-forwarded-user': 'admin' },
        })
      ).status,
    ).toBe(403)
  })
})

describe('gateway access control: what reaches ComfyUI', () => {
  it('passes on neither credentials nor a client-supplied comfy-user, and sets comfy-user from the identity', async () => {
    const seen: { url: string; headers: http.IncomingHttpHeaders }[] = []
    const upstream = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(
        req.url?.startsWith('/queue')
          ? '{"queue_running":[],"queue_pending":[]}'
          : req.url === '/prompt'
            ? '{"prompt_id":"p1","number":0,"node_errors":{}}'
            : '{}',
      )
    })
    const wss = new WebSocketServer({ noServer: true })
    upstream.on('upgrade', (req, socket, head) => {
      seen.push({ url: req.url ?? '', headers: req.headers })
      wss.handleUpgrade(req, socket, head, (ws) =>
        ws.send(
          JSON.stringify({
            type: 'status',
            data: { status: { exec_info: { queue_remaining: 0 } }, sid: 'x' },
          }),
        ),
      )
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    cleanups.push(async () => {
      for (const c of wss.clients) c.terminate()
      upstream.closeAllConnections()
      await new Promise((r) => upstream.close(r))
    })
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    const { gw, tokens } = await setup({ upstreamUrl, multiUser: true })
    const login = await fetch(gw.url + '/_audit/login', {
      method: 'POST',
      body: new URLSearchParams({ token: tokens.alice }),
      redirect: 'manual',
    })
    const session = login.headers.get('set-cookie')!.split(';')[0]!
    seen.length = 0
    await fetch(`${gw.url}/userdata/x.json`, {
      headers: { ...bearer(tokens.alice), 'comfy-user': 'admin', cookie: 'theme=dark' },
    })
    await fetch(`${gw.url}/settings`, {
      headers: { cookie: `theme=dark; ${session}`, 'Comfy-User': 'admin' },
    })
    await fetch(`${gw.url}/prompt`, {
      method: 'POST',
      headers: { ...bearer(tokens.alice), 'comfy-user': 'admin' },
      body: JSON.stringify({ prompt: PIPELINE }),
    })
    await fetch(`${gw.url}/interrupt`, {
      method: 'POST',
      headers: { ...bearer(tokens.admin), 'proxy-authorization': 'Basic eA==' },
      body: '{}',
    })
    expect(
      await wsOutcome(`${gw.url.replace('http', 'ws')}/some_pack/ws?token=${tokens.alice}&x=1`, {
        'comfy-user': 'admin',
      }),
    ).toBe('open')
    const forwarded = seen.filter(
      (s) => !s.url.startsWith('/ws') && s.url !== '/features' && !s.url.startsWith('/queue'),
    )
    expect(forwarded.map((s) => s.url)).toEqual([
      '/userdata/x.json',
      '/settings',
      '/prompt',
      '/interrupt',
      '/some_pack/ws?x=1',
    ])
    const text = JSON.stringify(forwarded)
    for (const secret of [tokens.alice, tokens.admin, session.split('=')[1]!, 'Basic eA=='])
      expect(text).not.toContain(secret)
    for (const s of forwarded) {
      expect(s.headers.authorization).toBeUndefined()
      expect(s.headers['comfy-user']).toBe(s.url === '/interrupt' ? 'admin' : 'alice')
    }
    expect(forwarded[0]!.headers.cookie).toBe('theme=dark')
    expect(forwarded[1]!.headers.cookie).toBe('theme=dark')
  })
})

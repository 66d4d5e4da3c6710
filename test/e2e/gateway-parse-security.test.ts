/**
 * Issue 9, classes 1–3: no way around the guard. The gateway, the real access guard and people in a real
 * SQLite store, in front of a recording upstream that reads requests as ComfyUI does (aiohttp's routing path,
 * Python's own json.loads in a python3 child), or the ComfyUI stand-in where sockets are needed. Attacks are written as raw HTTP over
 * TCP, since clients like fetch would normalise them away.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { JsonValue } from '../../src/audit/types.js'
import { zAuthConfig, zLimitsConfig, type AuthConfig } from '../../src/config/security-config.js'
import { createGateway, type Gateway } from '../../src/gateway/create-gateway.js'
import { createRecordingTap, type RecordingTap } from '../../src/gateway/recording-tap.js'
import { createAccessGuard } from '../../src/identity/access-guard.js'
import { createAuthenticator } from '../../src/identity/authenticator.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createSimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { addPeople } from '../helpers/people.js'
import { startPythonJson, type PythonJson } from '../helpers/python-json.js'

const FAST = { N: 1 << 10, r: 8, p: 1 }
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

/** What the upstream received, read the way aiohttp + Python would. */
interface Seen {
  method: string
  raw: string
  /** yarl's `path_safe`: every escape decoded except %2F, %25, %2B; no slash merging. */
  path: string
  person: string | null
  /** Python's json.loads of the body (undefined: no body; 'error': Python would raise). */
  json: JsonValue | 'error' | undefined
}

/** Written independently of the gateway's canonicaliser: aiohttp's (yarl's) decoding of a path. */
function aiohttpPath(target: string): string {
  const rel = /^https?:\/\//i.test(target) ? target.replace(/^https?:\/\/[^/?#]*/i, '') || '/' : target
  const path = rel.split(/[?#]/, 1)[0]!
  const bytes: number[] = []
  for (let i = 0; i < path.length; i++) {
    const m = /^%([0-9A-Fa-f]{2})/.exec(path.slice(i))
    if (m && !['2f', '25', '2b'].includes(m[1]!.toLowerCase())) {
      bytes.push(parseInt(m[1]!, 16))
      i += 2
    } else for (const b of Buffer.from(path[i]!, 'utf8')) bytes.push(b)
  }
  return Buffer.from(bytes).toString('utf8')
}

let python: PythonJson | undefined
afterAll(async () => {
  await python?.close()
})

async function recordingUpstream(): Promise<{ url: string; seen: Seen[] }> {
  python ??= await startPythonJson()
  const py = python
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', async () => {
      const body = Buffer.concat(chunks)
      const comfyUser = req.headers['comfy-user']
      // The gateway's own reads (features, queue, history lookups) are not client requests.
      const own = req.method === 'GET' && /^\/(features|queue|ws|history)(\/|\?|$)/.test(req.url ?? '')
      if (own) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(req.url?.startsWith('/queue') ? '{"queue_running": [], "queue_pending": []}' : '{}')
        return
      }
      seen.push({
        method: req.method ?? '',
        raw: req.url ?? '',
        path: aiohttpPath(req.url ?? '/'),
        person: typeof comfyUser === 'string' ? comfyUser : null,
        json: await py.loads(body),
      })
      const json = seen[seen.length - 1]!.json
      const promptId =
        json && typeof json === 'object' && !Array.isArray(json) ? (json.prompt_id ?? null) : null
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify(
          req.url?.includes('queue')
            ? { queue_running: [], queue_pending: [] }
            : { prompt_id: promptId, number: 0, node_errors: {} },
        ),
      )
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  cleanups.push(() => new Promise((r) => server.close(() => r())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

async function setup(opts: { upstreamUrl?: string; auth?: Partial<AuthConfig>; multiUser?: boolean }) {
  const dir = await mkdtemp(join(tmpdir(), 'gw-parse-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  let upstreamUrl = opts.upstreamUrl
  if (!upstreamUrl) {
    const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 20 })
    cleanups.push(() => sim.close())
    upstreamUrl = sim.url
  }
  const store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'a.sqlite') }), { origin: 't' })
  await store.init()
  cleanups.push(() => store.close())
  const people = createIdentityDirectory(store, { scrypt: FAST })
  const tokens: Record<string, string> = await addPeople(
    people,
    [
      ['admin', 'admin'],
      ['alice', 'artist'],
      ['bob', 'artist'],
    ],
    'test',
  )
  const auth: AuthConfig = { ...zAuthConfig.parse({}), mode: 'token', ...opts.auth }
  const authenticator = createAuthenticator({ auth, listen: '127.0.0.1:0' }, store)
  const tap: RecordingTap = createRecordingTap()
  const owners = new Map<string, string>([['p-bob', 'bob']])
  const guard = createAccessGuard({
    authenticator,
    auth,
    limits: { ...zLimitsConfig.parse({}), promptsPerMinute: 0 },
    multiUser: opts.multiUser ?? false,
    listenHost: '127.0.0.1',
    upstreamUrl,
    promptOwner: async (id) => {
      for (const c of tap.calls)
        if (c.method === 'promptSubmitted') owners.set(c.event.promptId, c.event.submitter.user)
      return owners.get(id) ?? null
    },
  })
  const gw: Gateway = await createGateway({
    upstreamUrl,
    port: 0,
    tap,
    guard,
    auditHandler: (req, res) => authenticator.handleAuditRoute(req, res),
    idleCloseMillis: 0,
  })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  // A recording upstream has no WebSocket endpoint: only the stand-in becomes healthy.
  if (!opts.upstreamUrl && !gw.upstreamHealthy)
    await new Promise<void>((r) => gw.on('upstream', (e) => e.healthy && r()))
  return { gw, tap, tokens }
}

/** Writes one raw HTTP/1.1 request and reads the answer until the gateway closes the connection. */
function raw(
  gw: Gateway,
  method: string,
  target: string,
  headers: Record<string, string>,
  body: Buffer | string = '',
): Promise<{ status: number; text: string }> {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  return new Promise((resolve, reject) => {
    const s = net.connect(gw.port, '127.0.0.1')
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', reject)
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text })
      s.destroy()
    })
    let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nConnection: close\r\n`
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
    if (b.length > 0 || method === 'POST')
      head += `Content-Length: ${b.length}\r\nContent-Type: application/json\r\n`
    s.write(Buffer.concat([Buffer.from(head + '\r\n'), b]))
  })
}

const bearer = (t: string): Record<string, string> => ({ Authorization: `Bearer ${t}` })

describe('issue 9 class 1: request-target forms', () => {
  it.each([
    ['POST', 'http://x/free'],
    ['POST', 'HTTP://x/api/free'],
    ['POST', '//free'],
    ['POST', '/api//free'],
    ['POST', '/fr%65e'],
    ['GET', 'http://x/internal/logs'],
  ])('refuses an artist %s %s (admin-only route) without reaching ComfyUI', async (method, target) => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url })
    const r = await raw(gw, method, target, bearer(tokens.alice!), method === 'POST' ? '{}' : '')
    expect(r.status).toBe(403)
    expect(up.seen).toHaveLength(0)
  })

  it('forwards an absolute-form target as its canonical origin-form path', async () => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url })
    const r = await raw(gw, 'GET', 'http://elsewhere//api/object_%69nfo?x=1', bearer(tokens.alice!))
    expect(r.status).toBe(200)
    expect(up.seen.map((s) => s.raw)).toEqual(['/api/object_info?x=1'])
  })

  it.each(['*', 'ftp://x/free', '/a#b', '/prom%zzpt', '/%c3', '/x/%2e%2e/free', '/view%00'])(
    'refuses the target %s with 400',
    async (target) => {
      const up = await recordingUpstream()
      const { gw, tokens } = await setup({ upstreamUrl: up.url })
      const r = await raw(gw, 'GET', target, bearer(tokens.admin!))
      expect(r.status).toBe(400)
      expect(up.seen).toHaveLength(0)
    },
  )

  it('serves //_audit/ itself: credentials never reach ComfyUI, //_audit/whoami needs them', async () => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url })
    const who = await raw(gw, 'GET', '//_audit/whoami', bearer(tokens.alice!))
    expect(who.status).toBe(200)
    expect(who.text).toContain('alice')
    const login = await raw(gw, 'GET', '//_audit//login', {})
    expect(login.status).toBe(200)
    expect(await raw(gw, 'GET', 'http://x//_audit/whoami', {}).then((r) => r.status)).toBe(401)
    expect(up.seen).toHaveLength(0)
  })

  it('/api/api/jobs/{id} is the jobs route: another person’s job stays hidden under visibility own', async () => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url, auth: { visibility: 'own' } })
    for (const target of ['/api/api/jobs/p-bob', '//api/api/jobs/p-bob', 'http://x/api/api/jobs/p-bob']) {
      expect((await raw(gw, 'GET', target, bearer(tokens.alice!))).status).toBe(404)
    }
    expect(up.seen).toHaveLength(0)
  })

  it('an absolute-form WebSocket upgrade is namespaced like any other (no takeover of a raw client id)', async () => {
    const { gw, tokens } = await setup({})
    const s = net.connect(gw.port, '127.0.0.1')
    cleanups.push(async () => void s.destroy())
    const head = await new Promise<string>((resolve, reject) => {
      let text = ''
      s.on('data', (c: Buffer) => {
        text += c.toString('latin1')
        if (text.includes('\r\n\r\n')) resolve(text)
      })
      s.on('error', reject)
      s.write(
        `GET http://x/ws?clientId=victim-tab HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${tokens.alice}\r\n\r\n`,
      )
    })
    expect(head).toMatch(/^HTTP\/1\.1 101/)
    const deadline = Date.now() + 5000
    while (!gw.upstreamClientIds.some((id) => id.endsWith('victim-tab')) && Date.now() < deadline)
      await new Promise((r) => setImmediate(r))
    expect(gw.upstreamClientIds).not.toContain('victim-tab')
    expect(gw.upstreamClientIds.some((id) => id !== 'victim-tab' && id.endsWith('victim-tab'))).toBe(true)
  })
})

describe('issue 9 class 2: body parser differentials', () => {
  it.each([
    ['a UTF-8 BOM on /interrupt', '/interrupt', '\ufeff{"prompt_id": "p-alice"}'],
    [
      'nesting past the limit on a queue clear',
      '/queue',
      '{"clear": true, "x": ' + '['.repeat(80) + ']'.repeat(80) + '}',
    ],
    [
      'nesting past the limit on a history delete',
      '/api/history',
      '{"delete": ["p-bob"], "x": ' + '{"a":'.repeat(80) + '1' + '}'.repeat(80) + '}',
    ],
    ['duplicate keys', '/queue', '{"delete": ["p-alice"], "delete": ["p-bob"]}'],
    ['a lone surrogate', '/interrupt', '{"prompt_id": "\\udc00"}'],
  ])('refuses %s with 400 and forwards nothing', async (_what, path, body) => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url })
    const r = await raw(gw, 'POST', path, bearer(tokens.alice!), body)
    expect(r.status).toBe(400)
    expect(up.seen).toHaveLength(0)
  })

  it('a /prompt nested 513–1000 deep is refused, not relayed raw', async () => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url })
    for (const depth of [513, 1000]) {
      const body = '{"prompt": {"1": {"inputs": {"x": ' + '['.repeat(depth) + ']'.repeat(depth) + '}}}}'
      expect((await raw(gw, 'POST', '/prompt', bearer(tokens.alice!), body)).status).toBe(400)
    }
    expect(up.seen).toHaveLength(0)
  })
})

describe('issue 9 class 3: object visibility', () => {
  it.each([
    '/view?filename=bob.png&type=temp',
    '/view?filename=bob.png%20[output]&type=input',
    '/view?filename=bob.png%20[temp]',
  ])('%s is not served to another artist under visibility own', async (target) => {
    const up = await recordingUpstream()
    const { gw, tokens } = await setup({ upstreamUrl: up.url, auth: { visibility: 'own' } })
    expect((await raw(gw, 'GET', target, bearer(tokens.alice!))).status).toBe(404)
    expect(up.seen.filter((s) => s.path === '/view')).toHaveLength(0)
  })

  it('/userdata is refused to artists unless ComfyUI runs with --multi-user (then scoped by comfy-user)', async () => {
    const up = await recordingUpstream()
    const shared = await setup({ upstreamUrl: up.url })
    const r = await raw(shared.gw, 'GET', '/api/userdata/workflows%2Fbob.json', bearer(shared.tokens.alice!))
    expect(r.status).toBe(403)
    expect(r.text).toContain('multi-user')
    expect(up.seen).toHaveLength(0)
    const scoped = await setup({ upstreamUrl: up.url, multiUser: true })
    expect(
      (await raw(scoped.gw, 'GET', '/api/userdata/workflows%2Fa.json', bearer(scoped.tokens.alice!))).status,
    ).toBe(200)
    expect(up.seen.map((s) => [s.path, s.person])).toEqual([['/api/userdata/workflows%2Fa.json', 'alice']])
  })
})

/** The route aiohttp would dispatch on, with the `/api` copy stripped once (the jobs routes are `/api/jobs`). */
function comfyRoute(path: string): string {
  return path.startsWith('/api/') ? path.slice(4) : path
}

describe('issue 9 differential: the gateway decides on what ComfyUI receives', () => {
  const segment = fc.constantFrom(
    'prompt',
    'prom%70t',
    'api',
    'free',
    'fr%65e',

    'object_info',
    '',
    '%2F',
    'a%2Fb',
    'view',
    '%41',
    'x%2By',
    '.',
    '..',
    '%2e',
    '%2E%2E',
    'jobs',
    '_audit',
    'userdata',
    '%c3%a9',
    '%ff',
    '%',
    'a b',
  )
  const target = fc
    .tuple(
      fc.constantFrom('', 'http://x', 'HTTPS://h:1'),
      fc.array(segment, { minLength: 1, maxLength: 5 }),
      fc.constantFrom('', '?a=1', '?type=temp&filename=x'),
    )
    .map(([abs, segs, q]) => `${abs}/${segs.join('/')}${q}`)

  it('forwards exactly the route, person and prompt id the gateway decided on (fast-check over targets)', async () => {
    const up = await recordingUpstream()
    const { gw, tokens, tap } = await setup({ upstreamUrl: up.url, multiUser: true })
    await fc.assert(
      fc.asyncProperty(target, async (t) => {
        if (t.includes(' ')) return // not a valid request line; Node refuses it before the gateway
        const before = up.seen.length
        const r = await raw(gw, 'GET', t, bearer(tokens.admin!))
        const forwarded = up.seen.slice(before)
        if (
          r.status === 400 ||
          aiohttpPath(t)
            .replace(/\/{2,}/g, '/')
            .startsWith('/_audit')
        ) {
          expect(forwarded).toHaveLength(0)
          return
        }
        expect(forwarded).toHaveLength(1)
        const got = forwarded[0]!
        // The gateway's reading (merged slashes, aiohttp's decoding) is what ComfyUI routes on.
        expect(comfyRoute(got.path)).toBe(comfyRoute(aiohttpPath(t).replace(/\/{2,}/g, '/')))
        expect(got.path).not.toMatch(/\/\/|(^|\/)\.\.?(\/|$)/)
        expect(got.person).toBe('admin')
      }),
      { numRuns: 150, seed: 9 },
    )
    void tap
  })

  const body = fc
    .tuple(
      fc.boolean(),
      fc.constantFrom('', ', "prompt_id": "dup"', ', "prompt_id": "p1", "prompt_id": "p2"'),
      fc.integer({ min: 0, max: 700 }),
      fc.constantFrom('"x"', '"\\ud800"', 'NaN', '18446744073709551615'),
    )
    .map(([bom, ids, depth, leaf]) =>
      Buffer.from(
        `${bom ? '\ufeff' : ''}{"prompt": {"1": {"inputs": {"v": ${'['.repeat(depth)}${leaf}${']'.repeat(depth)}}}}${ids}}`,
        'utf8',
      ),
    )

  it('what reaches ComfyUI parses in Python to the prompt id the gateway recorded (fast-check over bodies)', async () => {
    const up = await recordingUpstream()
    const { gw, tokens, tap } = await setup({ upstreamUrl: up.url })
    let n = 0
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const before = up.seen.length
        const r = await raw(gw, 'POST', '/prompt', bearer(tokens.alice!), b)
        const forwarded = up.seen.slice(before)
        const submitted = tap.of('promptSubmitted')
        n = submitted.length
        if (r.status === 400) {
          expect(forwarded).toHaveLength(0)
          return
        }
        expect(forwarded).toHaveLength(1)
        const json = forwarded[0]!.json
        expect(json).not.toBe('error')
        const seenId = (json as { prompt_id: JsonValue }).prompt_id
        expect(seenId).toBe(submitted[n - 1]!.promptId)
        expect(typeof (json as { client_id: JsonValue }).client_id).toBe('string')
      }),
      { numRuns: 60, seed: 9 },
    )
  })
})

import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { zAuthConfig, type AuthConfig } from '../config/security-config.js'
import { createRuntimeStore, type RuntimeStore } from '../store/runtime-store.js'
import { createSqliteDialect } from '../store/sqlite/sqlite-dialect.js'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import type { SecurityEvent } from './identity.js'
import { createIdentityDirectory } from './identity-directory.js'

const FAST = { N: 1 << 10, r: 8, p: 1 }

let dir = ''
let store: RuntimeStore
let server: http.Server | null = null
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-auth-'))
  store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: 't' })
  await store.init()
})
afterEach(async () => {
  if (server) {
    server.closeAllConnections()
    await new Promise((r) => server!.close(r))
    server = null
  }
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

function authConfig(over: Partial<AuthConfig>): AuthConfig {
  return { ...zAuthConfig.parse({}), ...over }
}

/** A real server: audit routes first, then `{user, role, method}` or the failure status. */
async function serve(auth: Authenticator): Promise<string> {
  const wss = new WebSocketServer({ noServer: true })
  server = http.createServer((req, res) => {
    void (async () => {
      if (await auth.handleAuditRoute(req, res)) return
      const r = await auth.identify(req)
      res.writeHead(r.ok ? 200 : r.status, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify(
          r.ok
            ? {
                user: r.identity.user,
                role: r.identity.role,
                method: r.identity.auth_method,
                address: r.identity.client_address,
              }
            : { error: r.reason },
        ),
      )
    })()
  })
  server.on('upgrade', (req, socket, head) => {
    void auth.identify(req).then((r) => {
      if (!r.ok) {
        socket.end(`HTTP/1.1 ${r.status} No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
        return
      }
      wss.handleUpgrade(req, socket, head, (ws) => ws.send(r.identity.user))
    })
  })
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`
}

async function addPerson(name: string, role: 'admin' | 'artist' | 'auditor'): Promise<string> {
  const r = await createIdentityDirectory(store, { scrypt: FAST }).addPerson(name, role, 'test')
  if (!r.ok) throw new Error(r.reason)
  return r.value.token
}

function wsOutcome(url: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers })
    ws.on('message', (m) => {
      resolve(`message:${String(m)}`)
      ws.close()
    })
    ws.on('unexpected-response', (_req, res) => resolve(`status:${res.statusCode}`))
    ws.on('error', (e) => resolve(`error:${e.message}`))
  })
}

describe('authenticator', () => {
  it('refuses mode none beyond loopback unless forced, saying why', () => {
    expect(() =>
      createAuthenticator({ auth: authConfig({ mode: 'none' }), listen: '0.0.0.0:8190' }, store),
    ).toThrow(/beyond this machine.*allowInsecure/s)
    expect(() =>
      createAuthenticator(
        { auth: authConfig({ mode: 'none', allowInsecure: true }), listen: '0.0.0.0:8190' },
        store,
      ),
    ).not.toThrow()
    expect(() =>
      createAuthenticator({ auth: authConfig({ mode: 'none' }), listen: '127.0.0.1:8190' }, store),
    ).not.toThrow()
  })

  it('identifies everyone as local with their address in mode none', async () => {
    const url = await serve(createAuthenticator({ auth: authConfig({}), listen: '127.0.0.1:0' }, store))
    const body = (await (await fetch(url + '/x')).json()) as Record<string, string>
    expect(body).toMatchObject({ user: 'local', method: 'none', address: '127.0.0.1' })
  })

  it('accepts a Bearer token and refuses none, wrong and malformed ones with 401', async () => {
    const token = await addPerson('alice', 'artist')
    const auth = createAuthenticator({ auth: authConfig({ mode: 'token' }), listen: '127.0.0.1:0' }, store)
    const url = await serve(auth)
    const ok = await fetch(url + '/prompt', { headers: { authorization: `Bearer ${token}` } })
    expect(await ok.json()).toMatchObject({ user: 'alice', role: 'artist', method: 'token' })
    expect((await fetch(url + '/prompt')).status).toBe(401)
    expect(
      (await fetch(url + '/prompt', { headers: { authorization: `Bearer ${token.slice(0, -1)}x` } })).status,
    ).toBe(401)
    expect((await fetch(url + '/prompt', { headers: { authorization: `Basic ${token}` } })).status).toBe(401)
    // ?token= is for WebSocket upgrades only: on plain HTTP it would end up in logs and referrers.
    expect((await fetch(`${url}/prompt?token=${token}`)).status).toBe(401)
  })

  it('authenticates WebSocket upgrades by header or ?token= and refuses others', async () => {
    const token = await addPerson('bob', 'artist')
    const url = (
      await serve(createAuthenticator({ auth: authConfig({ mode: 'token' }), listen: '127.0.0.1:0' }, store))
    ).replace('http', 'ws')
    expect(await wsOutcome(`${url}/ws?token=${token}`)).toBe('message:bob')
    expect(await wsOutcome(`${url}/ws`, { authorization: `Bearer ${token}` })).toBe('message:bob')
    expect(await wsOutcome(`${url}/ws`)).toBe('status:401')
    expect(await wsOutcome(`${url}/ws?token=AAAAAAAAAAAAAAAA.${'B'.repeat(43)}`)).toBe('status:401')
  })

  it('logs a browser in with a token, sets a strict HttpOnly cookie, and logs it out', async () => {
    const token = await addPerson('carol', 'artist')
    const events: SecurityEvent[] = []
    const auth = createAuthenticator({ auth: authConfig({ mode: 'token' }), listen: '127.0.0.1:0' }, store, {
      onEvent: (e) => events.push(e),
    })
    const url = await serve(auth)
    const page = await fetch(url + '/_audit/login')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
    expect(page.headers.get('x-frame-options')).toBe('DENY')
    expect(page.headers.get('x-content-type-options')).toBe('nosniff')
    expect(page.headers.get('referrer-policy')).toBe('same-origin')

    const bad = await fetch(url + '/_audit/login', {
      method: 'POST',
      body: new URLSearchParams({ token: 'nope' }),
      redirect: 'manual',
    })
    expect(bad.status).toBe(401)
    const login = await fetch(url + '/_audit/login', {
      method: 'POST',
      body: new URLSearchParams({ token, next: '//evil.example/' }),
      redirect: 'manual',
    })
    expect(login.status).toBe(303)
    expect(login.headers.get('location')).toBe('/')
    const setCookie = login.headers.get('set-cookie')!
    expect(setCookie).toMatch(
      /^comfy_audit_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/,
    )
    const cookie = setCookie.split(';')[0]!
    expect(await (await fetch(url + '/anything', { headers: { cookie } })).json()).toMatchObject({
      user: 'carol',
      method: 'cookie',
    })
    const whoami = await fetch(url + '/_audit/whoami', { headers: { cookie } })
    expect(await whoami.json()).toEqual({ user: 'carol', role: 'artist', auth_method: 'cookie' })

    const crossSite = await fetch(url + '/_audit/logout', {
      method: 'POST',
      headers: { cookie, origin: 'https://evil.example' },
      redirect: 'manual',
    })
    expect(crossSite.status).toBe(403)
    const out = await fetch(url + '/_audit/logout', {
      method: 'POST',
      headers: { cookie },
      redirect: 'manual',
    })
    expect(out.status).toBe(303)
    expect((await fetch(url + '/anything', { headers: { cookie } })).status).toBe(401)
    expect(events.map((e) => [e.kind, e.user])).toEqual([
      ['login.failed', null],
      ['login.succeeded', 'carol'],
      ['logout', 'carol'],
    ])
    expect(JSON.stringify(events)).not.toContain(token)
  })

  it('refuses a cross-site login form post', async () => {
    const token = await addPerson('dan', 'artist')
    const url = await serve(
      createAuthenticator({ auth: authConfig({ mode: 'token' }), listen: '127.0.0.1:0' }, store),
    )
    const r = await fetch(url + '/_audit/login', {
      method: 'POST',
      headers: { origin: 'https://evil.example' },
      body: new URLSearchParams({ token }),
      redirect: 'manual',
    })
    expect(r.status).toBe(403)
    expect(r.headers.get('set-cookie')).toBeNull()
  })

  it('gives 403 to a disabled person at once, even with a cached token', async () => {
    const token = await addPerson('erin', 'artist')
    const url = await serve(
      createAuthenticator(
        { auth: authConfig({ mode: 'token', tokenCacheMillis: 600_000 }), listen: '127.0.0.1:0' },
        store,
      ),
    )
    const h = { authorization: `Bearer ${token}` }
    expect((await fetch(url + '/x', { headers: h })).status).toBe(200)
    await createIdentityDirectory(store).disablePerson('erin', 'test')
    expect((await fetch(url + '/x', { headers: h })).status).toBe(403)
  })

  it('believes the identity header only from trusted proxies', async () => {
    await addPerson('frank', 'artist')
    const trusted = createAuthenticator(
      { auth: authConfig({ mode: 'trusted-header', trustedProxies: ['127.0.0.1'] }), listen: '127.0.0.1:0' },
      store,
    )
    const url = await serve(trusted)
    const r = await fetch(url + '/x', {
      headers: { 'x-forwarded-user': 'frank', 'x-forwarded-for': '10.9.8.7' },
    })
    expect(await r.json()).toMatchObject({ user: 'frank', method: 'trusted-header', address: '10.9.8.7' })
    expect((await fetch(url + '/x', { headers: { 'x-forwarded-user': 'stranger' } })).status).toBe(403)
    server!.closeAllConnections()
    await new Promise((res) => server!.close(res))

    const untrusted = createAuthenticator(
      { auth: authConfig({ mode: 'trusted-header', trustedProxies: ['10.0.0.0/8'] }), listen: '127.0.0.1:0' },
      store,
    )
    const url2 = await serve(untrusted)
    const spoofed = await fetch(url2 + '/x', { headers: { 'x-forwarded-user': 'frank' } })
    expect(spoofed.status).toBe(401)
  })

  it('provisions unknown names from a trusted proxy when a default role is configured', async () => {
    const events: SecurityEvent[] = []
    const url = await serve(
      createAuthenticator(
        {
          auth: authConfig({
            mode: 'trusted-header',
            trustedProxies: ['127.0.0.0/8'],
            autoProvisionRole: 'artist',
          }),
          listen: '127.0.0.1:0',
        },
        store,
        { onEvent: (e) => events.push(e) },
      ),
    )
    const r = await fetch(url + '/x', { headers: { 'X-Forwarded-User': 'gina' } })
    expect(await r.json()).toMatchObject({ user: 'gina', role: 'artist' })
    expect(events.map((e) => e.kind)).toEqual(['person.provisioned'])
    expect((await createIdentityDirectory(store).person('gina'))?.role).toBe('artist')
  })

  it('requires trusted proxies in trusted-header mode', () => {
    expect(() =>
      createAuthenticator({ auth: authConfig({ mode: 'trusted-header' }), listen: '127.0.0.1:1' }, store),
    ).toThrow(/trustedProxies/)
  })
})

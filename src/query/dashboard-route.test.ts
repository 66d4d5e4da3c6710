import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDashboardRoute, DASHBOARD_CSP } from './dashboard-route.js'

let dir: string
let server: Server
let base: string

async function serve(root: string): Promise<{ server: Server; base: string }> {
  const route = createDashboardRoute({ root })
  const s = createServer((req, res) => {
    void route(req, res).then((served) => {
      if (!served) {
        res.writeHead(404)
        res.end('not mine')
      }
    })
  })
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return { server: s, base: `http://127.0.0.1:${(s.address() as AddressInfo).port}` }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dash-route-'))
  await mkdir(join(dir, 'web', 'assets'), { recursive: true })
  await writeFile(join(dir, 'web', 'index.html'), '<!doctype html><div id="app"></div>')
  await writeFile(join(dir, 'web', 'assets', 'index-abc.js'), 'export {}')
  await writeFile(join(dir, 'secret.txt'), 'outside the build')
  ;({ server, base } = await serve(join(dir, 'web')))
})
afterAll(async () => {
  await new Promise((r) => server.close(r))
  await rm(dir, { recursive: true, force: true })
})

describe('dashboard route', () => {
  it('answers the app page for its own paths, with the CSP and no caching', async () => {
    for (const path of ['/_audit/ui/', '/_audit/ui/runs/abc', '/_audit/ui/compare?a=1']) {
      const res = await fetch(base + path)
      expect(res.status, path).toBe(200)
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
      expect(res.headers.get('content-security-policy')).toBe(DASHBOARD_CSP)
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(await res.text()).toContain('id="app"')
    }
  })

  it('serves hashed assets as immutable, with their type', async () => {
    const res = await fetch(`${base}/_audit/ui/assets/index-abc.js`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(res.headers.get('cache-control')).toContain('immutable')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
  })

  it.each([
    ['/_audit/ui/..%2fsecret.txt', 400],
    // The client itself resolves an encoded dot segment, so that path leaves /_audit/ui/ before it is sent.
    ['/_audit/ui/%2e%2e/secret.txt', 404],
    ['/_audit/ui/%E0%A4%A', 400],
    ['/_audit/ui/assets/missing.js', 404],
  ])('refuses %s with %i', async (path, status) => {
    const res = await fetch(base + path)
    expect(res.status).toBe(status)
    expect(await res.text()).not.toContain('outside the build')
  })

  it('redirects /_audit/ui to the folder, refuses writes and leaves other paths alone', async () => {
    const bare = await fetch(`${base}/_audit/ui?x=1`, { redirect: 'manual' })
    expect([bare.status, bare.headers.get('location')]).toEqual([308, '/_audit/ui/?x=1'])
    expect((await fetch(`${base}/_audit/ui/`, { method: 'POST' })).status).toBe(405)
    expect(await (await fetch(`${base}/_audit/uix`)).text()).toBe('not mine')
  })

  it('says how to build it when the build is missing', async () => {
    const empty = await serve(join(dir, 'nowhere'))
    try {
      const res = await fetch(`${empty.base}/_audit/ui/`)
      expect(res.status).toBe(404)
      expect(await res.text()).toContain('npm run build:web')
    } finally {
      await new Promise((r) => empty.server.close(r))
    }
  })
})

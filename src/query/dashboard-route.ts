/**
 * Serves the built dashboard (web/, built into dist/web by `npm run build:web`) at `/_audit/ui/`. It sits behind
 * the same access guard as the audit API, so a browser without the login cookie is sent to the login page
 * first. Every answer carries a strict Content-Security-Policy: scripts, styles, images and requests from this
 * gateway only, nothing inline, no third-party origin, no framing.
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, normalize, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Where the dashboard is served. */
const DASHBOARD_PATH = '/_audit/ui/'

/**
 * The dashboard's policy. `img-src data:` lets ECharts export a chart as a picture and `blob:` shows a
 * dropped image before it is traced; neither can run code.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': DASHBOARD_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // same-origin, not no-referrer: the page's own POSTs (sign out, trace) must carry its Origin (see login-page.ts).
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
}

/** The build output next to the compiled server: dist/web from both src/query/ (tsx) and dist/query/. */
export function defaultDashboardRoot(): string {
  return fileURLToPath(new URL('../../dist/web/', import.meta.url))
}

/** Options of {@link createDashboardRoute}. */
interface DashboardRouteOptions {
  /** The folder holding the built index.html and assets/ (default {@link defaultDashboardRoot}). */
  readonly root?: string
}

/**
 * A handler for `/_audit/ui` and everything under it; false for other paths. Paths without a file extension
 * are the app's own pages and get index.html, so a copied link opens the page it names.
 */
export function createDashboardRoute(
  options: DashboardRouteOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const root = resolve(options.root ?? defaultDashboardRoot())
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    if (url.pathname === '/_audit/ui') {
      res.writeHead(308, { location: DASHBOARD_PATH + url.search, ...SECURITY_HEADERS })
      res.end()
      return true
    }
    if (!url.pathname.startsWith(DASHBOARD_PATH)) return false
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, {
        allow: 'GET, HEAD',
        'content-type': 'text/plain; charset=utf-8',
        ...SECURITY_HEADERS,
      })
      res.end(`method ${req.method} not allowed on ${url.pathname}`)
      return true
    }
    let rel: string
    try {
      rel = decodeURIComponent(url.pathname.slice(DASHBOARD_PATH.length))
    } catch {
      rel = '\u0000'
    }
    const file = normalize(join(root, rel))
    if (rel.includes('\u0000') || (file !== root && !file.startsWith(root + sep))) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS })
      res.end('bad path')
      return true
    }
    const ext = extname(rel)
    const target = ext === '' ? join(root, 'index.html') : file
    const info = await stat(target).catch(() => null)
    if (!info?.isFile()) {
      const missingBuild = ext === ''
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS })
      res.end(
        missingBuild
          ? `the dashboard is not built (no ${target}); run npm run build:web`
          : `no file ${url.pathname}`,
      )
      return true
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(target)] ?? 'application/octet-stream',
      'content-length': String(info.size),
      // Vite names assets by content hash, so they never change; the page itself must be fetched fresh.
      'cache-control': rel.startsWith('assets/') ? 'private, max-age=31536000, immutable' : 'no-store',
      ...SECURITY_HEADERS,
    })
    if (req.method === 'HEAD') {
      res.end()
      return true
    }
    await new Promise<void>((done) => {
      const stream = createReadStream(target)
      stream.on('error', () => {
        res.destroy()
        done()
      })
      stream.on('end', done)
      res.on('close', () => {
        stream.destroy()
        done()
      })
      stream.pipe(res)
    })
    return true
  }
}

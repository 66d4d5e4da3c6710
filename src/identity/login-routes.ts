/**
 * The gateway's sign-in routes: `/_audit/login` (the form, and the token it posts in exchange for a session
 * cookie), `/_audit/logout` and `/_audit/whoami`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { sendJson } from '../comfyui/send-json.js'
import type { AuthConfig } from '../config/security-config.js'
import { readCookie } from './credentials.js'
import { headerValue, type Identifier } from './identify.js'
import type { IdentityDirectory } from './identity-directory.js'
import type { SecurityEvent } from './identity.js'
import { loginPageHtml, PAGE_SECURITY_HEADERS, safeNextPath } from './login-page.js'

/** What {@link createLoginRoutes} works with. */
interface LoginRoutesOptions {
  readonly auth: AuthConfig
  readonly directory: IdentityDirectory
  readonly identifier: Identifier
  /** Receives login and logout events; never throws. */
  readonly emit: (event: SecurityEvent) => void
  /** Mark the session cookie `Secure` even on plain HTTP. */
  readonly secureCookies?: boolean
}

/** Serves one of the sign-in routes; false for any other path. */
type LoginRoutes = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>

const MAX_FORM_BYTES = 8 * 1024

function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_FORM_BYTES) {
        resolve(null)
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))))
    req.on('error', () => resolve(null))
  })
}

function sendPage(
  res: ServerResponse,
  status: number,
  html: string,
  extra: Record<string, string | string[]> = {},
): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...PAGE_SECURITY_HEADERS, ...extra })
  res.end(html)
}

/** A login or logout form must come from this gateway's own page (login CSRF). */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = headerValue(req, 'origin')
  if (origin === undefined || origin === 'null') return origin === undefined
  const hostHeader = headerValue(req, 'host')
  try {
    return hostHeader !== undefined && new URL(origin).host.toLowerCase() === hostHeader.toLowerCase()
  } catch {
    return false
  }
}

/** Builds the sign-in routes. */
export function createLoginRoutes(options: LoginRoutesOptions): LoginRoutes {
  const { auth, directory, identifier, emit } = options

  const cookie = (req: IncomingMessage, value: string, maxAgeSeconds: number): string => {
    const secure = options.secureCookies === true || (req.socket as Partial<TLSSocket>).encrypted === true
    return (
      `${auth.cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}` +
      (secure ? '; Secure' : '')
    )
  }

  const showLoginPage = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const current = auth.mode === 'none' ? null : await identifier.fromCredentials(req)
    sendPage(
      res,
      200,
      loginPageHtml({
        next: url.searchParams.get('next') ?? '/',
        ...(current?.ok ? { user: current.identity.user } : {}),
        ...(auth.mode === 'none' ? { error: 'This gateway runs without authentication.' } : {}),
      }),
    )
  }

  const logIn = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!sameOrigin(req)) return sendPage(res, 403, loginPageHtml({ error: 'Cross-site login refused.' }))
    const form = await readForm(req)
    const token = form?.get('token')?.trim() ?? ''
    const next = safeNextPath(form?.get('next'))
    const verified = token
      ? await directory.verifyToken(token)
      : { ok: false as const, reason: 'no token given' }
    if (!verified.ok) {
      emit({ kind: 'login.failed', user: null, reason: verified.reason, ...identifier.clientOf(req) })
      return sendPage(res, 401, loginPageHtml({ error: 'That token is not valid.', next }))
    }
    const session = await directory.createLoginSession(verified.value.name, auth.sessionTtlMillis)
    if (!session.ok) {
      emit({
        kind: 'login.failed',
        user: verified.value.name,
        reason: session.reason,
        ...identifier.clientOf(req),
      })
      return sendPage(res, 403, loginPageHtml({ error: 'This person may not sign in.', next }))
    }
    emit({ kind: 'login.succeeded', user: verified.value.name, ...identifier.clientOf(req) })
    res.writeHead(303, {
      location: next,
      'set-cookie': cookie(req, session.value.sessionId, Math.floor(auth.sessionTtlMillis / 1000)),
      ...PAGE_SECURITY_HEADERS,
    })
    res.end()
  }

  const logOut = async (req: IncomingMessage, res: ServerResponse, method: string): Promise<void> => {
    if (method !== 'POST') {
      return sendPage(res, 405, loginPageHtml({ error: 'Sign out with the button.' }), { allow: 'POST' })
    }
    if (!sameOrigin(req)) return sendPage(res, 403, loginPageHtml({ error: 'Cross-site logout refused.' }))
    const session = readCookie(headerValue(req, 'cookie'), auth.cookieName)
    if (session !== null) {
      const who = await directory.loginSession(session)
      await directory.endLoginSession(session)
      emit({ kind: 'logout', user: who.ok ? who.value.name : null, ...identifier.clientOf(req) })
    }
    res.writeHead(303, {
      location: '/_audit/login',
      'set-cookie': cookie(req, '', 0),
      ...PAGE_SECURITY_HEADERS,
    })
    res.end()
  }

  const whoAmI = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const r = await identifier.identify(req)
    if (!r.ok) return sendJson(res, r.status, JSON.stringify({ error: r.reason }))
    const { user, role, auth_method } = r.identity
    sendJson(res, 200, JSON.stringify({ user, role, auth_method }))
  }

  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const method = req.method ?? 'GET'
    if (url.pathname === '/_audit/login') {
      if (method === 'GET' || method === 'HEAD') await showLoginPage(req, res, url)
      else if (method !== 'POST')
        sendPage(res, 405, loginPageHtml({ error: 'Use the form.' }), { allow: 'GET, POST' })
      else await logIn(req, res)
      return true
    }
    if (url.pathname === '/_audit/logout') {
      await logOut(req, res, method)
      return true
    }
    if (url.pathname === '/_audit/whoami' && (method === 'GET' || method === 'HEAD')) {
      await whoAmI(req, res)
      return true
    }
    return false
  }
}

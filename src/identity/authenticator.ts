/**
 * Who sends a request: `none` (everyone is `local`, loopback only), `token` (Bearer header, `?token=` on a
 * WebSocket, or the login cookie) or `trusted-header` (a name set by an SSO proxy, believed only from its
 * addresses; tokens and cookies still work for everyone else).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { Submitter } from '../audit/types.js'
import type { AuthConfig, Role } from '../config/security-config.js'
import { addressInRanges, isLoopbackListenHost, parseRange } from './address-match.js'
import { isWebSocketHandshake, readCookie } from './credentials.js'
import { createIdentityDirectory, type IdentityDirectory, type StateStore } from './identity-directory.js'
import { loginPageHtml, PAGE_SECURITY_HEADERS, safeNextPath } from './login-page.js'
import type { ScryptParams } from './tokens.js'

/** How a request was authenticated. */
export type AuthMethod = 'none' | 'token' | 'cookie' | 'trusted-header'

/** An authenticated person, as the gateway and the policy see them. */
export interface Identity {
  /** Person's name (`local` without authentication). */
  readonly user: string
  readonly role: Role
  readonly auth_method: AuthMethod
  readonly client_address: string | null
  readonly user_agent: string | null
}

/** Why a request has no identity: 401 (no or wrong credentials) or 403 (known but not allowed in). */
export interface AuthFailure {
  readonly ok: false
  readonly status: 401 | 403
  readonly reason: string
}

export type AuthResult = { readonly ok: true; readonly identity: Identity } | AuthFailure

/** The audit trail's view of an identity. */
export function toSubmitter(identity: Identity, clientId: string | null = null): Submitter {
  return {
    user: identity.user,
    auth_method: identity.auth_method,
    client_address: identity.client_address,
    user_agent: identity.user_agent,
    client_id: clientId,
  }
}

/** A security event for the audit log (login, logout, provisioning); never carries a credential. */
export interface SecurityEvent {
  readonly kind: 'login.succeeded' | 'login.failed' | 'logout' | 'person.provisioned'
  readonly user: string | null
  readonly client_address: string | null
  readonly user_agent: string | null
  readonly reason?: string
}

/** Options of {@link createAuthenticator}. */
export interface AuthenticatorOptions {
  /** Epoch ms clock. */
  readonly now?: () => number
  /** Receives login, logout and provisioning events (e.g. to append them to the audit log). */
  readonly onEvent?: (event: SecurityEvent) => void
  /** Mark the session cookie `Secure` even on plain HTTP (behind a TLS-terminating proxy). Default: only on TLS. */
  readonly secureCookies?: boolean
  /** Scrypt cost for tokens created by this process (tests use a cheap one). */
  readonly scrypt?: ScryptParams
  /** Use this directory instead of one over `store`. */
  readonly directory?: IdentityDirectory
}

/** What the gateway needs from authentication. */
export interface Authenticator {
  readonly mode: AuthConfig['mode']
  readonly directory: IdentityDirectory
  /** Who sent the request, or why nobody is recognised. */
  identify(req: IncomingMessage): Promise<AuthResult>
  /** Serves `/_audit/login`, `/_audit/logout` and `/_audit/whoami`; false for any other path. */
  handleAuditRoute(req: IncomingMessage, res: ServerResponse): Promise<boolean>
}

/** What {@link createAuthenticator} reads from the config. */
export interface AuthenticatorConfig {
  readonly auth: AuthConfig
  /** `HOST:PORT` the gateway listens on (for the `none` mode's loopback check). */
  readonly listen: string
}

const MAX_FORM_BYTES = 8 * 1024

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}

function listenHost(listen: string): string {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen)
  return m ? m[1]! : listen
}

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

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  })
  res.end(JSON.stringify(body))
}

/**
 * Builds the authenticator for the configured mode. Throws (bad startup config) when `mode: none` would
 * listen beyond loopback without `auth.allowInsecure`, or a trusted proxy range does not parse.
 *
 * @example
 * const auth = createAuthenticator(config, store)
 * const r = await auth.identify(req) // { ok: true, identity } | { ok: false, status: 401, reason }
 */
export function createAuthenticator(
  config: AuthenticatorConfig,
  store: StateStore,
  options: AuthenticatorOptions = {},
): Authenticator {
  const auth = config.auth
  const now = options.now ?? Date.now
  const host = listenHost(config.listen)
  if (auth.mode === 'none' && !isLoopbackListenHost(host) && !auth.allowInsecure) {
    throw new Error(
      `auth.mode is "none" but the gateway would listen on ${config.listen}, beyond this machine: anyone on the ` +
        'network could run, interrupt and delete prompts as "local". Use --auth token (and create an admin with ' +
        '`comfy-audit users add NAME --role admin`), --auth trusted-header behind an SSO proxy, listen on ' +
        '127.0.0.1, or set auth.allowInsecure: true to accept this.',
    )
  }
  const proxies = auth.trustedProxies.map((text) => {
    try {
      return parseRange(text)
    } catch (error) {
      throw new Error(`auth.trustedProxies: ${(error as Error).message}`)
    }
  })
  if (auth.mode === 'trusted-header' && proxies.length === 0) {
    throw new Error(
      'auth.mode is "trusted-header" but auth.trustedProxies is empty: list the SSO proxy addresses',
    )
  }
  const directory =
    options.directory ??
    createIdentityDirectory(store, {
      cacheMillis: auth.tokenCacheMillis,
      now,
      ...(options.scrypt ? { scrypt: options.scrypt } : {}),
    })
  const emit = (event: SecurityEvent): void => {
    try {
      options.onEvent?.(event)
    } catch {
      // A failing listener must not fail a login.
    }
  }

  const clientOf = (req: IncomingMessage): { client_address: string | null; user_agent: string | null } => {
    let address = req.socket.remoteAddress ?? null
    // Behind a trusted proxy the client is the last address it appended, not the proxy itself.
    if (addressInRanges(address, proxies)) {
      const xff = headerValue(req, 'x-forwarded-for')
      const last = xff?.split(',').at(-1)?.trim()
      if (last) address = last
    }
    return { client_address: address, user_agent: headerValue(req, 'user-agent') ?? null }
  }

  const fromPerson = async (
    req: IncomingMessage,
    verified: { ok: true; value: { name: string; role: Role } } | { ok: false; reason: string },
    method: AuthMethod,
  ): Promise<AuthResult> => {
    if (!verified.ok) {
      const forbidden = verified.reason === 'person is disabled'
      return { ok: false, status: forbidden ? 403 : 401, reason: verified.reason }
    }
    return {
      ok: true,
      identity: {
        user: verified.value.name,
        role: verified.value.role,
        auth_method: method,
        ...clientOf(req),
      },
    }
  }

  const credentialIdentity = async (req: IncomingMessage): Promise<AuthResult | null> => {
    const authorization = headerValue(req, 'authorization')
    if (authorization !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
      if (!m) return { ok: false, status: 401, reason: 'Authorization must be "Bearer <token>"' }
      return fromPerson(req, await directory.verifyToken(m[1]!), 'token')
    }
    // Browsers cannot set headers on a WebSocket, so the token may ride in the URL of a real handshake only.
    if (isWebSocketHandshake(req)) {
      const token = new URL(req.url ?? '/', 'http://gateway').searchParams.get('token')
      if (token !== null) return fromPerson(req, await directory.verifyToken(token), 'token')
    }
    const session = readCookie(headerValue(req, 'cookie'), auth.cookieName)
    if (session !== null) return fromPerson(req, await directory.loginSession(session), 'cookie')
    return null
  }

  const identify = async (req: IncomingMessage): Promise<AuthResult> => {
    if (auth.mode === 'none') {
      return {
        ok: true,
        identity: { user: 'local', role: 'admin', auth_method: 'none', ...clientOf(req) },
      }
    }
    if (auth.mode === 'trusted-header' && addressInRanges(req.socket.remoteAddress, proxies)) {
      const name = headerValue(req, auth.trustedHeader)?.trim()
      if (name) {
        let person = await directory.person(name)
        if (!person && auth.autoProvisionRole) {
          const r = await directory.provisionPerson(name, auth.autoProvisionRole, 'trusted-header')
          if (!r.ok) return { ok: false, status: 403, reason: r.reason }
          person = r.value
          emit({ kind: 'person.provisioned', user: name, ...clientOf(req) })
        }
        if (!person) return { ok: false, status: 403, reason: `unknown person ${JSON.stringify(name)}` }
        if (person.disabled) return { ok: false, status: 403, reason: 'person is disabled' }
        return {
          ok: true,
          identity: { user: name, role: person.role, auth_method: 'trusted-header', ...clientOf(req) },
        }
      }
    }
    return (await credentialIdentity(req)) ?? { ok: false, status: 401, reason: 'authentication required' }
  }

  const secure = (req: IncomingMessage): boolean =>
    options.secureCookies === true || (req.socket as Partial<TLSSocket>).encrypted === true

  const cookie = (req: IncomingMessage, value: string, maxAgeSeconds: number): string =>
    `${auth.cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}` +
    (secure(req) ? '; Secure' : '')

  /** A login or logout form must come from this gateway's own page (login CSRF). */
  const sameOrigin = (req: IncomingMessage): boolean => {
    const origin = headerValue(req, 'origin')
    if (origin === undefined || origin === 'null') return origin === undefined
    const hostHeader = headerValue(req, 'host')
    try {
      return hostHeader !== undefined && new URL(origin).host.toLowerCase() === hostHeader.toLowerCase()
    } catch {
      return false
    }
  }

  const handleAuditRoute = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const method = req.method ?? 'GET'
    if (url.pathname === '/_audit/login') {
      if (method === 'GET' || method === 'HEAD') {
        const current = auth.mode === 'none' ? null : await credentialIdentity(req)
        sendPage(
          res,
          200,
          loginPageHtml({
            next: url.searchParams.get('next') ?? '/',
            ...(current?.ok ? { user: current.identity.user } : {}),
            ...(auth.mode === 'none' ? { error: 'This gateway runs without authentication.' } : {}),
          }),
        )
        return true
      }
      if (method !== 'POST') {
        sendPage(res, 405, loginPageHtml({ error: 'Use the form.' }), { allow: 'GET, POST' })
        return true
      }
      if (!sameOrigin(req)) {
        sendPage(res, 403, loginPageHtml({ error: 'Cross-site login refused.' }))
        return true
      }
      const form = await readForm(req)
      const token = form?.get('token')?.trim() ?? ''
      const next = safeNextPath(form?.get('next'))
      const verified = token
        ? await directory.verifyToken(token)
        : { ok: false as const, reason: 'no token given' }
      if (!verified.ok) {
        emit({ kind: 'login.failed', user: null, reason: verified.reason, ...clientOf(req) })
        sendPage(res, 401, loginPageHtml({ error: 'That token is not valid.', next }))
        return true
      }
      const session = await directory.createLoginSession(verified.value.name, auth.sessionTtlMillis)
      if (!session.ok) {
        emit({ kind: 'login.failed', user: verified.value.name, reason: session.reason, ...clientOf(req) })
        sendPage(res, 403, loginPageHtml({ error: 'This person may not sign in.', next }))
        return true
      }
      emit({ kind: 'login.succeeded', user: verified.value.name, ...clientOf(req) })
      res.writeHead(303, {
        location: next,
        'set-cookie': cookie(req, session.value.sessionId, Math.floor(auth.sessionTtlMillis / 1000)),
        ...PAGE_SECURITY_HEADERS,
      })
      res.end()
      return true
    }
    if (url.pathname === '/_audit/logout') {
      if (method !== 'POST') {
        sendPage(res, 405, loginPageHtml({ error: 'Sign out with the button.' }), { allow: 'POST' })
        return true
      }
      if (!sameOrigin(req)) {
        sendPage(res, 403, loginPageHtml({ error: 'Cross-site logout refused.' }))
        return true
      }
      const session = readCookie(headerValue(req, 'cookie'), auth.cookieName)
      if (session !== null) {
        const who = await directory.loginSession(session)
        await directory.endLoginSession(session)
        emit({ kind: 'logout', user: who.ok ? who.value.name : null, ...clientOf(req) })
      }
      res.writeHead(303, {
        location: '/_audit/login',
        'set-cookie': cookie(req, '', 0),
        ...PAGE_SECURITY_HEADERS,
      })
      res.end()
      return true
    }
    if (url.pathname === '/_audit/whoami' && (method === 'GET' || method === 'HEAD')) {
      const r = await identify(req)
      if (!r.ok) sendJson(res, r.status, { error: r.reason })
      else
        sendJson(res, 200, {
          user: r.identity.user,
          role: r.identity.role,
          auth_method: r.identity.auth_method,
        })
      return true
    }
    return false
  }

  return { mode: auth.mode, directory, identify, handleAuditRoute }
}

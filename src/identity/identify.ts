/**
 * Finding the person behind a request, per auth mode: `none` (everyone is `local`), a trusted header from an
 * SSO proxy's address (believed from nowhere else), else a Bearer token, a `?token=` on a real WebSocket
 * handshake, or the login cookie.
 */
import type { IncomingMessage } from 'node:http'
import type { AuthConfig, Role } from '../config/security-config.js'
import { addressInRanges, type AddressRange } from './address-match.js'
import { isWebSocketHandshake, readCookie } from './credentials.js'
import type { IdentityDirectory } from './identity-directory.js'
import type { AuthMethod, AuthResult, SecurityEvent } from './identity.js'

/** Where a request comes from, as recorded with the person. */
interface ClientInfo {
  readonly client_address: string | null
  readonly user_agent: string | null
}

/** The identification steps the authenticator and its login routes share. */
export interface Identifier {
  /** Who sent the request, or why nobody is recognised. */
  identify(req: IncomingMessage): Promise<AuthResult>
  /** The person of the request's token or cookie; null when it carries neither. */
  fromCredentials(req: IncomingMessage): Promise<AuthResult | null>
  /** The client's address (behind a trusted proxy: the one it forwarded) and user agent. */
  clientOf(req: IncomingMessage): ClientInfo
}

/** What {@link createIdentifier} works with. */
interface IdentifierOptions {
  readonly auth: AuthConfig
  /** Address ranges of the trusted SSO proxies. */
  readonly proxies: readonly AddressRange[]
  readonly directory: IdentityDirectory
  /** Receives `person.provisioned`; never throws. */
  readonly emit: (event: SecurityEvent) => void
}

/** The first value of a request header, by any-case name. */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}

type Verified = { ok: true; value: { name: string; role: Role } } | { ok: false; reason: string }

/** Builds the identification for the configured mode. */
export function createIdentifier(options: IdentifierOptions): Identifier {
  const { auth, proxies, directory, emit } = options

  const clientOf = (req: IncomingMessage): ClientInfo => {
    let address = req.socket.remoteAddress ?? null
    // Behind a trusted proxy the client is the last address it appended, not the proxy itself.
    if (addressInRanges(address, proxies)) {
      const xff = headerValue(req, 'x-forwarded-for')
      const last = xff?.split(',').at(-1)?.trim()
      if (last) address = last
    }
    return { client_address: address, user_agent: headerValue(req, 'user-agent') ?? null }
  }

  const fromPerson = (req: IncomingMessage, verified: Verified, method: AuthMethod): AuthResult => {
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

  const fromCredentials = async (req: IncomingMessage): Promise<AuthResult | null> => {
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

  /** Null when the header is absent or empty: the request may still carry a token or cookie. */
  const fromTrustedHeader = async (req: IncomingMessage): Promise<AuthResult | null> => {
    const name = headerValue(req, auth.trustedHeader)?.trim()
    if (!name) return null
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

  const identify = async (req: IncomingMessage): Promise<AuthResult> => {
    if (auth.mode === 'none') {
      return { ok: true, identity: { user: 'local', role: 'admin', auth_method: 'none', ...clientOf(req) } }
    }
    if (auth.mode === 'trusted-header' && addressInRanges(req.socket.remoteAddress, proxies)) {
      const trusted = await fromTrustedHeader(req)
      if (trusted !== null) return trusted
    }
    return (await fromCredentials(req)) ?? { ok: false, status: 401, reason: 'authentication required' }
  }

  return { identify, fromCredentials, clientOf }
}

/**
 * Who sends a request: `none` (everyone is `local`, loopback only), `token` (Bearer header, `?token=` on a
 * WebSocket, or the login cookie) or `trusted-header` (a name set by an SSO proxy, believed only from its
 * addresses; tokens and cookies still work for everyone else).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AuthConfig } from '../config/security-config.js'
import { isLoopbackListenHost, parseRange, type AddressRange } from './address-match.js'
import { createIdentifier } from './identify.js'
import { createIdentityDirectory, type IdentityDirectory, type StateStore } from './identity-directory.js'
import type { AuthResult, SecurityEvent } from './identity.js'
import { createLoginRoutes } from './login-routes.js'
import type { ScryptParams } from './tokens.js'

/** Options of {@link createAuthenticator}. */
interface AuthenticatorOptions {
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
interface AuthenticatorConfig {
  readonly auth: AuthConfig
  /** `HOST:PORT` the gateway listens on (for the `none` mode's loopback check). */
  readonly listen: string
}

function listenHost(listen: string): string {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen)
  return m ? m[1]! : listen
}

/** Refuses the startup configurations that would let anyone in (see {@link createAuthenticator}). */
function trustedProxies(config: AuthenticatorConfig): AddressRange[] {
  const auth = config.auth
  if (auth.mode === 'none' && !isLoopbackListenHost(listenHost(config.listen)) && !auth.allowInsecure) {
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
  return proxies
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
  const proxies = trustedProxies(config)
  const directory =
    options.directory ??
    createIdentityDirectory(store, {
      cacheMillis: auth.tokenCacheMillis,
      now: options.now ?? Date.now,
      ...(options.scrypt ? { scrypt: options.scrypt } : {}),
    })
  const emit = (event: SecurityEvent): void => {
    try {
      options.onEvent?.(event)
    } catch {
      // A failing listener must not fail a login.
    }
  }
  const identifier = createIdentifier({ auth, proxies, directory, emit })
  const handleAuditRoute = createLoginRoutes({
    auth,
    directory,
    identifier,
    emit,
    ...(options.secureCookies !== undefined ? { secureCookies: options.secureCookies } : {}),
  })
  return { mode: auth.mode, directory, identify: identifier.identify, handleAuditRoute }
}

/**
 * Where credentials sit in a request, and how to remove them before anything goes to ComfyUI: the
 * `Authorization` header, `?token=` on a WebSocket URL, the session cookie, the trusted identity header, and
 * any client-supplied `comfy-user` (ComfyUI's `--multi-user` believes that header blindly).
 */

/** The value of cookie `name` in a `Cookie` header, or null. */
export function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return null
}

/** A `Cookie` header without cookie `name`, or null when nothing is left. */
function withoutCookie(header: string, name: string): string | null {
  const kept = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p !== '' && p.slice(0, Math.max(0, p.indexOf('='))).trim() !== name)
  return kept.length ? kept.join('; ') : null
}

function headerTokens(value: string | string[] | undefined): string[] {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '')
  return text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '')
}

/**
 * True only for a real WebSocket handshake: `GET` with `Upgrade: websocket` and `Connection: upgrade` (RFC 6455
 * §4.1). Only such a request may carry its token in the URL (browsers cannot set headers on a WebSocket): a
 * stray `Upgrade:` header on a plain request must not make `?token=` work, or tokens would be put in URLs of
 * ordinary requests, logs and browser history (issue 9 class 4). Custom nodes' own sockets (tunnelled, with
 * the token removed) count as well as `/ws`: their browser code has the same limitation.
 */
export function isWebSocketHandshake(req: {
  readonly method?: string | undefined
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
}): boolean {
  if ((req.method ?? '').toUpperCase() !== 'GET') return false
  if (!headerTokens(req.headers.upgrade).includes('websocket')) return false
  return headerTokens(req.headers.connection).includes('upgrade')
}

/** The request target without a `token` query parameter (keeps every other parameter as sent). */
export function withoutTokenParam(url: string): string {
  const q = url.indexOf('?')
  if (q < 0) return url
  const kept = url
    .slice(q + 1)
    .split('&')
    .filter((pair) => {
      const name = pair.split('=', 1)[0]!
      let decoded = name
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, ' '))
      } catch {
        // an undecodable name is not `token`
      }
      return pair !== '' && decoded !== 'token'
    })
  return kept.length ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q)
}

/** Options of {@link stripCredentialHeaders}. */
interface StripCredentialOptions {
  /** Session cookie name. */
  readonly cookieName: string
  /** Trusted identity header (lower or any case), removed always: ComfyUI has no use for it. */
  readonly identityHeader?: string
  /** Sets `comfy-user` to this value (ComfyUI `--multi-user`); any client-supplied value is removed regardless. */
  readonly comfyUser?: string | null
}

/**
 * A raw header list (`[name, value, ...]`) without credentials: `Authorization`, `Proxy-Authorization`, the
 * session cookie (other cookies stay), the identity header and client-supplied `comfy-user`.
 */
export function stripCredentialHeaders(
  rawHeaders: readonly string[],
  opts: StripCredentialOptions,
): string[] {
  const identity = opts.identityHeader?.toLowerCase()
  const out: string[] = []
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    const value = rawHeaders[i + 1]!
    const lower = name.toLowerCase()
    if (lower === 'authorization' || lower === 'proxy-authorization' || lower === 'comfy-user') continue
    if (identity !== undefined && lower === identity) continue
    if (lower === 'cookie') {
      const rest = withoutCookie(value, opts.cookieName)
      if (rest !== null) out.push(name, rest)
      continue
    }
    out.push(name, value)
  }
  if (opts.comfyUser) out.push('comfy-user', opts.comfyUser)
  return out
}

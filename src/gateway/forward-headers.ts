import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1, plus the de-facto `Keep-Alive` and `Proxy-*` family): they describe
 * one connection, so a proxy must not pass them on. Names listed in `Connection` are added per message.
 */
const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Options of {@link forwardRequestHeaders}. */
interface ForwardRequestOptions {
  /** `host[:port]` of ComfyUI, sent as `Host`. */
  readonly upstreamHost: string
  /** `scheme://host[:port]` of ComfyUI, sent as `Origin` when the client's Origin is the gateway itself. */
  readonly upstreamOrigin: string
  /** Keep `Connection: upgrade` / `Upgrade` (for a tunnelled WebSocket handshake). Default false. */
  readonly keepUpgrade?: boolean
  /** Replace `Content-Length` (for a body the gateway rewrote). */
  readonly contentLength?: number
}

function connectionTokens(rawHeaders: readonly string[]): Set<string> {
  const names = new Set<string>()
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue
    for (const token of rawHeaders[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase()
      if (name) names.add(name)
    }
  }
  return names
}

/**
 * Whether `origin` names the same host as the `host` header, with ComfyUI's leniency: the ports are compared
 * only when both sides give one (its origin-only middleware in `server.py` does the same).
 */
export function originMatchesHost(host: string, origin: string): boolean {
  let parsed: URL
  let hostUrl: URL
  try {
    parsed = new URL(origin)
    hostUrl = new URL(`http://${host}`)
  } catch {
    return false
  }
  if (parsed.hostname.toLowerCase() !== hostUrl.hostname.toLowerCase()) return false
  // URL drops default ports; recover whether each side spelled one.
  const originPort = explicitPort(origin.replace(/^[a-z][a-z0-9+.-]*:\/\//i, ''))
  const hostPort = explicitPort(host)
  if (originPort === null || hostPort === null) return true
  return originPort === hostPort
}

function explicitPort(authority: string): string | null {
  const bare = authority.split('/')[0]!
  const m = /:(\d+)$/.exec(bare.startsWith('[') ? bare.slice(bare.indexOf(']') + 1) : bare)
  return m ? m[1]! : null
}

/** Whether a `Host` value names this machine by a literal loopback name (no DNS lookup on the hot path). */
export function isLoopbackHost(host: string): boolean {
  let hostname: string
  try {
    hostname = new URL(`http://${host}`).hostname.toLowerCase()
  } catch {
    return false
  }
  if (hostname === 'localhost' || hostname.endsWith('.localhost')) return true
  if (hostname === '[::1]') return true
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
}

/**
 * The headers to send upstream for a downstream request, as a raw `[name, value, ...]` list (keeps
 * duplicates and spelling): hop-by-hop headers removed, `Host` set to ComfyUI, `X-Forwarded-For/Proto/Host`
 * added, and `Origin` rewritten to ComfyUI's own origin when it names the gateway (so ComfyUI's origin-only
 * middleware, which compares `Origin` with `Host`, accepts it). A foreign `Origin` is passed on unchanged,
 * so ComfyUI still refuses cross-site requests exactly as it would without the gateway.
 */
export function forwardRequestHeaders(req: IncomingMessage, opts: ForwardRequestOptions): string[] {
  const raw = req.rawHeaders
  const dropped = connectionTokens(raw)
  const out: string[] = []
  let originalHost: string | null = null
  let forwardedFor: string | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    const lower = name.toLowerCase()
    if (lower === 'host') {
      originalHost = value
      continue
    }
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === null ? value : `${forwardedFor}, ${value}`
      continue
    }
    if (lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue
    // The gateway's own server already answered any `Expect: 100-continue`.
    if (lower === 'expect') continue
    if (lower === 'content-length' && opts.contentLength !== undefined) continue
    if (opts.keepUpgrade && (lower === 'connection' || lower === 'upgrade')) {
      out.push(name, value)
      continue
    }
    if (HOP_BY_HOP_HEADERS.has(lower) || dropped.has(lower)) continue
    out.push(name, value)
  }
  if (originalHost !== null) {
    for (let i = 0; i < out.length; i += 2) {
      if (out[i]!.toLowerCase() === 'origin' && originMatchesHost(originalHost, out[i + 1]!)) {
        out[i + 1] = opts.upstreamOrigin
      }
    }
  }
  if (opts.contentLength !== undefined) out.push('Content-Length', String(opts.contentLength))
  out.push('Host', opts.upstreamHost)
  const address = req.socket.remoteAddress
  if (address !== undefined) forwardedFor = forwardedFor === null ? address : `${forwardedFor}, ${address}`
  if (forwardedFor !== null) out.push('X-Forwarded-For', forwardedFor)
  out.push('X-Forwarded-Proto', (req.socket as Partial<TLSSocket>).encrypted ? 'https' : 'http')
  if (originalHost !== null) out.push('X-Forwarded-Host', originalHost)
  return out
}

/** Upstream response headers minus hop-by-hop ones, as a raw list for `res.writeHead`. */
export function forwardResponseHeaders(rawHeaders: readonly string[]): string[] {
  const dropped = connectionTokens(rawHeaders)
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase()
    if (HOP_BY_HOP_HEADERS.has(lower) || dropped.has(lower)) continue
    out.push(rawHeaders[i]!, rawHeaders[i + 1]!)
  }
  return out
}

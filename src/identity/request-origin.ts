/**
 * Host (DNS rebinding) and Origin (CSRF) checks. The gateway rewrites both headers for ComfyUI, so ComfyUI's
 * own origin check no longer protects anyone: the gateway has to check them itself.
 */
import type { IncomingMessage } from 'node:http'
import { hostname } from 'node:os'
import { addressBytes } from './address-match.js'

/** The first value of a request header. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function hostnameOf(hostHeader: string): string | null {
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase().replace(/^\[|\]$/g, '')
  } catch {
    return null
  }
}

/** What {@link createOriginChecks} accepts besides this machine's names. */
interface OriginCheckOptions {
  /** The host the gateway listens on (its name is an allowed `Host`). */
  readonly listenHost: string
  readonly allowedHosts: readonly string[]
  /** Origins (URLs) that may send state-changing requests besides the gateway's own. */
  readonly allowedOrigins: readonly string[]
}

/** The two checks every request and upgrade goes through before authentication. */
export interface OriginChecks {
  /** A DNS name that is not ours is a rebinding attempt; IP literals cannot be rebound. */
  hostAllowed(req: IncomingMessage): boolean
  /** Browsers send Origin (and Sec-Fetch-Site) on cross-site requests; API clients send neither. */
  originAllowed(req: IncomingMessage): boolean
}

/** Builds the checks; throws on an allowed origin that is not a URL (bad startup config). */
export function createOriginChecks(options: OriginCheckOptions): OriginChecks {
  const allowedHostNames = new Set(
    [options.listenHost, 'localhost', hostname(), ...options.allowedHosts]
      .map((h) => hostnameOf(h) ?? h.toLowerCase())
      .filter((h) => h !== ''),
  )
  const allowedOrigins = new Set(options.allowedOrigins.map((o) => new URL(o).origin))

  return {
    hostAllowed(req) {
      const h = header(req, 'host')
      if (h === undefined) return true
      const name = hostnameOf(h)
      if (name === null) return false
      return addressBytes(name) !== null || allowedHostNames.has(name) || name.endsWith('.localhost')
    },

    originAllowed(req) {
      const origin = header(req, 'origin')
      if (origin === undefined) {
        const site = header(req, 'sec-fetch-site')
        return site === undefined || site === 'same-origin' || site === 'none'
      }
      if (allowedOrigins.has(origin)) return true
      const h = header(req, 'host')
      try {
        return h !== undefined && new URL(origin).host.toLowerCase() === h.toLowerCase()
      } catch {
        return false
      }
    },
  }
}

/**
 * One canonical reading of a request target, made before routing, policy, capture and forwarding (issue 9
 * class 1). The gateway decides on this reading and forwards exactly it, so ComfyUI (aiohttp) cannot route
 * the request anywhere the gateway did not look.
 *
 * - Absolute-form (`http://x/free`) is turned into origin-form (`/free`): aiohttp routes it by its path, so
 *   the gateway must too. Asterisk-form, authority-form and any other scheme are refused.
 * - `#`, bytes outside printable ASCII, malformed `%XX` and percent-escapes that are not UTF-8 are refused.
 * - The path is percent-decoded as aiohttp's router does (yarl's `path_safe`): every escape is decoded except
 *   `%2F`, `%25` and `%2B`, which stay encoded (upper-case hex), since aiohttp routes on them encoded and
 *   decodes them only inside a route's `{name}` value.
 * - Runs of `/` become one (aiohttp would not merge them, but the gateway forwards the merged path, so both
 *   sides see the same one).
 * - Dot segments, backslashes, NUL and control characters are refused, also when they appear only after the
 *   kept escapes are decoded (`..%2F..` inside a `{filename}`).
 */

/** A request target the gateway can act on. */
interface CanonicalTarget {
  readonly ok: true
  /** The path as aiohttp's router sees it (kept escapes still encoded). */
  readonly path: string
  /** `?…` as the client sent it, or `''`. */
  readonly search: string
  /** What is forwarded: the canonical path, re-encoded, plus `search`. */
  readonly url: string
}

/** Why a target was refused. */
interface RefusedTarget {
  readonly ok: false
  readonly reason: string
}

const HEX = /^[0-9A-Fa-f]{2}$/
/** Escapes aiohttp keeps encoded in the path it routes on: `/`, `%`, `+`. */
const KEPT = new Set([0x2f, 0x25, 0x2b])
/** Characters a path may carry literally (RFC 3986 pchar and `/`). */
const LITERAL = /[A-Za-z0-9\-._~!$&'()*,;=:@/+]/
const utf8 = new TextDecoder('utf-8', { fatal: true })

function refuse(reason: string): RefusedTarget {
  return { ok: false, reason }
}

/** Decodes `%XX` runs of `raw` except the kept ones; null when an escape is malformed or not UTF-8. */
function decodePath(raw: string, keep: boolean): string | null {
  let out = ''
  let i = 0
  while (i < raw.length) {
    const c = raw.charCodeAt(i)
    if (c !== 0x25) {
      out += raw[i]
      i++
      continue
    }
    const bytes: number[] = []
    let kept = ''
    while (i < raw.length && raw.charCodeAt(i) === 0x25) {
      const hex = raw.slice(i + 1, i + 3)
      if (!HEX.test(hex)) return null
      const b = parseInt(hex, 16)
      if (keep && KEPT.has(b)) {
        kept = `%${hex.toUpperCase()}`
        i += 3
        break
      }
      bytes.push(b)
      i += 3
    }
    if (bytes.length > 0) {
      try {
        out += utf8.decode(Uint8Array.from(bytes))
      } catch {
        return null
      }
    }
    out += kept
  }
  return out
}

function encodePath(path: string): string {
  let out = ''
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!
    if (ch === '%') {
      // Only a kept escape (`%2F`, `%25`, `%2B`) is left in the path; a decoded `%` was refused earlier.
      out += path.slice(i, i + 3)
      i += 2
    } else if (LITERAL.test(ch)) out += ch
    else {
      const cp = path.codePointAt(i)!
      const s = String.fromCodePoint(cp)
      out += encodeURIComponent(s)
      i += s.length - 1
    }
  }
  return out
}

/**
 * Canonicalises a raw request target (`req.url`).
 *
 * @example
 * canonicalTarget('http://x//api/prom%70t?a=1') // { ok: true, path: '/api/prompt', search: '?a=1', url: '/api/prompt?a=1' }
 */
export function canonicalTarget(raw: string | undefined): CanonicalTarget | RefusedTarget {
  let target = raw ?? '/'
  if (!/^[\x21-\x7e]*$/.test(target)) return refuse('request target has bytes outside printable ASCII')
  if (target.includes('#')) return refuse('request target has a fragment')
  if (!target.startsWith('/')) {
    const m = /^https?:\/\/[^/?]*/i.exec(target)
    if (m === null)
      return refuse('request target must be origin-form (/path) or absolute-form (http://host/path)')
    target = target.slice(m[0].length)
    if (!target.startsWith('/')) target = '/' + target
  }
  const q = target.indexOf('?')
  const rawPath = q < 0 ? target : target.slice(0, q)
  const search = q < 0 ? '' : target.slice(q)
  const routed = decodePath(rawPath, true)
  const full = decodePath(rawPath, false)
  if (routed === null || full === null) return refuse('malformed percent-encoding in the path')
  // Past the kept escapes, `%` is literal only as `%25`; a stray one would be read differently upstream.
  if (/%(?![0-9A-F]{2})/.test(routed)) return refuse('malformed percent-encoding in the path')
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\0-\x1f\x7f\\]/.test(full)) return refuse('control characters or backslash in the path')
  if (full.split('/').some((seg) => seg === '.' || seg === '..')) return refuse('dot segments in the path')
  const path = routed.replace(/\/{2,}/g, '/')
  return { ok: true, path, search, url: encodePath(path) + search }
}

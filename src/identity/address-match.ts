/**
 * Address checks for trusted proxies and the listen address: CIDR matching for IPv4 and IPv6 (IPv4-mapped
 * IPv6 addresses, as Node reports them on dual-stack sockets, match IPv4 ranges).
 */
import { isIP } from 'node:net'

/** A parsed address range. */
export interface AddressRange {
  readonly bytes: Uint8Array
  readonly prefixBits: number
}

function ipv4Bytes(text: string): Uint8Array | null {
  const parts = text.split('.')
  if (parts.length !== 4) return null
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i]!)) return null
    const n = Number(parts[i])
    if (n > 255) return null
    out[i] = n
  }
  return out
}

function ipv6Bytes(text: string): Uint8Array | null {
  if (isIP(text) !== 6) return null
  let head = text
  let v4: Uint8Array | null = null
  const lastColon = text.lastIndexOf(':')
  if (text.slice(lastColon + 1).includes('.')) {
    v4 = ipv4Bytes(text.slice(lastColon + 1))
    if (!v4) return null
    head = text.slice(0, lastColon + 1) + '0:0'
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined]
  const l = left ? left.split(':') : []
  const r = right === undefined ? [] : right ? right.split(':') : []
  const missing = 8 - l.length - r.length
  if (right === undefined ? l.length !== 8 : missing < 0) return null
  const groups = [...l, ...Array<string>(right === undefined ? 0 : missing).fill('0'), ...r]
  const out = new Uint8Array(16)
  groups.forEach((g, i) => {
    const n = parseInt(g, 16)
    out[i * 2] = n >> 8
    out[i * 2 + 1] = n & 0xff
  })
  if (v4) out.set(v4, 12)
  return out
}

/** The bytes of an address: 4 for IPv4 and IPv4-mapped IPv6, 16 for other IPv6; null if not an address. */
export function addressBytes(address: string): Uint8Array | null {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '')
  const v4 = ipv4Bytes(bare)
  if (v4) return v4
  const v6 = ipv6Bytes(bare)
  if (!v6) return null
  const mapped = v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff
  return mapped ? v6.slice(12) : v6
}

/** Parses `10.0.0.0/8`, `10.0.0.5`, `::1`, `fd00::/8`; throws naming the text when it is none of these. */
export function parseRange(text: string): AddressRange {
  const [addr, prefix] = text.split('/')
  const bytes = addressBytes(addr ?? '')
  const max = bytes ? bytes.length * 8 : 0
  const bits = prefix === undefined ? max : Number(prefix)
  if (!bytes || !Number.isInteger(bits) || bits < 0 || bits > max) {
    throw new Error(`expected an address or CIDR such as 10.0.0.0/8, got ${JSON.stringify(text)}`)
  }
  return { bytes, prefixBits: bits }
}

/** Whether `address` lies in one of the ranges. */
export function addressInRanges(
  address: string | undefined | null,
  ranges: readonly AddressRange[],
): boolean {
  if (!address) return false
  const bytes = addressBytes(address)
  if (!bytes) return false
  return ranges.some((range) => {
    if (range.bytes.length !== bytes.length) return false
    let bits = range.prefixBits
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff
      if ((bytes[i]! & mask) !== (range.bytes[i]! & mask)) return false
    }
    return true
  })
}

/** Whether a listen host is loopback-only (`127.0.0.0/8`, `::1`, `localhost`); `0.0.0.0` and `::` are not. */
export function isLoopbackListenHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === 'localhost') return true
  return addressInRanges(h, [parseRange('127.0.0.0/8'), parseRange('::1')])
}

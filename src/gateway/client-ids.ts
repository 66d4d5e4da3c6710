import { createHash, randomUUID } from 'node:crypto'

/**
 * Client ids as ComfyUI sees them. A downstream id is namespaced per person (`u-<hash>~<id>`), so nobody can
 * receive another person's events by reusing their id (ids leak through `/queue` and `/history`). Prompts
 * that came without a client id run under a gateway-owned id per person (`g-<hash>~noclient`); the distinct
 * prefix means no downstream id can ever map onto it.
 */
const SEPARATOR = '~'
const NAMESPACED = /^([ug])-([0-9a-f]{12})~/

/** Short, stable hash of a user name (48 bits: namespaces, not secrets). */
function userHash(user: string): string {
  return createHash('sha256').update(user, 'utf8').digest('hex').slice(0, 12)
}

/** The namespaced upstream id for `downstreamId` of `user`. */
export function namespacedClientId(user: string, downstreamId: string): string {
  return `u-${userHash(user)}${SEPARATOR}${downstreamId}`
}

/** The gateway-owned upstream id that `user`'s prompts without a client id run under. */
export function noClientId(user: string): string {
  return `g-${userHash(user)}${SEPARATOR}noclient`
}

/** What an upstream id is: a person's own client, a gateway-owned no-client id, or not one of ours. */
type ParsedClientId =
  { kind: 'client'; downstreamId: string } | { kind: 'noclient'; downstreamId: null } | { kind: 'foreign' }

/** Splits an upstream id made by {@link namespacedClientId} or {@link noClientId}. */
export function parseClientId(upstreamId: string): ParsedClientId {
  const m = NAMESPACED.exec(upstreamId)
  if (!m) return { kind: 'foreign' }
  if (m[1] === 'g') return { kind: 'noclient', downstreamId: null }
  return { kind: 'client', downstreamId: upstreamId.slice(m[0].length) }
}

/** A fresh id for a socket that gave none, in ComfyUI's form (`uuid4().hex`: 32 hex digits, no dashes). */
export function generateSocketId(): string {
  return randomUUID().replaceAll('-', '')
}

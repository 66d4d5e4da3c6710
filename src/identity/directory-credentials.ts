/**
 * Checking tokens and login sessions against the directory. Scrypt is deliberately slow, so a verified token
 * or session is remembered for `cacheMillis`; every remembered credential is forgotten when the directory
 * moves, so a disable or re-token bites on the next request.
 */
import { randomBytes } from 'node:crypto'
import type { DirectoryDocument } from './directory-document.js'
import {
  LOGIN_PREFIX,
  personIn,
  zLogin,
  type Directory,
  type DirectoryResult,
  type Person,
  type StateStore,
} from './directory-schema.js'
import type { IdentityDirectory } from './identity-directory.js'
import { credentialDigest, parseToken, verifySecret } from './tokens.js'

/** The credential half of {@link IdentityDirectory}. */
type DirectoryCredentials = Pick<
  IdentityDirectory,
  'verifyToken' | 'createLoginSession' | 'loginSession' | 'endLoginSession'
>

interface CachedCredential {
  readonly user: string
  readonly until: number
  /** For sessions: when it was created (compared with `sessions_valid_after`) and when it expires. */
  readonly created_at?: string
  readonly expires_at?: string
}

/** Verified tokens and sessions, by digest of the credential (never the credential itself). */
interface CredentialCaches {
  readonly tokens: Map<string, CachedCredential>
  readonly sessions: Map<string, CachedCredential>
  clear(): void
}

export function createCredentialCaches(): CredentialCaches {
  const tokens = new Map<string, CachedCredential>()
  const sessions = new Map<string, CachedCredential>()
  return {
    tokens,
    sessions,
    clear() {
      tokens.clear()
      sessions.clear()
    },
  }
}

/** What {@link createDirectoryCredentials} works with. */
interface DirectoryCredentialsOptions {
  readonly store: StateStore
  readonly doc: DirectoryDocument
  readonly caches: CredentialCaches
  readonly now: () => number
  readonly cacheMillis: number
}

const SESSION_ID = /^[A-Za-z0-9_-]{43}$/

function enabledPerson(d: Directory, name: string): DirectoryResult<Person> {
  const p = personIn(d, name)
  if (!p) return { ok: false, reason: 'unknown person' }
  if (p.disabled) return { ok: false, reason: 'person is disabled' }
  return { ok: true, value: p }
}

/** Builds the credential checks. */
export function createDirectoryCredentials(options: DirectoryCredentialsOptions): DirectoryCredentials {
  const { store, doc, caches, now, cacheMillis } = options

  return {
    async verifyToken(token) {
      const parsed = parseToken(token)
      if (!parsed) return { ok: false, reason: 'malformed token' }
      const d = await doc.current()
      const digest = credentialDigest(token)
      const hit = caches.tokens.get(digest)
      if (hit && hit.until > now()) return enabledPerson(d, hit.user)
      let owner: Person | undefined
      let record: Person['tokens'][number] | undefined
      for (const p of Object.values(d.people)) {
        record = p.tokens.find((t) => t.id === parsed.id)
        if (record) {
          owner = p
          break
        }
      }
      if (!owner || !record) return { ok: false, reason: 'unknown token' }
      if (!(await verifySecret(parsed.secret, record))) return { ok: false, reason: 'wrong token secret' }
      const fresh = await doc.current()
      // The directory may have moved while scrypt ran: only remember the token if it is still on record.
      const still = personIn(fresh, owner.name)
      if (!still?.tokens.some((t) => t.id === parsed.id)) return { ok: false, reason: 'token revoked' }
      if (cacheMillis > 0) caches.tokens.set(digest, { user: owner.name, until: now() + cacheMillis })
      return enabledPerson(fresh, owner.name)
    },

    async createLoginSession(name, ttlMillis) {
      const d = await doc.current()
      const p = enabledPerson(d, name)
      if (!p.ok) return p
      const sessionId = randomBytes(32).toString('base64url')
      const createdAt = new Date(now()).toISOString()
      const expiresAt = new Date(now() + ttlMillis).toISOString()
      await store.setState(LOGIN_PREFIX + credentialDigest(sessionId), {
        user: name,
        created_at: createdAt,
        expires_at: expiresAt,
      })
      return { ok: true, value: { sessionId, expiresAt } }
    },

    async loginSession(sessionId) {
      if (!SESSION_ID.test(sessionId)) return { ok: false, reason: 'malformed session' }
      const d = await doc.current()
      const digest = credentialDigest(sessionId)
      let entry = caches.sessions.get(digest)
      if (!entry || entry.until <= now()) {
        const raw = await store.getState(LOGIN_PREFIX + digest)
        const parsed = zLogin.safeParse(raw)
        if (!parsed.success) return { ok: false, reason: 'unknown session' }
        entry = { ...parsed.data, until: now() + cacheMillis }
        if (cacheMillis > 0) caches.sessions.set(digest, entry)
      }
      if (Date.parse(entry.expires_at!) <= now()) return { ok: false, reason: 'session expired' }
      const p = enabledPerson(d, entry.user)
      if (!p.ok) return p
      const after = p.value.sessions_valid_after
      if (after !== null && entry.created_at! < after) return { ok: false, reason: 'session revoked' }
      return p
    },

    async endLoginSession(sessionId) {
      if (!SESSION_ID.test(sessionId)) return
      const digest = credentialDigest(sessionId)
      caches.sessions.delete(digest)
      await store.setState(LOGIN_PREFIX + digest, null)
    },
  }
}

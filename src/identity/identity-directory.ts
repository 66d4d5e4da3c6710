/**
 * People, their roles and API tokens, and browser login sessions, kept in the store's key-value state so that
 * every dialect has them without a migration.
 *
 * Why a version counter: the CLI (another process) changes people while a gateway runs. The directory is one
 * state document plus a small `identity.version` key written after it; the gateway reads only the version on
 * each request (one primary-key lookup, shared by concurrent requests) and reloads the document, dropping
 * every cached token and session, when it moved. So disabling a person takes effect on the next request,
 * while verified tokens are still remembered (scrypt is deliberately slow) for `tokenCacheMillis`.
 */
import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import type { JsonValue } from '../audit/types.js'
import { ROLES, type Role } from '../config/security-config.js'
import {
  credentialDigest,
  DEFAULT_SCRYPT,
  issueToken,
  parseToken,
  verifySecret,
  type ScryptParams,
} from './tokens.js'

/** The part of the store the directory uses. */
export interface StateStore {
  getState(key: string): Promise<JsonValue | undefined>
  setState(key: string, value: JsonValue): Promise<void>
}

const DIRECTORY_KEY = 'identity.directory'
const VERSION_KEY = 'identity.version'
const LOGIN_PREFIX = 'identity.login.'

/** Names people may have: no `:` (reserved for `local:<os user>`), no spaces, at most 64 characters. */
export const PERSON_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/

const zStoredToken = z.object({
  id: z.string(),
  salt: z.string(),
  hash: z.string(),
  N: z.number().int(),
  r: z.number().int(),
  p: z.number().int(),
  created_at: z.string(),
})

const zPerson = z.object({
  name: z.string(),
  role: z.enum(ROLES),
  disabled: z.boolean(),
  created_at: z.string(),
  created_by: z.string(),
  disabled_at: z.string().nullable(),
  /** Login sessions created before this time are no longer valid (set when the person is re-tokened). */
  sessions_valid_after: z.string().nullable(),
  tokens: z.array(zStoredToken),
})

/** One person as stored. */
export type Person = z.infer<typeof zPerson>

/** One change to the people list, kept in the directory so a running gateway can put it in its audit log. */
const zPersonChange = z.object({
  seq: z.number().int(),
  at: z.string(),
  by: z.string(),
  action: z.enum(['added', 'provisioned', 'disabled', 'enabled', 'retokened', 'role_changed']),
  person: z.string(),
  /** The new role (`role_changed` only). */
  role: z.enum(ROLES).optional(),
})
export type PersonChange = z.infer<typeof zPersonChange>
/** Changes kept in the journal (the audit log keeps them for good). */
const MAX_JOURNAL = 1000

const zDirectory = z.object({
  version: z.number().int(),
  people: z.record(z.string(), zPerson),
  changes: z.array(zPersonChange).default([]),
})
type Directory = z.infer<typeof zDirectory>

const zLogin = z.object({ user: z.string(), created_at: z.string(), expires_at: z.string() })

/** A person as listed (no token hashes). */
export interface PersonSummary {
  readonly name: string
  readonly role: Role
  readonly disabled: boolean
  readonly created_at: string
  readonly created_by: string
  readonly tokens: number
  /** Creation time of the newest token, or null. */
  readonly token_created_at: string | null
}

export type DirectoryResult<T> = { ok: true; value: T } | { ok: false; reason: string }

/** Options of {@link createIdentityDirectory}. */
export interface IdentityDirectoryOptions {
  /** How long a verified token or session is remembered, ms (default 30 000; 0 = always re-verify). */
  readonly cacheMillis?: number
  /** Scrypt cost for new tokens (default N=2^14, r=8, p=1). */
  readonly scrypt?: ScryptParams
  /** Epoch ms clock. */
  readonly now?: () => number
}

/** People, tokens and login sessions; see the module comment for how changes reach a running gateway. */
export interface IdentityDirectory {
  /** Adds a person with a first token; the token text is returned once and never stored. */
  addPerson(
    name: string,
    role: Role,
    by: string,
  ): Promise<DirectoryResult<{ person: PersonSummary; token: string }>>
  /** Adds a person without a token (trusted-header auto-provisioning). Existing people are returned unchanged. */
  provisionPerson(name: string, role: Role, by: string): Promise<DirectoryResult<Person>>
  listPeople(): Promise<PersonSummary[]>
  /** The current record of a person (reloaded if the directory changed), or undefined. */
  person(name: string): Promise<Person | undefined>
  /** Disables a person: their tokens and sessions stop working on the next request. */
  disablePerson(name: string, by: string): Promise<DirectoryResult<PersonSummary>>
  /** Enables a disabled person again (their old tokens were revoked when re-tokened, not when disabled). */
  enablePerson(name: string, by: string): Promise<DirectoryResult<PersonSummary>>
  /** Gives a person another role; it applies from their next request (tokens and sessions stay valid). */
  setRole(name: string, role: Role, by: string): Promise<DirectoryResult<PersonSummary>>
  /** Issues a new token and revokes every older token and login session of the person. */
  reissueToken(name: string, by: string): Promise<DirectoryResult<{ person: PersonSummary; token: string }>>
  /** Checks an `id.secret` token: the enabled person it belongs to, or why not. */
  verifyToken(token: string): Promise<DirectoryResult<Person>>
  /** Starts a browser session for an enabled person; returns the session id to put in the cookie. */
  createLoginSession(
    name: string,
    ttlMillis: number,
  ): Promise<DirectoryResult<{ sessionId: string; expiresAt: string }>>
  /** The enabled person a session id belongs to, or why not. */
  loginSession(sessionId: string): Promise<DirectoryResult<Person>>
  /** Ends a session (logout). */
  endLoginSession(sessionId: string): Promise<void>
  /** Changes to the people list with `seq` greater than `afterSeq` (the journal keeps the last 1000). */
  changesSince(afterSeq: number): Promise<PersonChange[]>
}

function summary(p: Person): PersonSummary {
  const newest = p.tokens.reduce<string | null>(
    (a, t) => (a === null || t.created_at > a ? t.created_at : a),
    null,
  )
  return {
    name: p.name,
    role: p.role,
    disabled: p.disabled,
    created_at: p.created_at,
    created_by: p.created_by,
    tokens: p.tokens.length,
    token_created_at: newest,
  }
}

interface CachedCredential {
  readonly user: string
  readonly until: number
  /** For sessions: when it was created (compared with `sessions_valid_after`) and when it expires. */
  readonly created_at?: string
  readonly expires_at?: string
}

/** Opens the identity directory over the store's state. */
export function createIdentityDirectory(
  store: StateStore,
  options: IdentityDirectoryOptions = {},
): IdentityDirectory {
  const now = options.now ?? Date.now
  const cacheMillis = options.cacheMillis ?? 30_000
  const scryptParams = options.scrypt ?? DEFAULT_SCRYPT
  let cached: Directory | null = null
  let refreshing: Promise<Directory> | null = null
  const tokenCache = new Map<string, CachedCredential>()
  const sessionCache = new Map<string, CachedCredential>()

  const load = async (): Promise<Directory> => {
    const raw = await store.getState(DIRECTORY_KEY)
    if (raw === undefined || raw === null) return { version: 0, people: {}, changes: [] }
    const parsed = zDirectory.safeParse(raw)
    if (!parsed.success)
      throw new Error(`identity directory in the store is malformed: ${parsed.error.message}`)
    return parsed.data
  }

  /** The current directory: one version read per call (shared by concurrent callers), a reload when it moved. */
  const current = (): Promise<Directory> => {
    refreshing ??= (async () => {
      try {
        const v = await store.getState(VERSION_KEY)
        const version = typeof v === 'number' ? v : 0
        if (cached === null || cached.version !== version) {
          const next = await load()
          // Never trust a credential remembered under an older directory: a disable or re-token must bite now.
          tokenCache.clear()
          sessionCache.clear()
          cached = next
        }
        return cached
      } finally {
        refreshing = null
      }
    })()
    return refreshing
  }

  /**
   * Read-modify-write of the directory. The writers are the CLI, the gateway's People page (the dashboard) and
   * auto-provisioning.
   */
  const update = async <T>(
    change: (d: Directory) => DirectoryResult<T>,
    journal?: Omit<PersonChange, 'seq' | 'at'>,
  ): Promise<DirectoryResult<T>> => {
    const d = structuredClone(await load())
    const r = change(d)
    if (!r.ok) return r
    if (journal) {
      const last = d.changes[d.changes.length - 1]
      d.changes.push({ ...journal, seq: (last?.seq ?? 0) + 1, at: iso() })
      if (d.changes.length > MAX_JOURNAL) d.changes.splice(0, d.changes.length - MAX_JOURNAL)
    }
    d.version += 1
    await store.setState(DIRECTORY_KEY, d as unknown as JsonValue)
    // Written after the document, so a reader that sees the new version always finds the new document.
    await store.setState(VERSION_KEY, d.version)
    tokenCache.clear()
    sessionCache.clear()
    cached = d
    return r
  }

  const iso = (): string => new Date(now()).toISOString()

  const newPerson = (name: string, role: Role, by: string): Person => ({
    name,
    role,
    disabled: false,
    created_at: iso(),
    created_by: by,
    disabled_at: null,
    sessions_valid_after: null,
    tokens: [],
  })

  const checkName = (name: string): string | null =>
    !PERSON_NAME.test(name)
      ? `invalid name ${JSON.stringify(name)}: use letters, digits, . _ @ - (at most 64, no spaces or colons)`
      : name === 'local'
        ? 'the name "local" is reserved for the gateway without authentication'
        : null

  const enabledPerson = (d: Directory, name: string): DirectoryResult<Person> => {
    const p = Object.hasOwn(d.people, name) ? d.people[name] : undefined
    if (!p) return { ok: false, reason: 'unknown person' }
    if (p.disabled) return { ok: false, reason: 'person is disabled' }
    return { ok: true, value: p }
  }

  return {
    async addPerson(name, role, by) {
      const bad = checkName(name)
      if (bad) return { ok: false, reason: bad }
      const { token, record } = await issueToken(scryptParams, now)
      return update(
        (d) => {
          if (Object.hasOwn(d.people, name)) return { ok: false, reason: `${name} already exists` }
          const p = { ...newPerson(name, role, by), tokens: [record] }
          d.people[name] = p
          return { ok: true, value: { person: summary(p), token } }
        },
        { action: 'added', person: name, by },
      )
    },

    async provisionPerson(name, role, by) {
      const bad = checkName(name)
      if (bad) return { ok: false, reason: bad }
      const d = await current()
      const existing = Object.hasOwn(d.people, name) ? d.people[name] : undefined
      if (existing) return { ok: true, value: existing }
      return update(
        (doc) => {
          const p =
            (Object.hasOwn(doc.people, name) ? doc.people[name] : undefined) ?? newPerson(name, role, by)
          doc.people[name] = p
          return { ok: true, value: p }
        },
        { action: 'provisioned', person: name, by },
      )
    },

    async listPeople() {
      const d = await current()
      return Object.values(d.people)
        .sort((a, b) => a.name.localeCompare(b.name))
        .map(summary)
    },

    async person(name) {
      const d = await current()
      return Object.hasOwn(d.people, name) ? d.people[name] : undefined
    },

    disablePerson(name, by) {
      return update(
        (d) => {
          const p = Object.hasOwn(d.people, name) ? d.people[name] : undefined
          if (!p) return { ok: false, reason: `no person named ${JSON.stringify(name)}` }
          p.disabled = true
          p.disabled_at = iso()
          return { ok: true, value: summary(p) }
        },
        { action: 'disabled', person: name, by },
      )
    },

    setRole(name, role, by) {
      return update(
        (d) => {
          const p = Object.hasOwn(d.people, name) ? d.people[name] : undefined
          if (!p) return { ok: false, reason: `no person named ${JSON.stringify(name)}` }
          p.role = role
          return { ok: true, value: summary(p) }
        },
        { action: 'role_changed', person: name, by, role },
      )
    },

    enablePerson(name, by) {
      return update(
        (d) => {
          const p = Object.hasOwn(d.people, name) ? d.people[name] : undefined
          if (!p) return { ok: false, reason: `no person named ${JSON.stringify(name)}` }
          p.disabled = false
          p.disabled_at = null
          return { ok: true, value: summary(p) }
        },
        { action: 'enabled', person: name, by },
      )
    },

    async reissueToken(name, by) {
      const { token, record } = await issueToken(scryptParams, now)
      return update(
        (d) => {
          const p = Object.hasOwn(d.people, name) ? d.people[name] : undefined
          if (!p) return { ok: false, reason: `no person named ${JSON.stringify(name)}` }
          p.tokens = [record]
          p.sessions_valid_after = record.created_at
          return { ok: true, value: { person: summary(p), token } }
        },
        { action: 'retokened', person: name, by },
      )
    },

    async changesSince(afterSeq) {
      const d = await current()
      return d.changes.filter((c) => c.seq > afterSeq)
    },

    async verifyToken(token) {
      const parsed = parseToken(token)
      if (!parsed) return { ok: false, reason: 'malformed token' }
      const d = await current()
      const digest = credentialDigest(token)
      const hit = tokenCache.get(digest)
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
      const fresh = await current()
      // The directory may have moved while scrypt ran: only remember the token if it is still on record.
      const still = Object.hasOwn(fresh.people, owner.name) ? fresh.people[owner.name] : undefined
      if (!still?.tokens.some((t) => t.id === parsed.id)) return { ok: false, reason: 'token revoked' }
      if (cacheMillis > 0) tokenCache.set(digest, { user: owner.name, until: now() + cacheMillis })
      return enabledPerson(fresh, owner.name)
    },

    async createLoginSession(name, ttlMillis) {
      const d = await current()
      const p = enabledPerson(d, name)
      if (!p.ok) return p
      const sessionId = randomBytes(32).toString('base64url')
      const createdAt = iso()
      const expiresAt = new Date(now() + ttlMillis).toISOString()
      await store.setState(LOGIN_PREFIX + credentialDigest(sessionId), {
        user: name,
        created_at: createdAt,
        expires_at: expiresAt,
      })
      return { ok: true, value: { sessionId, expiresAt } }
    },

    async loginSession(sessionId) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(sessionId)) return { ok: false, reason: 'malformed session' }
      const d = await current()
      const digest = credentialDigest(sessionId)
      let entry = sessionCache.get(digest)
      if (!entry || entry.until <= now()) {
        const raw = await store.getState(LOGIN_PREFIX + digest)
        const parsed = zLogin.safeParse(raw)
        if (!parsed.success) return { ok: false, reason: 'unknown session' }
        entry = { ...parsed.data, until: now() + cacheMillis }
        if (cacheMillis > 0) sessionCache.set(digest, entry)
      }
      if (Date.parse(entry.expires_at!) <= now()) return { ok: false, reason: 'session expired' }
      const p = enabledPerson(d, entry.user)
      if (!p.ok) return p
      const after = p.value.sessions_valid_after
      if (after !== null && entry.created_at! < after) return { ok: false, reason: 'session revoked' }
      return p
    },

    async endLoginSession(sessionId) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(sessionId)) return
      const digest = credentialDigest(sessionId)
      sessionCache.delete(digest)
      await store.setState(LOGIN_PREFIX + digest, null)
    },
  }
}

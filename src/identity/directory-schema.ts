/**
 * The identity directory as stored in the store's key-value state: one document of people (with their token
 * hashes and a journal of changes), a version key, and one key per login session.
 */
import { z } from 'zod'
import type { JsonValue } from '../audit/types.js'
import { ROLES, type Role } from '../config/security-config.js'

/** The part of the store the directory uses. */
export interface StateStore {
  getState(key: string): Promise<JsonValue | undefined>
  setState(key: string, value: JsonValue): Promise<void>
}

export const DIRECTORY_KEY = 'identity.directory'
export const VERSION_KEY = 'identity.version'
export const LOGIN_PREFIX = 'identity.login.'

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
export const MAX_JOURNAL = 1000

export const zDirectory = z.object({
  version: z.number().int(),
  people: z.record(z.string(), zPerson),
  changes: z.array(zPersonChange).default([]),
})
/** The whole directory document. */
export type Directory = z.infer<typeof zDirectory>

/** One login session as stored (under its id's digest, never the id itself). */
export const zLogin = z.object({ user: z.string(), created_at: z.string(), expires_at: z.string() })

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

/** The listing of a person. */
export function summary(p: Person): PersonSummary {
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

/** `d.people[name]`, without reaching `Object.prototype` for names like `constructor`. */
export function personIn(d: Directory, name: string): Person | undefined {
  return Object.hasOwn(d.people, name) ? d.people[name] : undefined
}

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
import type { Role } from '../config/security-config.js'
import { createDirectoryCredentials, createCredentialCaches } from './directory-credentials.js'
import { createDirectoryDocument } from './directory-document.js'
import { createDirectoryPeople } from './directory-people.js'
import type { DirectoryResult, Person, PersonChange, PersonSummary, StateStore } from './directory-schema.js'
import { DEFAULT_SCRYPT, type ScryptParams } from './tokens.js'

export type { DirectoryResult, Person, PersonChange, PersonSummary, StateStore } from './directory-schema.js'

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

/** Opens the identity directory over the store's state. */
export function createIdentityDirectory(
  store: StateStore,
  options: IdentityDirectoryOptions = {},
): IdentityDirectory {
  const now = options.now ?? Date.now
  const caches = createCredentialCaches()
  const doc = createDirectoryDocument(store, now, caches.clear)
  return {
    ...createDirectoryPeople(doc, now, options.scrypt ?? DEFAULT_SCRYPT),
    ...createDirectoryCredentials({ store, doc, caches, now, cacheMillis: options.cacheMillis ?? 30_000 }),
  }
}

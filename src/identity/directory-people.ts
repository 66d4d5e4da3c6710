/** Adding, listing and changing people in the directory; every change goes through the change journal. */
import type { Role } from '../config/security-config.js'
import type { DirectoryDocument } from './directory-document.js'
import {
  PERSON_NAME,
  personIn,
  summary,
  type Directory,
  type Person,
  type PersonSummary,
} from './directory-schema.js'
import type { IdentityDirectory } from './identity-directory.js'
import { issueToken, type ScryptParams } from './tokens.js'

/** The people half of {@link IdentityDirectory}. */
type DirectoryPeople = Pick<
  IdentityDirectory,
  | 'addPerson'
  | 'provisionPerson'
  | 'listPeople'
  | 'person'
  | 'disablePerson'
  | 'enablePerson'
  | 'setRole'
  | 'reissueToken'
  | 'changesSince'
>

function checkName(name: string): string | null {
  if (!PERSON_NAME.test(name)) {
    return `invalid name ${JSON.stringify(name)}: use letters, digits, . _ @ - (at most 64, no spaces or colons)`
  }
  return name === 'local' ? 'the name "local" is reserved for the gateway without authentication' : null
}

/** Builds the people operations over the document. */
export function createDirectoryPeople(
  doc: DirectoryDocument,
  now: () => number,
  scryptParams: ScryptParams,
): DirectoryPeople {
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

  /** One change to an existing person, refused for an unknown name. */
  const changePerson = <T>(
    name: string,
    edit: (p: Person) => T,
    journal: Parameters<DirectoryDocument['update']>[1],
  ) =>
    doc.update((d: Directory) => {
      const p = personIn(d, name)
      if (!p) return { ok: false, reason: `no person named ${JSON.stringify(name)}` }
      return { ok: true, value: edit(p) }
    }, journal)

  return {
    async addPerson(name, role, by) {
      const bad = checkName(name)
      if (bad) return { ok: false, reason: bad }
      const { token, record } = await issueToken(scryptParams, now)
      return doc.update(
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
      const existing = personIn(await doc.current(), name)
      if (existing) return { ok: true, value: existing }
      return doc.update(
        (d) => {
          const p = personIn(d, name) ?? newPerson(name, role, by)
          d.people[name] = p
          return { ok: true, value: p }
        },
        { action: 'provisioned', person: name, by },
      )
    },

    async listPeople() {
      const d = await doc.current()
      return Object.values(d.people)
        .sort((a, b) => a.name.localeCompare(b.name))
        .map(summary)
    },

    async person(name) {
      return personIn(await doc.current(), name)
    },

    disablePerson(name, by) {
      return changePerson(
        name,
        (p): PersonSummary => {
          p.disabled = true
          p.disabled_at = iso()
          return summary(p)
        },
        { action: 'disabled', person: name, by },
      )
    },

    setRole(name, role, by) {
      return changePerson(
        name,
        (p): PersonSummary => {
          p.role = role
          return summary(p)
        },
        { action: 'role_changed', person: name, by, role },
      )
    },

    enablePerson(name, by) {
      return changePerson(
        name,
        (p): PersonSummary => {
          p.disabled = false
          p.disabled_at = null
          return summary(p)
        },
        { action: 'enabled', person: name, by },
      )
    },

    async reissueToken(name, by) {
      const { token, record } = await issueToken(scryptParams, now)
      return changePerson(
        name,
        (p) => {
          p.tokens = [record]
          p.sessions_valid_after = record.created_at
          return { person: summary(p), token }
        },
        { action: 'retokened', person: name, by },
      )
    },

    async changesSince(afterSeq) {
      const d = await doc.current()
      return d.changes.filter((c) => c.seq > afterSeq)
    },
  }
}

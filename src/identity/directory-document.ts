/**
 * Reading and writing the directory document. The CLI (another process) changes people while a gateway runs:
 * readers check only the small version key on each call (one read shared by concurrent callers) and reload
 * the document when it moved; writers bump the version after writing the document.
 */
import { asJsonValue } from '../audit/json-value.js'
import {
  DIRECTORY_KEY,
  MAX_JOURNAL,
  VERSION_KEY,
  zDirectory,
  type Directory,
  type DirectoryResult,
  type PersonChange,
  type StateStore,
} from './directory-schema.js'

/** The directory document, current as of the last version read. */
export interface DirectoryDocument {
  /** The current directory: one version read per call (shared by concurrent callers), a reload when it moved. */
  current(): Promise<Directory>
  /**
   * Read-modify-write of the directory, from a fresh read. `change` edits the copy it is given, or refuses;
   * `journal` is recorded in the change journal when it succeeds.
   */
  update<T>(
    change: (d: Directory) => DirectoryResult<T>,
    journal?: Omit<PersonChange, 'seq' | 'at'>,
  ): Promise<DirectoryResult<T>>
}

/** Opens the document; `onMoved` runs whenever another version replaces the one held. */
export function createDirectoryDocument(
  store: StateStore,
  now: () => number,
  onMoved: () => void,
): DirectoryDocument {
  let cached: Directory | null = null
  let refreshing: Promise<Directory> | null = null

  const load = async (): Promise<Directory> => {
    const raw = await store.getState(DIRECTORY_KEY)
    if (raw === undefined || raw === null) return { version: 0, people: {}, changes: [] }
    const parsed = zDirectory.safeParse(raw)
    if (!parsed.success)
      throw new Error(`identity directory in the store is malformed: ${parsed.error.message}`)
    return parsed.data
  }

  const current = (): Promise<Directory> => {
    refreshing ??= (async () => {
      try {
        const v = await store.getState(VERSION_KEY)
        const version = typeof v === 'number' ? v : 0
        if (cached === null || cached.version !== version) {
          const next = await load()
          // Never trust a credential remembered under an older directory: a disable or re-token must bite now.
          onMoved()
          cached = next
        }
        return cached
      } finally {
        refreshing = null
      }
    })()
    return refreshing
  }

  // The writers are the CLI, the gateway's People page (the dashboard) and auto-provisioning.
  const update = async <T>(
    change: (d: Directory) => DirectoryResult<T>,
    journal?: Omit<PersonChange, 'seq' | 'at'>,
  ): Promise<DirectoryResult<T>> => {
    const d = structuredClone(await load())
    const r = change(d)
    if (!r.ok) return r
    if (journal) {
      const last = d.changes[d.changes.length - 1]
      d.changes.push({ ...journal, seq: (last?.seq ?? 0) + 1, at: new Date(now()).toISOString() })
      if (d.changes.length > MAX_JOURNAL) d.changes.splice(0, d.changes.length - MAX_JOURNAL)
    }
    d.version += 1
    await store.setState(DIRECTORY_KEY, asJsonValue(d))
    // Written after the document, so a reader that sees the new version always finds the new document.
    await store.setState(VERSION_KEY, d.version)
    onMoved()
    cached = d
    return r
  }

  return { current, update }
}

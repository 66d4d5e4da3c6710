/**
 * People changed with the CLI (another process) reach the log through the identity directory's change
 * journal: the gateway appends what it has not logged yet, and remembers how far it got in the store's state.
 */
import { reportError } from '../audit/report-error.js'
import type { AuditEventInput } from '../audit/types.js'
import type { IdentityDirectory } from '../identity/identity-directory.js'
import type { RuntimeStore } from '../store/runtime-store.js'

const JOURNAL_STATE_KEY = 'identity.changes_logged'

/** What the journal needs of the gateway. */
interface PeopleJournalDeps {
  readonly store: Pick<RuntimeStore, 'getState' | 'setState'>
  readonly directory: Pick<IdentityDirectory, 'changesSince'>
  /** Appends events made outside capture (redacted as capture's are). */
  readonly append: (events: AuditEventInput[]) => Promise<unknown>
  /** Epoch-ms clock (default `Date.now`). */
  readonly now?: () => number
  /** How often the journal is read, ms. */
  readonly intervalMillis: number
}

/** The running journal follower. */
export interface PeopleJournal {
  /** Logs the changes not logged yet; one pass at a time (a second call joins the running one). Never rejects. */
  sync(): Promise<void>
  /** Stops the timer (a last `sync()` at shutdown is the caller's). */
  stop(): void
}

/** Starts the timer; call `sync()` once first so start-up logs what happened while the gateway was down. */
export function startPeopleJournal(deps: PeopleJournalDeps): PeopleJournal {
  let running: Promise<void> | null = null
  const sync = (): Promise<void> =>
    (running ??= (async () => {
      try {
        const last = await deps.store.getState(JOURNAL_STATE_KEY)
        const changes = await deps.directory.changesSince(typeof last === 'number' ? last : 0)
        if (changes.length === 0) return
        const time = new Date(deps.now?.() ?? Date.now()).toISOString()
        await deps.append(
          changes.map((c) => ({
            kind: 'security.person_changed' as const,
            time,
            session_id: null,
            payload: { ...c },
          })),
        )
        await deps.store.setState(JOURNAL_STATE_KEY, changes[changes.length - 1]!.seq)
      } catch (err) {
        reportError(err, 'logging people changes')
      } finally {
        running = null
      }
    })())
  const timer = setInterval(() => void sync(), deps.intervalMillis)
  timer.unref()
  return { sync, stop: () => clearInterval(timer) }
}

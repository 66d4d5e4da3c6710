/**
 * One group commit as the runtime store hands it to a driver: the events (origin and seq assigned), their
 * leaf hashes and their derived changes. The runtime store builds it once per group, so every dialect
 * stores the same leaves and rows and a driver only translates the batch to its SQL (Kysely's
 * RuntimeDriver / dialect driver split).
 */
import { eventLeafHex } from '../audit/event-leaf.js'
import type { AuditEvent } from '../audit/types.js'
import { projectEvents, type DerivedChanges } from './project.js'

/** What {@link StoreDriver.append} writes in one transaction. */
export interface AppendBatch {
  /** The events in log order. */
  readonly events: readonly AuditEvent[]
  /** Lower-case hex RFC 9162 leaf hash of each event, in the same order. */
  readonly leafHashes: readonly string[]
  /** The derived-row changes of the events, folded so each row key appears once. */
  readonly changes: DerivedChanges
}

/**
 * The batch of a group. Hashes and projection are computed on first use and then kept: a driver that
 * forwards the events to another thread (SQLite's worker) never pays for them on the gateway's thread, and
 * a retried commit of the same group does not compute them twice.
 */
export function prepareAppend(events: readonly AuditEvent[]): AppendBatch {
  let leafHashes: readonly string[] | undefined
  let changes: DerivedChanges | undefined
  return {
    events,
    get leafHashes() {
      return (leafHashes ??= events.map(eventLeafHex))
    },
    get changes() {
      return (changes ??= projectEvents(events))
    },
  }
}

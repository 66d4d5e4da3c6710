/**
 * Fan-out of committed events to every sink's processor. It maps each event to sink records once, through
 * one session merger, so every sink sees the same whole session records.
 */
import { reportError } from '../audit/report-error.js'
import type { AuditEvent } from '../audit/types.js'
import type { RecordProcessor } from './batch-processor.js'
import { createSessionMerger, toSinkRecords, type SessionMerger, type SinkRecord } from './sink.js'

/** Fans records out to several processors; one failing never affects the others. */
export interface MultiProcessor extends RecordProcessor {
  /** Maps a committed audit event to sink records (merging session patches) and hands them to every processor. */
  onEvent(event: AuditEvent): void
}

/** Creates a {@link MultiProcessor}; it owns one {@link SessionMerger} so sinks get whole session records. */
export function createMultiProcessor(
  processors: readonly RecordProcessor[],
  options: { readonly sessions?: SessionMerger } = {},
): MultiProcessor {
  const sessions = options.sessions ?? createSessionMerger()
  const each = (op: (p: RecordProcessor) => Promise<void>): Promise<void> =>
    Promise.allSettled(processors.map(op)).then((results) => {
      for (const r of results) if (r.status === 'rejected') reportError(r.reason, 'sink processor')
    })
  const multi: MultiProcessor = {
    onEnd(record) {
      for (const p of processors) p.onEnd(record)
    },
    onEvent(event) {
      let records: SinkRecord[]
      try {
        records = toSinkRecords(event, sessions)
      } catch (error) {
        reportError(error, `sinks: mapping event ${event.origin}:${event.seq}`)
        return
      }
      for (const record of records) multi.onEnd(record)
    },
    forceFlush: () => each((p) => p.forceFlush()),
    shutdown: () => each((p) => p.shutdown()),
    health: () => processors.flatMap((p) => p.health()),
  }
  return multi
}

/**
 * Feeds one sink from the log, in log order, starting after its cursor. Committed events come in live
 * (`onEvents`) and are mapped at once while they follow on from what the sink was last given; whenever they
 * do not (at start, after a crash, after the live buffer overflowed because the receiver is slow or down), the
 * feeder reads the missing events from the store instead. The store's log is therefore the record: the
 * batch processor's queue and spool only buffer what the feeder offered, and the feeder offers a record only
 * while the processor has room, so nothing is dropped for room and records reach the receiver in log order.
 *
 * Whole session records need every earlier patch of their session: a session the feeder's merger does not
 * know (one that began before the cursor, or one it forgot) is warmed up from the store first, from its
 * events before the current one, so a replayed record is the same as the one a live run would have shipped.
 */
import { reportError, silentLogger, type Logger } from '../audit/report-error.js'
import type { AuditEvent } from '../audit/types.js'
import { comparePositions, positionOf, type LogPosition } from './sink-cursor.js'
import { createSessionMerger, toSinkRecords, type SessionMerger, type SinkRecord } from './sink.js'

/** Which events to read; the store's `events` takes it (seq bounds inclusive). */
interface SinkLogFilter {
  readonly origin: string
  readonly fromSeq?: number
  readonly toSeq?: number
  readonly sessionId?: string
  readonly limit?: number
}

/** The part of the store sinks read: one origin's log. */
export interface SinkLog {
  /** The log (gateway) the sinks follow; events of other origins are ignored. */
  readonly origin: string
  /** Highest committed seq of the origin, or -1. */
  lastSeq(): Promise<number>
  /** Committed events in seq order. */
  events(filter: SinkLogFilter): AsyncIterable<AuditEvent>
}

/** The part of a batch processor the feeder drives. */
interface FedProcessor {
  onEnd(record: SinkRecord): void
  hasRoom(): boolean
  waitForRoom(): Promise<void>
}

/** Options of {@link createSinkFeeder}. */
interface SinkFeederOptions {
  /** Sink name, for logs. */
  readonly name: string
  readonly log: SinkLog
  readonly processor: FedProcessor
  /** The sink's cursor at start: records at or before it were settled by an earlier run and are skipped. */
  readonly after: LogPosition
  /** Events per store read (default 256). */
  readonly pageSize?: number
  /** Live events held while the sink is behind (default 4096); past it they are read back from the store. */
  readonly maxBufferedEvents?: number
  /** Wait before reading the store again after a failed read, ms (default 1000). */
  readonly retryDelayMillis?: number
  readonly sessions?: SessionMerger
  readonly logger?: Logger
}

/** A running feeder. */
export interface SinkFeeder {
  /** Takes committed events (in commit order); never throws and never waits. */
  onEvents(events: readonly AuditEvent[]): void
  /**
   * Resolves when the feeder has offered everything committed so far, or cannot offer more now (the
   * processor is full, or the store cannot be read).
   */
  drained(): Promise<void>
  /** Offers what fits without waiting, then stops; what is left is past the cursor, for the next start. */
  close(): Promise<void>
  /** Seq of the next event to map. */
  readonly nextSeq: number
}

/** A sleep that `wake()` ends early; the feeder's loop is its only sleeper. */
function createSleeper(): { sleep(millis?: number): Promise<void>; wake(): void } {
  let wake: (() => void) | null = null
  return {
    sleep: (millis) =>
      new Promise((resolve) => {
        let timer: NodeJS.Timeout | undefined
        wake = () => {
          wake = null
          clearTimeout(timer)
          resolve()
        }
        if (millis !== undefined) {
          timer = setTimeout(() => wake?.(), millis)
          timer.unref()
        }
      }),
    wake: () => wake?.(),
  }
}

async function readEvents(
  log: SinkLog,
  origin: string,
  filter: Omit<SinkLogFilter, 'origin'>,
): Promise<AuditEvent[]> {
  const out: AuditEvent[] = []
  for await (const e of log.events({ origin, ...filter })) out.push(e)
  return out
}

/** Removes and returns the buffered events with consecutive seqs from `next` (the buffer starts at it). */
function takeConsecutive(buffer: AuditEvent[], next: number): AuditEvent[] {
  let run = 1
  while (run < buffer.length && buffer[run]!.seq === next + run) run++
  return buffer.splice(0, run)
}

/** Gives the merger a session's earlier patches, so its records come out whole. */
async function warmSession(
  read: (filter: Omit<SinkLogFilter, 'origin'>) => Promise<AuditEvent[]>,
  merger: SessionMerger,
  origin: string,
  event: AuditEvent,
  sessionId: string,
  sinkName: string,
): Promise<void> {
  try {
    for (const prior of await read({ sessionId, toSeq: event.seq - 1 })) toSinkRecords(prior, merger)
  } catch (error) {
    // Without them the session's records carry only the fields seen from here on, as before a restart.
    reportError(error, `sink ${sinkName}: warming session ${sessionId}`)
  }
  // Known from now on, even with no earlier patch, so that it is read once.
  if (!merger.has(origin, sessionId)) merger.merge(origin, sessionId, {})
}

/** The options a feeder leaves out, filled with their defaults. */
function feederDefaults(options: SinkFeederOptions): {
  pageSize: number
  maxBuffered: number
  retryDelay: number
  logger: Logger
  merger: SessionMerger
} {
  return {
    pageSize: options.pageSize ?? 256,
    maxBuffered: options.maxBufferedEvents ?? 4096,
    retryDelay: options.retryDelayMillis ?? 1000,
    logger: options.logger ?? silentLogger,
    merger: options.sessions ?? createSessionMerger(),
  }
}

/** Starts a feeder; see the module comment. */
export function createSinkFeeder(options: SinkFeederOptions): SinkFeeder {
  const { log, processor, after } = options
  const origin = log.origin
  const { pageSize, maxBuffered, retryDelay, logger, merger } = feederDefaults(options)

  let next = Math.max(0, after.seq)
  let buffer: AuditEvent[] = []
  let caughtUp = false
  let closing = false
  let stopped = false
  let idle = false
  /** Waiting for the processor to have room: nothing more can be offered now. */
  let blocked = false
  let idleWaiters: (() => void)[] = []
  let closed!: () => void
  const closedSignal = new Promise<void>((resolve) => (closed = resolve))

  const settleIdle = (): void => {
    const waiters = idleWaiters
    idleWaiters = []
    for (const resolve of waiters) resolve()
  }
  const sleeper = createSleeper()
  const read = (filter: Omit<SinkLogFilter, 'origin'>): Promise<AuditEvent[]> =>
    readEvents(log, origin, filter)

  /** The events to map next, or null when there is nothing to do until a live event arrives. */
  const nextEvents = async (): Promise<AuditEvent[] | null> => {
    let stale = 0
    while (stale < buffer.length && buffer[stale]!.seq < next) stale++
    if (stale > 0) buffer.splice(0, stale)
    if (buffer.length > 0 && buffer[0]!.seq === next) return takeConsecutive(buffer, next)
    if (caughtUp && buffer.length === 0) return null
    // Behind (start, or a gap before the first live event): read what is missing from the store.
    const gapEnd = buffer.length > 0 ? buffer[0]!.seq - 1 : undefined
    const page = await read({
      fromSeq: next,
      ...(gapEnd !== undefined ? { toSeq: gapEnd } : {}),
      limit: pageSize,
    })
    if (page.length === 0) {
      if (gapEnd !== undefined) {
        // Commits are in seq order, so this means the store lacks those seqs: say so, and go on after them.
        logger.error('sink feeder: events missing from the store; skipped', {
          sink: options.name,
          fromSeq: next,
          toSeq: gapEnd,
        })
        next = gapEnd + 1
        return []
      }
      caughtUp = true
      return null
    }
    if (gapEnd === undefined && page.length < pageSize) caughtUp = true
    return page
  }

  /** Maps one event and offers its records; false when closing left no room for them (it stops). */
  const feed = async (event: AuditEvent): Promise<boolean> => {
    const sid = event.session_id
    // A session's first event needs nothing before it (prompt ids are never reused).
    if (sid !== null && event.kind !== 'prompt.submitted' && !merger.has(origin, sid))
      await warmSession(read, merger, origin, event, sid, options.name)
    for (const record of toSinkRecords(event, merger)) {
      if (comparePositions(positionOf(record), after) <= 0) continue
      if (!processor.hasRoom()) {
        if (!closing) {
          blocked = true
          // A flush must not wait for a receiver that is down: what the feeder could offer, it has.
          settleIdle()
          await Promise.race([processor.waitForRoom(), closedSignal])
          blocked = false
        }
        if (!processor.hasRoom()) return false
      }
      processor.onEnd(record)
    }
    next = event.seq + 1
    return true
  }

  const run = async (): Promise<void> => {
    while (!stopped) {
      let events: AuditEvent[] | null
      try {
        events = await nextEvents()
      } catch (error) {
        logger.error('sink feeder: reading the log failed; retrying', {
          sink: options.name,
          fromSeq: next,
          error: String(error),
        })
        settleIdle()
        if (closing) return
        await sleeper.sleep(retryDelay)
        continue
      }
      if (events === null) {
        if (closing) return
        idle = true
        settleIdle()
        await sleeper.sleep()
        idle = false
        continue
      }
      for (const event of events) {
        if (!(await feed(event))) return
      }
    }
  }
  const loop = run()
    .catch((error: unknown) => reportError(error, `sink ${options.name}: feeder`))
    .finally(() => {
      stopped = true
      settleIdle()
    })

  return {
    onEvents(events) {
      if (closing) return
      try {
        for (const e of events) if (e.origin === origin) buffer.push(e)
        if (buffer.length > maxBuffered) {
          // The sink is far behind: keep memory bounded; these events are in the store and read back from it.
          buffer = []
        }
        sleeper.wake()
      } catch (error) {
        reportError(error, `sink ${options.name}: onEvents`)
      }
    },
    drained() {
      if (stopped || blocked || (idle && buffer.length === 0)) return Promise.resolve()
      return new Promise((resolve) => idleWaiters.push(resolve))
    },
    async close() {
      closing = true
      closed()
      sleeper.wake()
      await loop
    },
    get nextSeq() {
      return next
    },
  }
}

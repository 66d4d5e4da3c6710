/**
 * A sink's persisted cursor: the position in the log of the last record the sink has settled (delivered, or
 * refused for good). After a crash the sink replays from the store everything past it, so the in-memory queue
 * and the disk spool are buffers only and the log is the record.
 *
 * The cursor lives in the sink's spool folder (`<data>/spool/<name>/cursor.json`), not in the store: it is
 * this process's delivery state, guarded by the same lock as the spool, and writing it must not load (or wait
 * on) the store's single writer, which may be down while the receiver is up. It is written to a temporary
 * file, fsync'd and renamed, so after a crash it is the old or the new one, never a torn one.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileDurably } from '../audit/durable-file.js'
import { reportError } from '../audit/report-error.js'
import type { SinkRecord } from './sink.js'

/**
 * A record's place in the log: the event's `seq`, then `sub`, its index among the records of that event
 * (0 for `ORIGIN:SEQ`, k for `ORIGIN:SEQ.k`).
 */
export interface LogPosition {
  readonly seq: number
  readonly sub: number
}

/** `sub` of a position that covers every record of its event. */
const WHOLE_EVENT = Number.MAX_SAFE_INTEGER

/** Where a record sits in the log, from its `seq` and the `.k` suffix of its id. */
export function positionOf(record: Pick<SinkRecord, 'id' | 'seq'>): LogPosition {
  const tail = record.id.slice(record.id.lastIndexOf(':') + 1)
  const dot = tail.indexOf('.')
  return { seq: record.seq, sub: dot < 0 ? 0 : Number(tail.slice(dot + 1)) }
}

/** Negative, zero or positive as `a` is before, at or after `b`. */
export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.seq !== b.seq ? a.seq - b.seq : a.sub - b.sub
}

/** The file's content. */
interface CursorJson {
  readonly version: 1
  readonly origin: string
  readonly seq: number
  readonly sub: number
  /** ISO time of the write, for people reading the file. */
  readonly written_at: string
}

/** A sink's cursor, loaded. */
export interface SinkCursor {
  readonly path: string
  /** The last settled position (`seq` -1 before the first event). */
  position(): LogPosition
  /** Moves the cursor forward (never back) and schedules a write; writes are coalesced, one at a time. */
  advance(position: LogPosition): void
  /** Stops moving: after a drop, the records past it must be replayed at the next start. */
  freeze(): void
  /** True after freeze(). */
  readonly frozen: boolean
  /** Resolves when the latest position is on disk. */
  flush(): Promise<void>
}

/** Options of {@link openSinkCursor}. */
interface SinkCursorOptions {
  /** Folder of the cursor file (the sink's spool folder, locked by the pipeline). */
  readonly dir: string
  /** The log the sink follows; a file naming another origin is ignored (the sink starts at `head`). */
  readonly origin: string
  /**
   * Where a sink without a cursor starts: the log's last seq now. A new sink ships what is committed from
   * now on, not the whole history; its cursor is written before it ships anything, so a crash right after
   * the first start loses nothing either.
   */
  readonly head: () => Promise<number>
  /** Epoch milliseconds (default Date.now), for `written_at`. */
  readonly now?: () => number
}

function parseCursor(text: string, path: string): CursorJson {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new Error(
      `sink cursor ${path} is not JSON (${String(error)}); delete it to restart the sink at the log's head`,
    )
  }
  const v = value as Partial<CursorJson> | null
  if (
    typeof v !== 'object' ||
    v === null ||
    v.version !== 1 ||
    typeof v.origin !== 'string' ||
    !Number.isSafeInteger(v.seq) ||
    !Number.isSafeInteger(v.sub) ||
    (v.seq as number) < -1 ||
    (v.sub as number) < 0
  ) {
    throw new Error(
      `sink cursor ${path}: expected {"version":1,"origin":…,"seq":…,"sub":…}, got ${text.slice(0, 200)}; ` +
        `delete it to restart the sink at the log's head`,
    )
  }
  return v as CursorJson
}

/**
 * Loads the cursor of a sink, or creates it at the log's head (written at once). Throws, naming the file,
 * for a cursor that cannot be read.
 */
export async function openSinkCursor(options: SinkCursorOptions): Promise<SinkCursor> {
  const name = 'cursor.json'
  const path = join(options.dir, name)
  const now = options.now ?? Date.now
  let text: string | null = null
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const loaded = text === null ? null : parseCursor(text, path)
  let current: LogPosition =
    loaded && loaded.origin === options.origin
      ? { seq: loaded.seq, sub: loaded.sub }
      : { seq: await options.head(), sub: WHOLE_EVENT }
  let written: LogPosition | null = loaded && loaded.origin === options.origin ? current : null
  let frozen = false
  let writing: Promise<void> | null = null

  const body = (p: LogPosition): string =>
    JSON.stringify({
      version: 1,
      origin: options.origin,
      seq: p.seq,
      sub: p.sub,
      written_at: new Date(now()).toISOString(),
    } satisfies CursorJson) + '\n'

  const pump = (): Promise<void> => {
    writing ??= (async () => {
      while (written === null || comparePositions(written, current) !== 0) {
        const target = current
        await writeFileDurably(options.dir, name, body(target))
        written = target
      }
    })()
      .catch((error: unknown) => reportError(error, `sink cursor ${path}: write`))
      .finally(() => {
        writing = null
      })
    return writing
  }
  if (written === null) {
    // The first write is part of starting: without it a crash now would lose the events from here on.
    await writeFileDurably(options.dir, name, body(current))
    written = current
  }

  return {
    path,
    position: () => current,
    advance(position) {
      if (frozen || comparePositions(position, current) <= 0) return
      current = position
      void pump()
    },
    freeze() {
      frozen = true
    },
    get frozen() {
      return frozen
    },
    async flush() {
      while (writing) await writing
      if (written === null || comparePositions(written, current) !== 0) await pump()
    },
  }
}

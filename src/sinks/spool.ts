/**
 * A disk spool for records a sink could not take yet: when a processor's queue is full, or a receiver stays
 * down past the transport's deadline, records go here and are replayed oldest first.
 *
 * Layout: one directory per sink, holding immutable segment files `<16-digit number>.seg` (one JSON record
 * per line, lossless JSON so seeds keep every digit). A segment is written to `<n>.tmp`, fsync'd, renamed,
 * and the directory fsync'd, so after a crash a segment is either whole or absent (leftover `.tmp` files are
 * deleted on open). Segments are never appended to after the rename; the spool grows by adding segments and
 * shrinks by deleting the oldest, so it survives restarts without a separate index.
 */
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileDurably } from '../audit/durable-file.js'
import { stringifyJson } from '../audit/json.js'
import { silentLogger, type Logger } from '../audit/report-error.js'
import { parseRecord, recordToJson, type SinkRecord } from './sink.js'

/** Options of {@link openSpool}. */
export interface SpoolOptions {
  /** Directory of this sink's spool (created if missing). */
  readonly dir: string
  /** Quota: bytes of segment files the spool may hold (default 256 MiB). Records past it are dropped. */
  readonly maxBytes?: number
  readonly logger?: Logger
}

/** One segment as read back. */
export interface SpoolSegment {
  /** File name inside the spool directory. */
  readonly name: string
  readonly records: readonly SinkRecord[]
  /** Size of the file. */
  readonly bytes: number
}

/** How a write went: `dropped` records did not fit under the quota. */
export interface SpoolWriteResult {
  readonly written: number
  readonly dropped: number
}

/** A sink's disk spool. Operations are serialized; none throws for a full disk (that counts as dropped). */
export interface Spool {
  readonly dir: string
  /** The quota in bytes. */
  readonly maxBytes: number
  /** Writes the records as one new segment, as many as fit under the quota (in order); the rest are dropped. */
  write(records: readonly SinkRecord[]): Promise<SpoolWriteResult>
  /** The oldest segment, or undefined when the spool is empty. */
  oldest(): Promise<SpoolSegment | undefined>
  /** Deletes a delivered (or given up) segment. */
  remove(segment: SpoolSegment): Promise<void>
  /** Rewrites a segment in place with fewer records (those still to deliver), keeping its position. */
  replace(segment: SpoolSegment, records: readonly SinkRecord[]): Promise<void>
  /**
   * Deletes every segment; returns the records they held. For a sink fed from the log with a cursor, whose
   * next start replays everything past the cursor from the store, so what a crash left here is not needed.
   */
  clear(): Promise<number>
  /** The lowest `seq` among the spooled records of `origin`, or null when there are none. */
  minSeq(origin: string): Promise<number | null>
  /** Bytes held now. */
  sizeBytes(): number
  /** Segments held now. */
  segmentCount(): number
}

const SEGMENT = /^(\d{16})\.seg$/

function segmentName(n: number): string {
  return `${String(n).padStart(16, '0')}.seg`
}

function writeDurably(dir: string, name: string, data: string): Promise<void> {
  return writeFileDurably(dir, name, data, { tmpName: name.replace(/\.seg$/, '.tmp') })
}

/**
 * Opens (or creates) a spool directory: deletes torn `.tmp` files and sizes the segments already there,
 * which are replayed first.
 */
export async function openSpool(options: SpoolOptions): Promise<Spool> {
  const dir = options.dir
  const maxBytes = options.maxBytes ?? 256 * 1024 * 1024
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`openSpool: maxBytes must be a positive integer, got ${String(maxBytes)}`)
  }
  const logger = options.logger ?? silentLogger
  await mkdir(dir, { recursive: true })
  const sizes = new Map<string, number>()
  let next = 0
  for (const name of (await readdir(dir)).sort()) {
    const m = SEGMENT.exec(name)
    if (m) {
      sizes.set(name, (await stat(join(dir, name))).size)
      next = Math.max(next, Number(m[1]) + 1)
    } else if (name.endsWith('.tmp')) {
      // A write that crashed before its rename: never acknowledged as spooled, so nothing is lost.
      await unlink(join(dir, name)).catch(() => {})
    }
  }
  let total = [...sizes.values()].reduce((a, b) => a + b, 0)
  let chain: Promise<unknown> = Promise.resolve()
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const result = chain.then(op)
    chain = result.catch(() => {})
    return result
  }

  const encode = (record: SinkRecord): string => stringifyJson(recordToJson(record), { tagged: true }) + '\n'

  return {
    dir,
    maxBytes,
    write(records) {
      return serial(async () => {
        let data = ''
        let bytes = 0
        let written = 0
        for (const record of records) {
          const line = encode(record)
          const size = Buffer.byteLength(line)
          if (total + bytes + size > maxBytes) break
          data += line
          bytes += size
          written++
        }
        if (written === 0) return { written: 0, dropped: records.length }
        const name = segmentName(next++)
        try {
          await writeDurably(dir, name, data)
        } catch (error) {
          logger.error('spool write failed', { dir, error: String(error) })
          return { written: 0, dropped: records.length }
        }
        sizes.set(name, bytes)
        total += bytes
        return { written, dropped: records.length - written }
      })
    },
    oldest() {
      return serial(async () => {
        for (const name of [...sizes.keys()].sort()) {
          let text: string
          try {
            text = await readFile(join(dir, name), 'utf8')
          } catch (error) {
            logger.error('spool segment unreadable; skipped', { dir, segment: name, error: String(error) })
            total -= sizes.get(name) ?? 0
            sizes.delete(name)
            continue
          }
          const records: SinkRecord[] = []
          for (const line of text.split('\n')) {
            if (line === '') continue
            const parsed = parseRecord(line)
            if (parsed.ok) records.push(parsed.value)
            else logger.error('spool line unreadable; skipped', { dir, segment: name, reason: parsed.reason })
          }
          return { name, records, bytes: sizes.get(name) ?? 0 }
        }
        return undefined
      })
    },
    remove(segment) {
      return serial(async () => {
        if (!sizes.has(segment.name)) return
        await unlink(join(dir, segment.name)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error
        })
        total -= sizes.get(segment.name) ?? 0
        sizes.delete(segment.name)
      })
    },
    replace(segment, records) {
      return serial(async () => {
        if (!sizes.has(segment.name)) return
        if (records.length === 0) {
          await unlink(join(dir, segment.name)).catch(() => {})
          total -= sizes.get(segment.name) ?? 0
          sizes.delete(segment.name)
          return
        }
        const data = records.map(encode).join('')
        await writeDurably(dir, segment.name, data)
        const bytes = Buffer.byteLength(data)
        total += bytes - (sizes.get(segment.name) ?? 0)
        sizes.set(segment.name, bytes)
      })
    },
    clear() {
      return serial(async () => {
        let records = 0
        for (const name of [...sizes.keys()]) {
          const text = await readFile(join(dir, name), 'utf8').catch(() => '')
          records += text.split('\n').filter((line) => line !== '').length
          await unlink(join(dir, name)).catch((error: NodeJS.ErrnoException) => {
            if (error.code !== 'ENOENT') throw error
          })
          total -= sizes.get(name) ?? 0
          sizes.delete(name)
        }
        return records
      })
    },
    minSeq(origin) {
      return serial(async () => {
        let min: number | null = null
        for (const name of [...sizes.keys()]) {
          const text = await readFile(join(dir, name), 'utf8').catch(() => '')
          for (const line of text.split('\n')) {
            if (line === '') continue
            const parsed = parseRecord(line)
            if (parsed.ok && parsed.value.origin === origin && (min === null || parsed.value.seq < min)) {
              min = parsed.value.seq
            }
          }
        }
        return min
      })
    },
    sizeBytes: () => total,
    segmentCount: () => sizes.size,
  }
}

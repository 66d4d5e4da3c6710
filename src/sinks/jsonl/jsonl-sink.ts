/**
 * JSONL files: one record per line under a directory, with the seed's field names (`session_id`, `node_id`,
 * `timestamp_start`, ...). The active file is `<prefix>-<UTC day>.jsonl` (`<prefix>.jsonl` without daily
 * rotation); it is rotated when the UTC day changes or before it would pass `maxFileBytes`, and rotated files
 * are gzipped (streaming) to `<prefix>-<day>.<n>.jsonl.gz`. An empty day's file stays active (nothing to rotate).
 * Every export ends with an fsync, so a successful export is on disk.
 *
 * After a crash the files are their own witness: `lastStored()` reads the id of the last whole line, so the
 * pipeline's cursor catches up with a write the crash kept it from recording, and a line the crash cut short
 * (no final newline) is cut off before anything is appended, so every line stays one whole record.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, open, readdir, rename, truncate, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { StringDecoder } from 'node:string_decoder'
import { createGunzip, createGzip } from 'node:zlib'
import { silentLogger, type Logger } from '../../audit/report-error.js'
import { parseRecord, serializeRecord, type AuditSink, type ExportResult, type SinkRecord } from '../sink.js'

/** What users write for the JSONL sink. */
export interface JsonlSinkConfig {
  /** Directory of the files (created if missing). */
  readonly dir: string
  /** File name prefix (default `comfy-audit`). */
  readonly prefix?: string
  /** Start a new file when the UTC day changes (default true). */
  readonly rotateDaily?: boolean
  /** Start a new file before this size would be passed (default 100 MiB). */
  readonly maxFileBytes?: number
  /** Gzip rotated files (default true). */
  readonly gzip?: boolean
}

/** What tests inject. */
export interface JsonlSinkOptions {
  /** Epoch milliseconds, for the day of rotation (default Date.now). */
  readonly now?: () => number
  readonly logger?: Logger
}

const utcDay = (millis: number): string => new Date(millis).toISOString().slice(0, 10)

async function gzipFile(path: string): Promise<void> {
  const tmp = `${path}.gz.tmp`
  await pipeline(createReadStream(path), createGzip(), createWriteStream(tmp))
  const fh = await open(tmp, 'r+')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, `${path}.gz`)
  await unlink(path)
}

/** The text of a file's last whole line, or null; gzipped files are streamed, keeping only the tail. */
async function lastLine(path: string): Promise<string | null> {
  let last: string | null = null
  let rest = ''
  // A character split between two chunks must not become two broken ones.
  const decoder = new StringDecoder('utf8')
  const source = path.endsWith('.gz') ? createReadStream(path).pipe(createGunzip()) : createReadStream(path)
  for await (const chunk of source as AsyncIterable<Buffer>) {
    rest += decoder.write(chunk)
    const end = rest.lastIndexOf('\n')
    if (end < 0) continue
    const whole = rest.slice(0, end)
    const line = whole.slice(whole.lastIndexOf('\n') + 1)
    if (line !== '') last = line
    // What follows the last newline is a line still being read, or one a crash cut short.
    rest = rest.slice(end + 1)
  }
  return last
}

/** Cuts a line a crash left without its newline off the end of a file; returns the bytes removed. */
async function cutTornTail(path: string): Promise<number> {
  const fh = await open(path, 'r').catch(() => null)
  if (!fh) return 0
  try {
    const { size } = await fh.stat()
    if (size === 0) return 0
    let end = size
    const buf = Buffer.alloc(64 * 1024)
    for (;;) {
      const start = Math.max(0, end - buf.length)
      const { bytesRead } = await fh.read(buf, 0, end - start, start)
      if (end === size && buf[bytesRead - 1] === 0x0a) return 0
      const nl = buf.subarray(0, bytesRead).lastIndexOf(0x0a)
      if (nl >= 0) {
        await truncate(path, start + nl + 1)
        return size - (start + nl + 1)
      }
      if (start === 0) {
        await truncate(path, 0)
        return size
      }
      end = start
    }
  } finally {
    await fh.close()
  }
}

/** The id and seq of the last record the sink's files hold (the newest file's last line), or null. */
async function lastStoredRecord(
  dir: string,
  prefix: string,
  dailyName: RegExp,
  logger: Logger,
): Promise<{ id: string; seq: number } | null> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return null
  }
  // Rotated files sort before the active file of their day, older days before newer ones.
  const mine = names
    .filter((n) => n === `${prefix}.jsonl` || dailyName.test(n) || /\.\d+\.jsonl(\.gz)?$/.test(n))
    .filter((n) => n.startsWith(prefix))
    .sort()
  for (const name of mine.reverse()) {
    const line = await lastLine(join(dir, name))
    if (line === null) continue
    const parsed = parseRecord(line)
    if (parsed.ok) return { id: parsed.value.id, seq: parsed.value.seq }
    logger.warn('jsonl: last line is not a record', { file: name, reason: parsed.reason })
    return null
  }
  return null
}

/**
 * Creates the JSONL sink.
 * @example
 * createJsonlSink({ dir: './data/jsonl', maxFileBytes: 50 * 2 ** 20 })
 */
export function createJsonlSink(config: JsonlSinkConfig, options: JsonlSinkOptions = {}): AuditSink {
  const prefix = config.prefix ?? 'comfy-audit'
  const rotateDaily = config.rotateDaily ?? true
  const maxFileBytes = config.maxFileBytes ?? 100 * 1024 * 1024
  const gzip = config.gzip ?? true
  const now = options.now ?? Date.now
  const logger = options.logger ?? silentLogger
  if (!(maxFileBytes > 0))
    throw new RangeError(`createJsonlSink: maxFileBytes must be positive, got ${maxFileBytes}`)
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const rotatedName = new RegExp(`^${escaped}-\\d{4}-\\d{2}-\\d{2}\\.\\d+\\.jsonl$`)
  const dailyName = new RegExp(`^${escaped}-(\\d{4}-\\d{2}-\\d{2})\\.jsonl$`)
  // The day is in the active file's name, so a restart knows which day a file belongs to without trusting mtime.
  const activeName = (d: string): string => (rotateDaily ? `${prefix}-${d}.jsonl` : `${prefix}.jsonl`)

  let fh: FileHandle | null = null
  let tornChecked = false
  let size = 0
  let day = ''
  let closed = false

  /** Renames a finished active file to its rotated name and gzips it. */
  const retire = async (name: string, fileDay: string): Promise<void> => {
    const existing = new Set(await readdir(config.dir))
    let n = 0
    while (
      existing.has(`${prefix}-${fileDay}.${n}.jsonl`) ||
      existing.has(`${prefix}-${fileDay}.${n}.jsonl.gz`)
    )
      n++
    const target = join(config.dir, `${prefix}-${fileDay}.${n}.jsonl`)
    await rename(join(config.dir, name), target)
    if (gzip) await gzipFile(target)
  }

  const open_ = async (): Promise<FileHandle> => {
    if (fh) return fh
    await mkdir(config.dir, { recursive: true })
    const today = utcDay(now())
    for (const name of (await readdir(config.dir)).sort()) {
      // A crash between rename and gzip leaves a rotated plain file; finish its compression now.
      if (gzip && rotatedName.test(name)) await gzipFile(join(config.dir, name))
      const m = dailyName.exec(name)
      if (rotateDaily && m && m[1] !== today) await retire(name, m[1]!)
    }
    if (!tornChecked) {
      tornChecked = true
      for (const name of (await readdir(config.dir)).filter(
        (n) => n === activeName(today) || dailyName.test(n),
      )) {
        const cut = await cutTornTail(join(config.dir, name))
        if (cut > 0) logger.warn('jsonl: cut a line a crash left unfinished', { file: name, bytes: cut })
      }
    }
    const handle = await open(join(config.dir, activeName(today)), 'a')
    size = (await handle.stat()).size
    day = today
    fh = handle
    return handle
  }

  const rotate = async (): Promise<void> => {
    if (!fh) return
    await fh.sync()
    await fh.close()
    fh = null
    await retire(activeName(day), day)
  }

  let chain: Promise<unknown> = Promise.resolve()
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const result = chain.then(op)
    chain = result.catch(() => {})
    return result
  }

  return {
    name: 'jsonl',
    export(batch: readonly SinkRecord[]): Promise<ExportResult> {
      return serial(async () => {
        if (closed) return { status: 'failure', error: new Error('jsonl sink is shut down') }
        try {
          let handle = await open_()
          let pending = ''
          let pendingBytes = 0
          for (const record of batch) {
            const line = serializeRecord(record) + '\n'
            const bytes = Buffer.byteLength(line)
            const today = utcDay(now())
            const dayChanged = rotateDaily && today !== day
            const full = size + pendingBytes > 0 && size + pendingBytes + bytes > maxFileBytes
            if (dayChanged || full) {
              await handle.write(pending)
              size += pendingBytes
              pending = ''
              pendingBytes = 0
              await rotate()
              handle = await open_()
            }
            pending += line
            pendingBytes += bytes
          }
          await handle.write(pending)
          size += pendingBytes
          await handle.sync()
          return { status: 'success' }
        } catch (error) {
          // A full or failing disk may recover; the processor keeps the batch meanwhile.
          logger.error('jsonl write failed', { dir: config.dir, error: String(error) })
          return { status: 'retryable', error: error instanceof Error ? error : new Error(String(error)) }
        }
      })
    },
    forceFlush: () =>
      serial(async () => {
        await fh?.sync()
      }),
    lastStored: () => serial(() => lastStoredRecord(config.dir, prefix, dailyName, logger)),
    shutdown: () =>
      serial(async () => {
        if (closed) return
        closed = true
        if (fh) {
          await fh.sync()
          await fh.close()
          fh = null
        }
      }),
  }
}

/**
 * The store's write-ahead spool: events the gateway acknowledged while the store could not take them, past
 * the bounded in-memory queue. They wait here, on disk, until the store is back, and are committed oldest
 * first (also by the next process, should this one die meanwhile).
 *
 * Layout: immutable segment files `<16-digit number>.seg`, one lossless-JSON event input per line (no seq
 * yet: sequence numbers are given at commit). A segment is written to `.tmp`, fsync'd, renamed and the
 * directory fsync'd, so after a crash it is whole or absent; leftover `.tmp` files are removed on open.
 */
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileDurably } from '../audit/durable-file.js'
import { parseJson, stringifyJson } from '../audit/json.js'
import { isAuditEventKind } from '../audit/decode-event.js'
import { asJsonObject } from '../audit/json-value.js'
import type { AuditEventInput, JsonObject, JsonValue } from '../audit/types.js'

/** Options of {@link openEventSpool}. */
interface EventSpoolOptions {
  /** Directory of the spool (created if missing). */
  readonly dir: string
  /** Quota in bytes of segment files (default 64 MiB). */
  readonly maxBytes?: number
}

/** A segment read back. */
interface EventSegment {
  readonly name: string
  readonly inputs: readonly AuditEventInput[]
  /** Lines that could not be parsed (a damaged file): reported, never silently skipped. */
  readonly unreadable: number
}

/** The store's disk spool; operations are serialized by the caller (one writer, the runtime store). */
export interface EventSpool {
  readonly dir: string
  readonly maxBytes: number
  /**
   * Writes the inputs as one new segment. Resolves `full` (nothing written) when they do not fit under the
   * quota, and rejects when the disk refuses the write (e.g. ENOSPC): both leave the spool as it was.
   */
  write(inputs: readonly AuditEventInput[]): Promise<'written' | 'full'>
  /** Names of the segments held, oldest first. */
  segments(): readonly string[]
  read(name: string): Promise<EventSegment>
  remove(name: string): Promise<void>
  sizeBytes(): number
}

const SEGMENT = /^(\d{16})\.seg$/

/** Opens (or creates) the spool directory, sizing the segments an earlier process left. */
export async function openEventSpool(options: EventSpoolOptions): Promise<EventSpool> {
  const { dir } = options
  const maxBytes = options.maxBytes ?? 64 * 1024 * 1024
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`store spool: maxBytes must be a positive integer, got ${String(maxBytes)}`)
  }
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const sizes = new Map<string, number>()
  let next = 0
  for (const name of (await readdir(dir)).sort()) {
    const m = SEGMENT.exec(name)
    if (m) {
      sizes.set(name, (await stat(join(dir, name))).size)
      next = Math.max(next, Number(m[1]) + 1)
    } else if (name.endsWith('.tmp')) {
      // Torn before its rename: its events were never counted as spooled (they were still in memory).
      await unlink(join(dir, name)).catch(() => {})
    }
  }
  let total = [...sizes.values()].reduce((a, b) => a + b, 0)
  return {
    dir,
    maxBytes,
    async write(inputs) {
      const data = inputs.map((input) => stringifyJson(asJsonObject(input)) + '\n').join('')
      const bytes = Buffer.byteLength(data)
      if (total + bytes > maxBytes) return 'full'
      const name = `${String(next++).padStart(16, '0')}.seg`
      await writeFileDurably(dir, name, data, { tmpName: name.replace(/\.seg$/, '.tmp'), mode: 0o600 })
      sizes.set(name, bytes)
      total += bytes
      return 'written'
    },
    segments: () => [...sizes.keys()].sort(),
    async read(name) {
      const text = await readFile(join(dir, name), 'utf8')
      const inputs: AuditEventInput[] = []
      let unreadable = 0
      for (const line of text.split('\n')) {
        if (line === '') continue
        const parsed = parseJson(Buffer.from(line))
        if (parsed.ok && isSpooledInput(parsed.value)) inputs.push(parsed.value)
        else unreadable++
      }
      return { name, inputs, unreadable }
    },
    async remove(name) {
      await unlink(join(dir, name)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
      })
      total -= sizes.get(name) ?? 0
      sizes.delete(name)
    },
    sizeBytes: () => total,
  }
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A spooled line that is an event input (a torn or foreign line counts as unreadable). */
function isSpooledInput(value: JsonValue): value is JsonObject & AuditEventInput {
  return (
    isObject(value) &&
    typeof value.kind === 'string' &&
    isAuditEventKind(value.kind) &&
    typeof value.time === 'string' &&
    (value.session_id === null || typeof value.session_id === 'string') &&
    isObject(value.payload)
  )
}

import { readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { reportError } from '../audit/report-error.js'
import { parseDurationMillis } from '../config/duration.js'
import { pruneOlderThan, type RetentionOutcome } from '../ledger/retention.js'
import type { RuntimeStore } from '../store/runtime-store.js'

/** `retention.days`: a number of days, or the duration syntax of `prune --older-than` (`90d`, `12w`). */
export function retentionMillis(days: number | string): number {
  if (typeof days === 'number') return days * 86_400_000
  const d = parseDurationMillis(days)
  if (!d.ok) throw new Error(`retention.days: ${d.reason}`)
  return d.value
}

/** What one retention pass removed. */
interface RetentionPass {
  readonly before: string
  readonly store: RetentionOutcome
  /** JSONL files deleted (rotated files older than the window). */
  readonly files: string[]
}

/**
 * One retention pass: payloads of events older than the window are removed from the store (leaf hashes kept,
 * the removal itself recorded as an `audit.pruned` event, see ledger/retention.ts), and JSONL files last written
 * before the window are deleted. Runs inside the gateway, so it appends to the log through the gateway's own
 * store and never competes with it for sequence numbers.
 */
export async function runRetention(options: {
  store: Pick<RuntimeStore, 'origin' | 'rawEvents' | 'append' | 'prunePayloads'>
  keepMillis: number
  jsonlDirs: readonly string[]
  user: string
  now?: Date
}): Promise<RetentionPass> {
  const now = options.now ?? new Date()
  const before = new Date(now.getTime() - options.keepMillis).toISOString()
  const outcome = await pruneOlderThan({ store: options.store, before, user: options.user, now })
  const files: string[] = []
  for (const dir of options.jsonlDirs) {
    let names: string[]
    try {
      names = await readdir(dir)
    } catch {
      continue // the sink has not written yet
    }
    for (const name of names) {
      // Only closed files: the active file of today is never touched.
      if (!/\.jsonl(\.gz)?$/.test(name)) continue
      const path = join(dir, name)
      try {
        const s = await stat(path)
        if (s.isFile() && s.mtime.toISOString() < before) {
          await unlink(path)
          files.push(path)
        }
      } catch (err) {
        reportError(err, `retention: ${path}`)
      }
    }
  }
  return { before, store: outcome, files }
}

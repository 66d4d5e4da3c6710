/**
 * Where signed checkpoints go besides the store: somewhere the data directory's owner cannot rewrite
 * (another machine's mount, a WORM bucket behind a webhook). Each published checkpoint is one JSON line
 * `{origin, size, root_hash, note, created_at}`, which `comfy-audit verify --published FILE` reads back.
 */
import { appendFile } from 'node:fs/promises'
import { parseJson } from '../audit/json.js'
import type { StoredCheckpoint } from '../store/store.js'

/** Appends each checkpoint as one JSON line to `path`. */
export function createFilePublisher(path: string): (note: string, cp: StoredCheckpoint) => Promise<void> {
  return async (_note, cp) => {
    await appendFile(path, JSON.stringify(cp) + '\n', { encoding: 'utf8', mode: 0o644 })
  }
}

/** POSTs each checkpoint as JSON to `url`; a non-2xx answer is a failure (reported by the ledger). */
export function createWebhookPublisher(
  url: string,
  options: { headers?: Record<string, string>; timeoutMillis?: number } = {},
): (note: string, cp: StoredCheckpoint) => Promise<void> {
  return async (_note, cp) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body: JSON.stringify(cp),
      signal: AbortSignal.timeout(options.timeoutMillis ?? 10_000),
    })
    await res.arrayBuffer().catch(() => undefined)
    if (!res.ok) throw new Error(`checkpoint webhook answered ${res.status}`)
  }
}

/** Reads a published-checkpoints file; lines that are not checkpoints are reported, not fatal. */
export function parsePublishedCheckpoints(text: string): {
  checkpoints: StoredCheckpoint[]
  problems: string[]
} {
  const checkpoints: StoredCheckpoint[] = []
  const problems: string[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return
    const parsed = parseJson(line)
    const v = parsed.ok ? parsed.value : null
    if (
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      typeof v.origin === 'string' &&
      typeof v.size === 'number' &&
      typeof v.root_hash === 'string' &&
      typeof v.note === 'string'
    ) {
      checkpoints.push({
        origin: v.origin,
        size: v.size,
        root_hash: v.root_hash,
        note: v.note,
        created_at: typeof v.created_at === 'string' ? v.created_at : '',
      })
    } else problems.push(`line ${i + 1}: not a checkpoint`)
  })
  return { checkpoints, problems }
}

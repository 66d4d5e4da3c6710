/**
 * Which client made an output file, from ComfyUI's history (files are listed under the prompt that made them,
 * with its client id), for `/view` under `visibility: own`.
 *
 * The index is rebuilt on a miss, at most once per {@link OUTPUT_INDEX_MIN_AGE_MS}, and concurrent misses
 * share one rebuild, so a page full of thumbnails costs one history read.
 */
import type { JsonObject } from '../audit/types.js'
import { isJsonObject, itemClientId } from './comfy-items.js'
import type { UpstreamLookups } from './upstream-lookups.js'

/** The shortest time between two history reads, ms. */
const OUTPUT_INDEX_MIN_AGE_MS = 250

/** An output file as `/view` names it. */
interface OutputFile {
  readonly filename: string
  readonly subfolder: string
  readonly type: string
}

/** Client ids whose prompts list the file; a cached re-run lists one file under several prompts. */
export type OutputClientIds = (file: OutputFile) => Promise<string[]>

const fileKey = (f: OutputFile): string => `${f.type}\0${f.subfolder}\0${f.filename}`

function indexHistory(history: JsonObject): Map<string, string[]> {
  const index = new Map<string, string[]>()
  for (const entry of Object.values(history)) {
    if (!isJsonObject(entry) || !isJsonObject(entry.outputs)) continue
    const clientId = itemClientId(entry.prompt)
    if (clientId === null) continue
    for (const nodeOutput of Object.values(entry.outputs)) {
      if (!isJsonObject(nodeOutput)) continue
      for (const list of Object.values(nodeOutput)) {
        if (!Array.isArray(list)) continue
        for (const f of list) {
          if (!isJsonObject(f) || typeof f.filename !== 'string') continue
          const key = fileKey({
            filename: f.filename,
            subfolder: typeof f.subfolder === 'string' ? f.subfolder : '',
            type: typeof f.type === 'string' ? f.type : 'output',
          })
          const ids = index.get(key)
          if (ids === undefined) index.set(key, [clientId])
          else if (!ids.includes(clientId)) ids.push(clientId)
        }
      }
    }
  }
  return index
}

/** Builds the cached file-to-client-ids lookup over ComfyUI's history. */
export function createOutputClientIds(lookups: UpstreamLookups, now: () => number): OutputClientIds {
  let index = new Map<string, string[]>()
  let indexedAt = -Infinity
  let indexing: Promise<void> | null = null

  const rebuild = async (): Promise<void> => {
    const history = await lookups.history()
    // Unreachable: keep the old index and its age, so the next miss tries again.
    if (history === null) return
    index = indexHistory(history)
    indexedAt = now()
  }

  return async (file) => {
    const key = fileKey(file)
    if (!index.has(key) && now() - indexedAt >= OUTPUT_INDEX_MIN_AGE_MS) {
      indexing ??= rebuild().finally(() => {
        indexing = null
      })
      await indexing
    }
    return index.get(key) ?? []
  }
}

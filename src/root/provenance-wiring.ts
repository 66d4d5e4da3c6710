/**
 * Provenance in the running gateway: model files and outputs are hashed in worker threads after their events
 * are committed, so the proxy path never waits for it; the hashes are later events of the same session.
 */
import { reportError } from '../audit/report-error.js'
import type { AuditEventInput, FileRef } from '../audit/types.js'
import type { CaptureOptions } from '../capture/capture.js'
import type { Config } from '../config/config.js'
import { createFileHasher } from '../provenance/file-hasher.js'
import { createModelHasher } from '../provenance/model-hasher.js'
import {
  createOutputHasher,
  createProvenanceEnricher,
  type ProvenanceEnricher,
} from '../provenance/provenance-enricher.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import type { ComfyReader } from './comfy-reader.js'

/** Real names of redacted outputs held at most (one never hashed is dropped first). */
const MAX_REAL_NAMES = 4096

/** What the root holds of provenance. */
export interface RootProvenance {
  /** Capture's `onRedactedFile`: remembers the real name of an output whose recorded name redaction changed. */
  readonly onRedactedFile: NonNullable<CaptureOptions['onRedactedFile']>
  /** Resolves when every hash started so far has been emitted (at once when provenance is off). */
  idle(): Promise<void>
  /** Waits for running hashes at most `maxWaitMillis`, then stops following commits. */
  settle(maxWaitMillis: number): Promise<void>
  /** Stops the hashing workers. */
  close(): Promise<void>
}

/** What provenance needs of the rest of the gateway. */
interface ProvenanceDeps {
  readonly config: Readonly<Config>
  readonly store: Pick<RuntimeStore, 'onCommitted' | 'getState' | 'setState'>
  /** Appends events made outside capture (redacted as capture's are). */
  readonly append: (events: AuditEventInput[]) => Promise<unknown>
  readonly comfy: ComfyReader
  /** ComfyUI's base URL, for outputs streamed from `/view`. */
  readonly comfyUrl: string
  readonly now?: () => number
}

/** Starts following commits when `provenance.enabled`; the file hasher exists either way (outputs, close). */
export function startProvenance(deps: ProvenanceDeps): RootProvenance {
  const { config, store } = deps
  const fileHasher = createFileHasher({ workers: config.provenance.workers })
  // Outputs whose names redaction changed, by the name the log holds: the hasher needs the real name to find
  // the file. It lives only here, in memory, until the file is hashed (bounded: one never hashed is dropped).
  const realNames = new Map<string, FileRef>()
  const realNameKey = (sessionId: string, nodeId: string, f: FileRef): string =>
    JSON.stringify([sessionId, nodeId, f.type, f.subfolder, f.filename])
  const comfyOutputs = createOutputHasher({
    comfyUrl: deps.comfyUrl,
    fileHasher,
    localDirs: config.provenance.localDirs,
  })
  const enricher: ProvenanceEnricher | null = config.provenance.enabled
    ? createProvenanceEnricher({
        emit: (events) => deps.append(events),
        modelHasher: createModelHasher({
          fileHasher,
          cacheStore: store,
          pathMap: config.provenance.pathMap,
          folderPaths: async () => {
            const v = await deps.comfy.getJson('/internal/folder_paths', 10_000)
            if (!v || typeof v !== 'object' || Array.isArray(v)) return null
            const out: Record<string, string[]> = {}
            for (const [k, dirs] of Object.entries(v)) {
              if (Array.isArray(dirs)) out[k] = dirs.filter((d): d is string => typeof d === 'string')
            }
            return out
          },
        }),
        outputHasher: {
          hash: (file, sessionId) => {
            const nodeId = (file as FileRef & { node_id?: unknown }).node_id
            const key = sessionId && typeof nodeId === 'string' ? realNameKey(sessionId, nodeId, file) : null
            const real = key === null ? undefined : realNames.get(key)
            if (key !== null) realNames.delete(key)
            return comfyOutputs.hash(real ?? file)
          },
        },
        onError: (err, context) => reportError(err, `provenance: ${context}`),
        now: deps.now,
      })
    : null
  const offEnricher = enricher ? store.onCommitted((events) => enricher.onCommitted(events)) : () => {}
  return {
    onRedactedFile: ({ sessionId, nodeId, recorded, real }) => {
      if (realNames.size >= MAX_REAL_NAMES) realNames.delete(realNames.keys().next().value as string)
      realNames.set(realNameKey(sessionId, nodeId, recorded), real)
    },
    idle: async () => {
      if (enricher) await enricher.idle()
    },
    settle: async (maxWaitMillis) => {
      // A later start re-hashes nothing it already has (cache), so a bounded wait loses nothing for good.
      if (enricher) {
        await Promise.race([enricher.idle(), new Promise((r) => setTimeout(r, maxWaitMillis).unref())])
      }
      offEnricher()
    },
    close: () => fileHasher.close(),
  }
}

/**
 * Adds provenance to the log after the fact, off the proxy path: when capture's events are committed, the
 * run's model files and output files are hashed (in worker threads, or streamed from ComfyUI's `/view`),
 * and the results come back as later events of the same session (`models.hashed` with a `session.models`
 * patch, `output.hashed` with `outputs` rows), so the derived tables get sha256, bytes, width and height.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { modelsHashedEvent, outputHashedEvent } from '../audit/audit-events.js'
import { decodeEvent } from '../audit/decode-event.js'
import { reportError } from '../audit/report-error.js'
import { createComfyClient, type ComfyClient } from '../comfyui/comfy-client.js'
import type { AuditEvent, AuditEventInput, FileRef, JsonObject, JsonValue, ModelRef } from '../audit/types.js'
import type { FileHasher } from './file-hasher.js'
import { findEmbeddingRefs, type ModelHasher } from './model-hasher.js'
import { pngSize } from './png-metadata.js'

/** An output file's digest. */
interface OutputDigest {
  readonly sha256: string
  readonly bytes: number
  readonly width: number | null
  readonly height: number | null
}

/** Hashes a file ComfyUI produced or read. */
interface OutputHasher {
  /**
   * Hashes one file. `sessionId` is the session the file belongs to, so that a wrapper can find a file the
   * log records under a redacted name (see `onRedactedFile` of capture).
   */
  hash(file: FileRef, sessionId?: string): Promise<OutputDigest>
}

/** Options of {@link createOutputHasher}. */
interface OutputHasherOptions {
  /** ComfyUI's base URL (a path prefix is kept), for `/view` when the file is not local. */
  readonly comfyUrl: string
  /** ComfyUI's `output`, `temp` and `input` folders when this host can read them. */
  readonly localDirs?: Partial<Record<'output' | 'temp' | 'input', string>>
  /** Worker pool for local files (streamed on the main thread otherwise). */
  readonly fileHasher?: FileHasher
  readonly timeoutMillis?: number
}

function localPath(base: string, file: FileRef): string | null {
  const root = resolve(base)
  const p = resolve(join(root, file.subfolder, file.filename))
  const rel = relative(root, p)
  return rel === '' || rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel) ? null : p
}

async function readHead(path: string): Promise<Buffer> {
  const handle = await open(path, 'r')
  try {
    const buf = Buffer.alloc(24)
    const { bytesRead } = await handle.read(buf, 0, 24, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

/** Hashes outputs from ComfyUI's local folders when configured, else streams them from `/view`. */
export function createOutputHasher(options: OutputHasherOptions): OutputHasher {
  // Made on first use: a hasher that only reads local folders never needs ComfyUI's URL to be valid.
  let comfy: ComfyClient | undefined
  return {
    async hash(file) {
      const dir = options.localDirs?.[file.type as 'output' | 'temp' | 'input']
      if (dir) {
        const path = localPath(dir, file)
        if (!path)
          throw new Error(`output ${file.subfolder}/${file.filename} escapes the ${file.type} folder`)
        const digest = options.fileHasher
          ? await options.fileHasher.hash(path)
          : await (async () => {
              const hash = createHash('sha256')
              const handle = await open(path, 'r')
              let bytes = 0
              try {
                for await (const chunk of handle.createReadStream()) {
                  hash.update(chunk as Buffer)
                  bytes += (chunk as Buffer).length
                }
              } finally {
                await handle.close().catch(() => undefined)
              }
              return { sha256: hash.digest('hex'), bytes }
            })()
        const size = pngSize(await readHead(path))
        return { ...digest, width: size?.width ?? null, height: size?.height ?? null }
      }
      const query = new URLSearchParams({
        filename: file.filename,
        subfolder: file.subfolder,
        type: file.type,
      })
      comfy ??= createComfyClient({
        baseUrl: options.comfyUrl,
        timeoutMillis: options.timeoutMillis ?? 60_000,
      })
      const res = await comfy.stream(`/view?${query.toString()}`)
      if (!res.ok)
        throw new Error(`GET /view for ${file.filename} answered ${res.status ?? `nothing: ${res.reason}`}`)
      const hash = createHash('sha256')
      let bytes = 0
      let head = Buffer.alloc(0)
      for await (const chunk of res.value.body) {
        const buf = chunk as Buffer
        hash.update(buf)
        bytes += buf.length
        if (head.length < 24) head = Buffer.concat([head, buf.subarray(0, 24 - head.length)])
      }
      const size = pngSize(head)
      return { sha256: hash.digest('hex'), bytes, width: size?.width ?? null, height: size?.height ?? null }
    },
  }
}

/** Options of {@link createProvenanceEnricher}. */
interface ProvenanceEnricherOptions {
  /** Appends events to the log (the composition root's `store.append`). */
  readonly emit: (events: AuditEventInput[]) => Promise<unknown> | void
  readonly modelHasher?: ModelHasher
  readonly outputHasher?: OutputHasher
  /** Epoch-ms clock. */
  readonly now?: () => number
  readonly onError?: (error: unknown, context: string) => void
}

/** Follows committed events and emits provenance events. */
export interface ProvenanceEnricher {
  /** Feed it every committed batch (`store.onCommitted(enricher.onCommitted)`). Never throws. */
  onCommitted(events: readonly AuditEvent[]): void
  /** Resolves when every hash started so far has been emitted (tests, shutdown). */
  idle(): Promise<void>
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function filesOf(value: JsonValue | undefined): (FileRef & { node_id: string })[] {
  if (!Array.isArray(value)) return []
  const files: (FileRef & { node_id: string })[] = []
  for (const f of value) {
    if (
      isObject(f) &&
      typeof f.node_id === 'string' &&
      typeof f.filename === 'string' &&
      typeof f.subfolder === 'string' &&
      typeof f.type === 'string' &&
      (f.sha256 === undefined || f.sha256 === null)
    ) {
      files.push({ node_id: f.node_id, filename: f.filename, subfolder: f.subfolder, type: f.type })
    }
  }
  return files
}

const MAX_SEEN = 10_000

/** Node types that load an image from ComfyUI's input folder through their `image` input. */
const IMAGE_LOADERS: ReadonlySet<string> = new Set(['LoadImage', 'LoadImageMask'])

/**
 * The image files a prompt loads: `image` inputs of the image loaders, as ComfyUI resolves them
 * (`sub/name.png`, an optional ` [input]`/` [output]`/` [temp]` annotation choosing the folder).
 */
export function inputFiles(prompt: JsonValue | null): (FileRef & { node_id: string })[] {
  const files: (FileRef & { node_id: string })[] = []
  if (!isObject(prompt ?? undefined)) return files
  for (const [nodeId, node] of Object.entries(prompt as JsonObject)) {
    if (!isObject(node) || typeof node.class_type !== 'string' || !IMAGE_LOADERS.has(node.class_type))
      continue
    const inputs = node.inputs
    if (!isObject(inputs) || typeof inputs.image !== 'string') continue
    let name = inputs.image
    let type = 'input'
    const annotated = / \[(input|output|temp)\]$/.exec(name)
    if (annotated) {
      type = annotated[1]!
      name = name.slice(0, -annotated[0].length)
    }
    // An output or temp file loaded back in is already indexed as what its own run produced.
    if (type !== 'input') continue
    const slash = name.lastIndexOf('/')
    files.push({
      node_id: nodeId,
      filename: slash >= 0 ? name.slice(slash + 1) : name,
      subfolder: slash >= 0 ? name.slice(0, slash) : '',
      type,
    })
  }
  return files
}

/** Creates the enricher; see the module comment. */
export function createProvenanceEnricher(options: ProvenanceEnricherOptions): ProvenanceEnricher {
  const pending = new Set<Promise<void>>()
  const seen = new Set<string>()
  const onError = options.onError ?? ((e, c) => reportError(e, c))
  const now = (): string => new Date(options.now?.() ?? Date.now()).toISOString()

  // Prompts of sessions not started yet, by session id (bounded): their input images are hashed at start.
  const started = new Map<string, JsonValue>()
  const remember = (sid: string, prompt: JsonValue): void => {
    if (started.size >= MAX_SEEN) started.delete(started.keys().next().value as string)
    started.set(sid, prompt)
  }

  const track = (task: Promise<void>): void => {
    const p = task.catch((error: unknown) => onError(error, 'provenance'))
    pending.add(p)
    void p.finally(() => pending.delete(p))
  }

  const hashModels = async (sessionId: string, models: ModelRef[]): Promise<void> => {
    const hasher = options.modelHasher
    if (!hasher || models.length === 0) return
    const hashed = await hasher.hashModels(models)
    await options.emit([modelsHashedEvent(now(), sessionId, hashed)])
  }

  const hashOutputs = async (sessionId: string, files: (FileRef & { node_id: string })[]): Promise<void> => {
    const hasher = options.outputHasher
    if (!hasher) return
    const rows: (FileRef & { node_id: string })[] = []
    for (const f of files) {
      try {
        const d = await hasher.hash(f, sessionId)
        rows.push({ ...f, sha256: d.sha256, bytes: d.bytes, width: d.width, height: d.height })
      } catch (error) {
        onError(error, `provenance: hashing output ${f.subfolder}/${f.filename}`)
      }
    }
    if (rows.length > 0) {
      await options.emit([outputHashedEvent(now(), sessionId, rows)])
    }
  }

  return {
    onCommitted(events) {
      for (const event of events) {
        const sid = event.session_id
        if (sid === null) continue
        const session = isObject(event.payload.session) ? event.payload.session : undefined
        if (event.kind === 'prompt.submitted' && session) {
          const decoded = decodeEvent(event)
          const declared: readonly ModelRef[] =
            decoded.ok && decoded.event.kind === 'prompt.submitted'
              ? (decoded.event.payload.session?.models ?? [])
              : []
          const embeddings = findEmbeddingRefs(session.prompt ?? null)
          track(hashModels(sid, [...declared, ...embeddings]))
        }
        // Input images are hashed when the run starts (not at submission: a refused prompt loads nothing).
        if (event.kind === 'prompt.submitted' && session?.prompt) remember(sid, session.prompt)
        if (event.kind === 'execution.started') {
          const files = inputFiles(started.get(sid) ?? null)
          started.delete(sid)
          if (files.length > 0) track(hashOutputs(sid, files))
        }
        if (event.kind === 'node.finished' || event.kind === 'execution.finished') {
          const files = [...filesOf(event.payload.outputs), ...filesOf(session?.outputs)].filter((f) => {
            const key = JSON.stringify([event.origin, sid, f.node_id, f.type, f.subfolder, f.filename])
            if (seen.has(key)) return false
            if (seen.size >= MAX_SEEN) seen.delete(seen.values().next().value as string)
            seen.add(key)
            return true
          })
          if (files.length > 0) track(hashOutputs(sid, files))
        }
      }
    },
    async idle() {
      while (pending.size > 0) await Promise.all([...pending])
    },
  }
}

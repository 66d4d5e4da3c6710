/**
 * Model provenance: resolves the model names a prompt gives to files through ComfyUI's folders
 * (`GET /internal/folder_paths`: `{folder: [abs dir, ...]}` in search order; the first dir holding the file
 * wins, as `folder_paths.get_full_path` does), and hashes them with SHA-256 and the AutoV2 short form
 * (first 10 hex digits, as Civitai and A1111 show it). Hashes are cached by (path, size, mtime): each file
 * is hashed once, and a `stat` at every use notices a swapped file.
 */
import { stat } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import type { JsonValue, ModelRef } from '../audit/types.js'
import type { FileDigest, FileHasher } from './file-hasher.js'

/** Options of {@link createModelHasher}. */
interface ModelHasherOptions {
  readonly fileHasher: FileHasher
  /** ComfyUI's `/internal/folder_paths` answer (or a function fetching it). */
  readonly folderPaths:
    | Readonly<Record<string, readonly string[]>>
    | (() => Promise<Readonly<Record<string, readonly string[]>> | null>)
  /** `[ComfyUI's prefix, this host's prefix]` pairs, for a gateway on another host (first match wins). */
  readonly pathMap?: readonly (readonly [string, string])[]
  /** Persists the cache across restarts (e.g. the store's state). */
  readonly cacheStore?: {
    getState(key: string): Promise<JsonValue | undefined>
    setState(key: string, value: JsonValue): Promise<void>
  }
}

/** Resolves and hashes model files. */
export interface ModelHasher {
  /** The local path of `name` in ComfyUI's `folder`, or null when no search dir has it. */
  resolve(folder: string, name: string): Promise<string | null>
  /** SHA-256 of a file, from the cache when its size and mtime are unchanged. */
  hashFile(path: string): Promise<FileDigest>
  /** The models with `sha256`, `autov2` and `bytes` filled in (null where the file was not found). */
  hashModels(models: readonly ModelRef[]): Promise<ModelRef[]>
}

/** Legacy folder names ComfyUI maps to the current ones. */
const ALIASES: Readonly<Record<string, string>> = { unet: 'diffusion_models', clip: 'text_encoders' }
const EMBEDDING_EXTENSIONS = ['', '.safetensors', '.pt', '.bin', '.pth', '.ckpt', '.pt2', '.sft']
const CACHE_KEY = 'provenance.file_hashes'

/** `embedding:name` references in the prompt's string inputs, as ComfyUI's CLIP tokenizer reads them. */
export function findEmbeddingRefs(graph: JsonValue | null): ModelRef[] {
  const refs: ModelRef[] = []
  if (typeof graph !== 'object' || graph === null || Array.isArray(graph)) return refs
  for (const [nodeId, node] of Object.entries(graph)) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) continue
    const inputs = node.inputs
    if (typeof inputs !== 'object' || inputs === null || Array.isArray(inputs)) continue
    for (const [inputName, value] of Object.entries(inputs)) {
      if (typeof value !== 'string') continue
      for (const m of value.matchAll(/embedding:([^\s,()]+)/g)) {
        // `(embedding:name:1.2)` is a weighted reference: the weight is not part of the name.
        const name = (m[1] as string).replace(/:[\d.]*$/, '').replace(/[.]+$/, '')
        if (!refs.some((r) => r.node_id === nodeId && r.name === name)) {
          refs.push({ folder: 'embeddings', name, node_id: nodeId, input_name: inputName })
        }
      }
    }
  }
  return refs
}

/** Creates a model hasher. */
export function createModelHasher(options: ModelHasherOptions): ModelHasher {
  const cache = new Map<string, { size: number; mtimeMs: number; sha256: string }>()
  const inFlight = new Map<string, Promise<FileDigest>>()
  let loaded: Promise<void> | undefined
  let folders: Readonly<Record<string, readonly string[]>> | null =
    typeof options.folderPaths === 'function' ? null : options.folderPaths

  const loadCache = (): Promise<void> =>
    (loaded ??= (async () => {
      const saved = await options.cacheStore?.getState(CACHE_KEY)
      if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) return
      for (const [path, v] of Object.entries(saved)) {
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
          const { size, mtimeMs, sha256 } = v
          if (typeof size === 'number' && typeof mtimeMs === 'number' && typeof sha256 === 'string')
            cache.set(path, { size, mtimeMs, sha256 })
        }
      }
    })())

  const mapPath = (p: string): string => {
    for (const [from, to] of options.pathMap ?? []) {
      if (p === from || p.startsWith(from.endsWith('/') ? from : from + '/')) return to + p.slice(from.length)
    }
    return p
  }

  const dirsOf = async (folder: string): Promise<readonly string[]> => {
    if (!folders && typeof options.folderPaths === 'function') folders = await options.folderPaths()
    return folders?.[ALIASES[folder] ?? folder] ?? []
  }

  const isFile = async (p: string): Promise<boolean> => {
    try {
      return (await stat(p)).isFile()
    } catch {
      return false
    }
  }

  const resolveIn = async (folder: string, name: string): Promise<string | null> => {
    if (name === '' || isAbsolute(name)) return null
    for (const dir of await dirsOf(folder)) {
      const base = resolve(mapPath(dir))
      const candidate = resolve(join(base, name))
      const rel = relative(base, candidate)
      // A name that climbs out of the folder is not a model ComfyUI would load.
      if (rel === '' || rel.startsWith('..' + sep) || rel === '..' || isAbsolute(rel)) continue
      if (await isFile(candidate)) return candidate
    }
    return null
  }

  const hashFile = async (path: string): Promise<FileDigest> => {
    await loadCache()
    const st = await stat(path)
    const hit = cache.get(path)
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs)
      return { sha256: hit.sha256, bytes: st.size }
    const key = `${path}\0${st.size}\0${st.mtimeMs}`
    let pending = inFlight.get(key)
    if (!pending) {
      pending = options.fileHasher.hash(path).then(async (digest) => {
        cache.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256: digest.sha256 })
        if (options.cacheStore) {
          const all: Record<string, JsonValue> = {}
          for (const [p, v] of cache) all[p] = { ...v }
          await options.cacheStore.setState(CACHE_KEY, all)
        }
        return digest
      })
      inFlight.set(key, pending)
      pending.then(
        () => inFlight.delete(key),
        () => inFlight.delete(key),
      )
    }
    return pending
  }

  return {
    async resolve(folder, name) {
      if (folder !== 'embeddings') return resolveIn(folder, name)
      for (const ext of EMBEDDING_EXTENSIONS) {
        const found = await resolveIn(folder, name + ext)
        if (found) return found
      }
      return null
    },
    hashFile,
    async hashModels(models) {
      return Promise.all(
        models.map(async (m): Promise<ModelRef> => {
          const path = await this.resolve(m.folder, m.name)
          if (!path) return { ...m, sha256: null, autov2: null, bytes: null }
          try {
            const d = await hashFile(path)
            return { ...m, sha256: d.sha256, autov2: d.sha256.slice(0, 10), bytes: d.bytes }
          } catch {
            return { ...m, sha256: null, autov2: null, bytes: null }
          }
        }),
      )
    },
  }
}

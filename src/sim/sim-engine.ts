/**
 * The stand-in's prompt worker: one prompt at a time, ComfyUI 0.8's classic output cache across
 * prompts, its node order, progress registry and event routing (execution.py `PromptExecutor`,
 * main.py `prompt_worker`). Events go out through `send(event, data, sid)`: `sid === null` means
 * broadcast, exactly where ComfyUI passes `sid=None`.
 */
import { createHash } from 'node:crypto'
import type { Catalogue } from './catalogue.js'
import type { DataDir } from './data-dir.js'
import { ExecutionList } from './execution-list.js'
import type { GpuModel } from './gpu-model.js'
import { tensorRepr } from './images.js'
import { PromptQueue, publicTuple } from './prompt-queue.js'
import type { HistoryEntry, QueueItem } from './prompt-queue.js'
import { PyFloat, clonePy, dumpPyJson, isPyObject } from './py-json.js'
import type { PyDict, PyObject, PyValue } from './py-json.js'
import { pyRepr } from './py-repr.js'
import { Interrupted, NodeFailure, imageFileHash, isSimValue, runNode } from './sim-nodes.js'
import type { SimValue } from './sim-nodes.js'

/** Where an event goes: a client id, or `null` for every socket. */
type Recipient = PyValue

interface SimEngineOptions {
  readonly dir: DataDir
  readonly catalogue: Catalogue
  readonly gpu: GpuModel
  readonly speed: number
  readonly now: () => number
  readonly random: () => number
  readonly send: (event: string, data: PyObject, sid: Recipient) => void
  /** A binary frame (`null`: every socket). */
  readonly sendBytes?: (message: Buffer, sid: Recipient) => void
  /** Whether `sid`'s socket negotiated `supports_preview_metadata`. */
  readonly supportsPreviewMetadata?: (sid: Recipient) => boolean
  /** `--preview-method`: none (default), auto, latent2rgb or taesd. */
  readonly previewMethod?: string
  readonly log: (message: string) => void
  /** Multiplies a node type's recorded timings (see SimOptions.nodeTimeFactor). */
  readonly nodeTimeFactor?: (classType: string) => number
  /** Called with the recorded milliseconds of every wait as it ends (see SimOptions.onSlept). */
  readonly onSlept?: (recordedMillis: number) => void
}

interface CacheEntry {
  readonly ui: PyObject | null
  readonly outputs: unknown[]
}

class Closed extends Error {}

// Classes whose IS_CHANGED hashes the input file (cache invalidation when the file changes).
const HASHES_IMAGE_FILE = new Set(['LoadImage', 'LoadImageMask'])

// NaN never equals anything in Python, so a NaN signature (a failed IS_CHANGED) never hits the cache.
let uniqueToken = 0

function canonical(v: unknown): string {
  if (v instanceof PyFloat) return Number.isNaN(v.value) ? `nan:${++uniqueToken}` : String(v.value)
  if (typeof v === 'boolean') return v ? '1' : '0'
  if (typeof v === 'number' || typeof v === 'bigint') return String(v)
  if (typeof v === 'string') return JSON.stringify(v)
  if (v === null || v === undefined) return 'null'
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']'
  if (isPyObject(v)) {
    return (
      '{' +
      Object.keys(v)
        .sort()
        .map((k) => JSON.stringify(k) + ':' + canonical(v[k]))
        .join(',') +
      '}'
    )
  }
  return '?'
}

function isLink(v: unknown): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number'
}

function formatValue(v: unknown): PyValue {
  if (v === null || v === undefined) return null
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string' || typeof v === 'bigint')
    return v
  if (v instanceof PyFloat) return v
  if (isSimValue(v)) return simRepr(v)
  return pyRepr(v)
}

function simRepr(v: SimValue): string {
  switch (v.kind) {
    case 'image':
      return tensorRepr(v.frames)
    case 'mask':
      return `tensor(<mask ${v.height}x${v.width}>)`
    case 'model':
      return '<comfy.model_patcher.ModelPatcher object at 0x7f3a9c2e1d90>'
    case 'clip':
      return '<comfy.sd.CLIP object at 0x7f3a9c2e2a50>'
    case 'vae':
      return '<comfy.sd.VAE object at 0x7f3a9c2e3b10>'
    case 'conditioning':
      return `[[tensor(<${v.text.length} tokens>), {'pooled_output': tensor(<pooled>)}]]`
    case 'latent':
      return `{'samples': tensor(<${v.batch}x4x${v.height}x${v.width}>)}`
    default:
      return `<${v.type}>`
  }
}

/** LatentPreviewMethod values (comfy/cli_args.py). */
export const PREVIEW_METHODS: readonly string[] = ['none', 'auto', 'latent2rgb', 'taesd']

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

/** Queue, history, caches and the worker of one stand-in server. */
export class SimEngine {
  readonly queue = new PromptQueue()
  readonly #o: SimEngineOptions
  readonly #outputs = new Map<string, CacheEntry>()
  readonly #objects = new Map<string, Record<string, unknown>>()
  readonly #warm = new Set<string>()
  #interrupted = false
  #running = false
  #closed = false
  #success = true
  #flags: { unload_models?: boolean; free_memory?: boolean } = {}
  readonly #timers = new Set<{ timer: NodeJS.Timeout; reject: (e: Error) => void }>()
  readonly #idleWaiters: Array<() => void> = []
  /** The running prompt's client id (ComfyUI's `server.client_id`, kept after the prompt ends). */
  clientId: Recipient = null
  /** The node last announced with `executing` while a prompt with a client runs. */
  lastNodeId: string | null = null
  lastPromptId: string | null = null
  /** `PromptServer.number`: the counter behind `number` when a POST gives none. */
  counter = 0

  constructor(options: SimEngineOptions) {
    this.#o = options
  }

  /** `{"exec_info": {"queue_remaining": N}}`. */
  queueInfo(): PyObject {
    return { exec_info: { queue_remaining: this.queue.remaining() } }
  }

  statusBroadcast(): void {
    this.#o.send('status', { status: this.queueInfo() }, null)
  }

  /** Queues an accepted prompt and wakes the worker. */
  put(item: QueueItem): void {
    this.queue.put(item)
    this.statusBroadcast()
    this.#kick()
  }

  /** POST /interrupt: sets the flag the running prompt checks before each node and at each step. */
  interrupt(promptId?: string): void {
    if (promptId !== undefined) {
      if (!this.queue.running().some((it) => it.promptId === promptId)) {
        this.#o.log(`Prompt ${promptId} is not currently running, skipping interrupt\n`)
        return
      }
      this.#o.log(`Interrupting prompt ${promptId}\n`)
    } else this.#o.log('Global interrupt (no prompt_id specified)\n')
    this.#interrupted = true
  }

  /** POST /free: applied by the worker when idle or after the current prompt. */
  setFlag(name: 'unload_models' | 'free_memory', value: boolean): void {
    this.#flags[name] = value
    if (!this.#running) this.#applyFlags()
  }

  /** Resolves when no prompt is queued or running. */
  idle(): Promise<void> {
    if (!this.#running && this.queue.remaining() === 0) return Promise.resolve()
    return new Promise((r) => this.#idleWaiters.push(r))
  }

  close(): void {
    this.#closed = true
    for (const t of this.#timers) {
      clearTimeout(t.timer)
      t.reject(new Closed())
    }
    this.#timers.clear()
  }

  #applyFlags(): void {
    const f = this.#flags
    this.#flags = {}
    const free = f.free_memory ?? false
    if (f.unload_models ?? free) this.#o.gpu.unloadModels()
    if (free) {
      this.#outputs.clear()
      this.#objects.clear()
      this.#success = true
    }
  }

  #kick(): void {
    if (this.#running || this.#closed) return
    this.#running = true
    void this.#work()
  }

  async #work(): Promise<void> {
    try {
      for (;;) {
        if (this.#closed) return
        const taken = this.queue.take()
        if (!taken) break
        this.statusBroadcast()
        await this.#runItem(taken.item, taken.taskId)
        this.#applyFlags()
      }
    } catch (e) {
      if (!(e instanceof Closed)) this.#o.log(`worker stopped: ${String(e)}\n`)
    } finally {
      this.#running = false
      if (!this.#closed && this.queue.pending().length > 0) this.#kick()
      else for (const r of this.#idleWaiters.splice(0)) r()
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.reject(new Closed())
    const delay = Math.max(0, ms / this.#o.speed)
    return new Promise((resolve, reject) => {
      const entry = {
        timer: setTimeout(() => {
          this.#timers.delete(entry)
          this.#o.onSlept?.(ms)
          resolve()
        }, delay),
        reject,
      }
      this.#timers.add(entry)
    })
  }

  async #runItem(item: QueueItem, taskId: number): Promise<void> {
    const o = this.#o
    const started = o.now()
    this.lastPromptId = item.promptId
    const extraData: PyObject = { ...item.extraData, ...item.sensitive }
    const promptId = item.promptId
    const prompt = item.prompt
    this.#interrupted = false
    this.clientId = Object.hasOwn(extraData, 'client_id') ? (extraData.client_id ?? null) : null
    const sid = this.clientId
    // set_preview_method: a known method other than "default" overrides the server's for this prompt.
    const asked = extraData.preview_method
    const method =
      typeof asked === 'string' && asked !== 'default' && PREVIEW_METHODS.includes(asked)
        ? asked
        : (o.previewMethod ?? 'none')
    const previews = method !== 'none'
    const messages: PyValue[] = []
    const addMessage = (event: string, data: PyObject, broadcast: boolean): void => {
      const d = { ...data, timestamp: Math.trunc(o.now()) }
      messages.push([event, d])
      if (sid !== null || broadcast) o.send(event, d, sid)
    }
    addMessage('execution_start', { prompt_id: promptId }, false)

    // is_changed (LoadImage's file hash), then the classic cache keys of every node.
    const ids = Object.keys(prompt)
    const node = (id: string): PyObject => (isPyObject(prompt[id]) ? (prompt[id] as PyObject) : {})
    const inputsOf = (id: string): PyObject =>
      isPyObject(node(id).inputs) ? (node(id).inputs as PyObject) : {}
    const classOf = (id: string): string => String(node(id).class_type)
    const isChanged = new Map<string, PyValue>()
    for (const id of ids) {
      const n = node(id)
      if (!HASHES_IMAGE_FILE.has(classOf(id))) {
        isChanged.set(id, false)
        continue
      }
      if (Object.hasOwn(n, 'is_changed')) {
        isChanged.set(id, n.is_changed!)
        continue
      }
      try {
        n.is_changed = [await imageFileHash(o.dir, String(inputsOf(id).image))]
      } catch (e) {
        o.log(`WARNING: ${e instanceof Error ? e.message : String(e)}\n`)
        n.is_changed = new PyFloat(NaN)
      }
      isChanged.set(id, n.is_changed)
    }
    // include_unique_id_in_input: a class with a hidden UNIQUE_ID input is keyed by node id too. A V3
    // node lists it as ("UNIQUE_ID",), which that check does not match, so only legacy nodes count.
    const hiddenUniqueId = new Map<string, boolean>()
    for (const id of ids) {
      const ct = classOf(id)
      if (hiddenUniqueId.has(ct)) continue
      const def = await o.catalogue.node(ct)
      const hidden = def && isPyObject(def.input) ? def.input.hidden : undefined
      hiddenUniqueId.set(ct, isPyObject(hidden) && Object.values(hidden).includes('UNIQUE_ID'))
    }
    const keys = new Map<string, string>()
    const immediate = (id: string, order: Map<string, number>): string => {
      if (!Object.hasOwn(prompt, id)) return `missing:${++uniqueToken}`
      const ct = classOf(id)
      const sig: unknown[] = [ct, isChanged.get(id) ?? false]
      if (hiddenUniqueId.get(ct) === true) sig.push(id)
      const inputs = inputsOf(id)
      for (const k of Object.keys(inputs).sort()) {
        const v = inputs[k]
        sig.push(isLink(v) ? [k, ['ANCESTOR', order.get(v[0]) ?? -1, v[1]]] : [k, v])
      }
      return canonical(sig)
    }
    const ancestry = (id: string, list: string[], order: Map<string, number>, depth: number): void => {
      if (!Object.hasOwn(prompt, id) || depth > 10000) return
      const inputs = inputsOf(id)
      for (const k of Object.keys(inputs).sort()) {
        const v = inputs[k]
        if (!isLink(v) || order.has(v[0])) continue
        list.push(v[0])
        order.set(v[0], list.length - 1)
        ancestry(v[0], list, order, depth + 1)
      }
    }
    for (const id of ids) {
      const list: string[] = []
      const order = new Map<string, number>()
      ancestry(id, list, order, 0)
      keys.set(id, [immediate(id, order), ...list.map((a) => immediate(a, order))].join('|'))
    }
    const used = new Set(keys.values())
    for (const k of [...this.#outputs.keys()]) if (!used.has(k)) this.#outputs.delete(k)
    const objectKeys = new Set(ids.map((id) => `${id}\u0000${classOf(id)}`))
    for (const k of [...this.#objects.keys()]) if (!objectKeys.has(k)) this.#objects.delete(k)

    const cachedOf = (id: string): CacheEntry | undefined => {
      const k = keys.get(id)
      return k === undefined ? undefined : this.#outputs.get(k)
    }
    const cachedNodes = ids.filter((id) => cachedOf(id) !== undefined)
    addMessage('execution_cached', { nodes: cachedNodes, prompt_id: promptId }, false)

    // The progress registry: every non-pending node, in first-touch order.
    const progress = new Map<string, { state: string; value: number | PyFloat; max: number | PyFloat }>()
    const sendProgressState = (): void => {
      const nodes: PyDict = new Map()
      for (const [id, s] of progress) {
        if (s.state === 'pending') continue
        nodes.set(id, {
          value: s.value,
          max: s.max,
          state: s.state,
          node_id: id,
          prompt_id: promptId,
          display_node_id: id,
          parent_node_id: null,
          real_node_id: id,
        })
      }
      o.send('progress_state', { prompt_id: promptId, nodes }, sid)
    }
    const entry = (id: string): { state: string; value: number | PyFloat; max: number | PyFloat } => {
      let e = progress.get(id)
      if (!e) {
        e = { state: 'pending', value: 0, max: 1 }
        progress.set(id, e)
      }
      return e
    }
    const finish = (id: string): void => {
      const e = entry(id)
      e.state = 'finished'
      e.value = e.max
      sendProgressState()
    }

    const uiOutputs = new Map<string, PyObject>()
    const executed: string[] = []
    const list = new ExecutionList({
      prompt,
      isCached: (id) => cachedOf(id) !== undefined,
      isOutput: (ct) => o.catalogue.isOutput(ct),
    })
    for (const out of item.outputs) list.addNode(out)

    let failure: { nodeId: string; error: unknown; inputs: PyObject | null } | undefined
    while (!list.isEmpty()) {
      const id = list.next()
      if (id === undefined) {
        const pending = list.pending()
        failure = {
          nodeId: pending[0]!,
          error: new NodeFailure('graph.DependencyCycleError', 'Dependency cycle detected', []),
          inputs: null,
        }
        break
      }
      const hit = cachedOf(id)
      if (hit) {
        if (sid !== null) {
          o.send(
            'executed',
            { node: id, display_node: id, output: hit.ui?.output ?? null, prompt_id: promptId },
            sid,
          )
          if (hit.ui) uiOutputs.set(id, hit.ui)
        }
        finish(id)
        this.#success = true
        list.complete(id)
        continue
      }
      const e = entry(id)
      e.state = 'running'
      e.value = new PyFloat(0)
      e.max = new PyFloat(1)
      sendProgressState()
      const ct = classOf(id)
      const def = (await o.catalogue.node(ct)) ?? {}
      const declared = isPyObject(def.input) ? def.input : {}
      const inputs: Record<string, unknown> = {}
      const formatted: PyObject = {}
      for (const [name, v] of Object.entries(inputsOf(id))) {
        const inDecl = ['required', 'optional', 'hidden'].some(
          (c) => isPyObject(declared[c]) && Object.hasOwn(declared[c] as PyObject, name),
        )
        if (isLink(v)) {
          const up = cachedOf(v[0])
          inputs[name] = up?.outputs[v[1]] ?? null
        } else if (inDecl) inputs[name] = v
        else continue
        formatted[name] = [formatValue(inputs[name])]
      }
      const hidden = isPyObject(declared.hidden) ? declared.hidden : {}
      for (const [name, kind] of Object.entries(hidden)) {
        if (kind === 'PROMPT') formatted[name] = [pyRepr(prompt)]
        else if (kind === 'EXTRA_PNGINFO') formatted[name] = [formatValue(extraData.extra_pnginfo ?? null)]
        else if (kind === 'UNIQUE_ID') formatted[name] = [id]
      }
      if (sid !== null) {
        this.lastNodeId = id
        o.send('executing', { node: id, display_node: id, prompt_id: promptId }, sid)
      }
      const objKey = `${id}\u0000${ct}`
      let state = this.#objects.get(objKey)
      if (!state) {
        state = {}
        this.#objects.set(objKey, state)
      }
      try {
        if (this.#interrupted) throw new Interrupted()
        const result = await runNode(ct, o.catalogue.returnTypes(ct), inputs, {
          nodeId: id,
          classType: ct,
          prompt,
          extraData,
          dir: o.dir,
          gpu: o.gpu,
          state,
          warm: this.#warm,
          sleep: (ms) => this.#sleep(ms * (o.nodeTimeFactor?.(ct) ?? 1)),
          previews,
          progress: async (value, total, preview) => {
            if (this.#interrupted) throw new Interrupted()
            const pe = entry(id)
            pe.state = 'running'
            pe.value = value
            pe.max = total
            // main.py's hook: update_progress (progress_state, then type 4 for a client that
            // negotiated it), then `progress`, then type 1 for any other (broadcast without a client).
            sendProgressState()
            const image = preview?.()
            const withMeta = sid !== null && (o.supportsPreviewMetadata?.(sid) ?? false)
            if (image && withMeta) {
              const meta = Buffer.from(
                dumpPyJson({
                  node_id: id,
                  prompt_id: promptId,
                  display_node_id: id,
                  parent_node_id: null,
                  real_node_id: id,
                  image_type: 'image/jpeg',
                }),
              )
              o.sendBytes?.(Buffer.concat([u32(4), u32(meta.length), meta, image]), sid)
            }
            o.send('progress', { value, max: total, prompt_id: promptId, node: id }, sid)
            if (image && !withMeta) o.sendBytes?.(Buffer.concat([u32(1), u32(1), image]), sid)
          },
          random: o.random,
          now: o.now,
        })
        if (result.ui && Object.keys(result.ui).length > 0) {
          uiOutputs.set(id, {
            meta: { node_id: id, display_node: id, parent_node: null, real_node_id: id },
            output: result.ui,
          })
          if (sid !== null)
            o.send('executed', { node: id, display_node: id, output: result.ui, prompt_id: promptId }, sid)
        }
        this.#outputs.set(keys.get(id)!, { ui: uiOutputs.get(id) ?? null, outputs: result.outputs })
        finish(id)
        executed.push(id)
        this.#success = true
        list.complete(id)
      } catch (err) {
        if (err instanceof Closed) throw err
        if (err instanceof Interrupted) o.log('Processing interrupted\n')
        failure = { nodeId: id, error: err, inputs: formatted }
        this.#success = false
        break
      }
    }

    if (failure) {
      const { nodeId, error } = failure
      const base = {
        prompt_id: promptId,
        node_id: nodeId,
        node_type: classOf(nodeId),
        executed: [...executed],
      }
      if (error instanceof Interrupted) addMessage('execution_interrupted', base, true)
      else {
        const f =
          error instanceof NodeFailure
            ? error
            : new NodeFailure('RuntimeError', error instanceof Error ? error.message : String(error), [])
        if (f.pyType !== 'graph.DependencyCycleError') {
          o.log(`!!! Exception during processing !!! ${f.message}\n`)
          o.log(`Traceback (most recent call last):\n${f.traceback.join('')}${f.pyType}: ${f.message}\n`)
        }
        addMessage(
          'execution_error',
          {
            ...base,
            exception_message: f.pyType === 'graph.DependencyCycleError' ? f.message : `${f.message}\n`,
            exception_type: f.pyType,
            traceback: f.traceback,
            current_inputs: failure.inputs ?? [],
            current_outputs: [...ids],
          },
          false,
        )
      }
    } else addMessage('execution_success', { prompt_id: promptId }, false)

    const outputs: PyDict = new Map()
    const meta: PyDict = new Map()
    for (const [id, ui] of uiOutputs) {
      outputs.set(id, ui.output ?? null)
      meta.set(id, ui.meta ?? null)
    }
    this.lastNodeId = null
    o.gpu.endPrompt()
    const success = this.#success
    this.queue.done(taskId, (running): HistoryEntry => ({
      prompt: publicTuple(running),
      outputs: clonePy(outputs),
      status: { status_str: success ? 'success' : 'error', completed: success, messages: clonePy(messages) },
      meta: clonePy(meta),
    }))
    this.statusBroadcast()
    if (sid !== null) o.send('executing', { node: null, prompt_id: promptId }, sid)
    o.log(`Prompt executed in ${((o.now() - started) / 1000).toFixed(2)} seconds\n`)
  }
}

/** SHA-256 hex of a buffer (upload de-duplication). */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

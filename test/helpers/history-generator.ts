/**
 * Generates an audit history with planted effects and writes it through the store's own write path
 * (`RuntimeStore.append`), in the event shapes capture emits: `prompt.submitted` (the session patch with the
 * prompt, UI workflow, models and seeds as `analyzePrompt` finds them), `prompt.accepted`, `execution.started`
 * (with the environment), `models.hashed`, `node.started`/`node.finished` per node, and `execution.finished`.
 * Randomness is seeded and the clock is the generator's own: the same options give the same history.
 *
 * Planted effects (each can be switched off; `control: true` switches all off):
 * - `slowdown`: one node type (`CLIPTextEncode`) runs `factor` (1.4) times slower from `after` on;
 * - `memoryPressure`: VAEDecode's duration rises steeply once device memory passes 85% of the card's total;
 * - `samplerWork`: KSampler's duration is `msPerStepMegapixel` × steps × megapixels (± 3% noise);
 * - `heavyUser`: one person submits 10× as many prompts as each other person, so 10× the GPU-seconds;
 * - `failingLora`: workflow `wf-portrait` switches its LoRA on its version 2 and every run of it then fails.
 * Without effects every duration is drawn independently of time, memory, size, steps and person.
 */
import { analyzePrompt } from '../../src/capture/prompt-analysis.js'
import type { AuditEventInput, JsonObject, JsonValue, ModelRef } from '../../src/audit/types.js'
import type { RuntimeStore } from '../../src/store/runtime-store.js'
import { seededRandom } from '../../src/demo/seeded-random.js'

export { seededRandom } from '../../src/demo/seeded-random.js'

/** Options of {@link generateHistory}. */
export interface HistoryOptions {
  readonly seed?: number
  /** First prompt's queue time (ISO); default 2026-11-01T00:00:00Z. */
  readonly start?: string
  /** How many prompts (sessions); default 600. */
  readonly sessions?: number
  /** Time between prompts in ms (jittered ±50%); default 20 min. */
  readonly spacingMillis?: number
  /** No planted effect at all. */
  readonly control?: boolean
  /** CLIPTextEncode becomes `factor` times slower from `after` (ISO) on. */
  readonly slowdown?: { readonly after: string; readonly factor: number } | false
  readonly memoryPressure?: boolean
  readonly samplerWork?: boolean
  readonly heavyUser?: boolean
  readonly failingLora?: boolean
  /** Events per append call (one commit); default 200. */
  readonly batchEvents?: number
  /**
   * Image post-processing nodes added between VAEDecode and SaveImage (default 0), cycling through six node
   * types with durations independent of everything: the benchmark's 30 node runs per prompt (8 + 22).
   */
  readonly extraNodes?: number
}

/** What the generator writes into: a runtime store, or the benchmark's bulk loader. */
export type HistoryTarget = Pick<RuntimeStore, 'append' | 'flush'>

/** Node types of {@link HistoryOptions.extraNodes}, in order. */
export const EXTRA_NODE_TYPES = [
  'ImageScaleBy',
  'ImageSharpen',
  'ImageBlur',
  'ColorCorrect',
  'ImageCrop',
  'PreviewImage',
] as const

/** Constants of the planted effects, for tests to compare the findings with. */
export const PLANTED = {
  slowType: 'CLIPTextEncode',
  slowFactor: 1.4,
  vramTotalMib: 24_576,
  /** Fraction of the card above which VAEDecode slows down. */
  memoryKnee: 0.85,
  msPerStepMegapixel: 12,
  heavyUser: 'dana',
  heavyFactor: 10,
  users: ['ana', 'ben', 'chloe', 'dana', 'eli'],
  loraWorkflow: 'wf-portrait',
  goodLora: 'portrait_v1.safetensors',
  badLora: 'portrait_v2.safetensors',
} as const

/** What was written. */
export interface GeneratedHistory {
  readonly sessions: number
  readonly nodeRuns: number
  readonly events: number
  /** Queue time of the last prompt plus its run time: "now" for the analysis. */
  readonly end: string
  /** Session ids of `wf-portrait` in queue order, with their LoRA and final status. */
  readonly loraRuns: { session_id: string; lora: string; status: string }[]
}

const SIZES = [
  [512, 512],
  [768, 768],
  [1024, 1024],
  [832, 1216],
  [1216, 832],
] as const
const HEAVY_CYCLE = ['ana', 'ben', 'chloe', 'eli', ...Array.from({ length: 10 }, () => PLANTED.heavyUser)]
const SAMPLERS = ['euler', 'euler_ancestral', 'dpmpp_2m', 'dpmpp_2m_sde'] as const
const SCHEDULERS = ['normal', 'karras', 'simple'] as const
const CHECKPOINTS = ['sd_xl_base_1.0.safetensors', 'juggernautXL_v9.safetensors'] as const

/** A stable stand-in for a model file's SHA-256: 64 hex digits derived from the name (FNV-1a rounds). */
export function standInSha256(name: string): string {
  let h = 2166136261
  let out = ''
  for (let round = 0; out.length < 64; round++) {
    for (const ch of `${round}:${name}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0
    out += h.toString(16).padStart(8, '0')
  }
  return out.slice(0, 64)
}

/** Writes a generated history into `store` and says what it wrote. */
export async function generateHistory(
  store: HistoryTarget,
  options: HistoryOptions = {},
): Promise<GeneratedHistory> {
  const control = options.control === true
  const rnd = seededRandom(options.seed ?? 1)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)] as T
  const noise = (spread: number): number => 1 + (rnd() * 2 - 1) * spread
  const slowdown = control
    ? false
    : (options.slowdown ?? { after: '2026-11-06T00:00:00Z', factor: PLANTED.slowFactor })
  const slowAfter = slowdown ? Date.parse(slowdown.after) : Infinity
  const memory = !control && options.memoryPressure !== false
  const work = !control && options.samplerWork !== false
  const heavy = !control && options.heavyUser !== false
  const lora = !control && options.failingLora !== false
  const count = options.sessions ?? 600
  const spacing = options.spacingMillis ?? 20 * 60_000
  const batchEvents = options.batchEvents ?? 200
  const extraNodes = options.extraNodes ?? 0
  let clock = Date.parse(options.start ?? '2026-11-01T00:00:00Z')
  const iso = (ms: number): string => new Date(Math.round(ms)).toISOString()
  const environment: JsonObject = {
    comfyui_version: '0.8.0',
    python_version: '3.12.3',
    pytorch_version: '2.5.1+cu124',
    os: 'posix',
    gpu_name: 'cuda:0 NVIDIA GeForce RTX 4090',
    vram_total_mib: PLANTED.vramTotalMib,
    custom_node_packs: [],
  }
  let pending: AuditEventInput[] = []
  let events = 0
  let nodeRuns = 0
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return
    const batch = pending
    pending = []
    events += batch.length
    await store.append(batch)
  }
  const push = async (
    kind: AuditEventInput['kind'],
    ms: number,
    sessionId: string | null,
    payload: JsonObject,
  ): Promise<void> => {
    pending.push({ kind, time: iso(ms), session_id: sessionId, payload })
    if (pending.length >= batchEvents) await flush()
  }
  const loraRuns: GeneratedHistory['loraRuns'] = []
  let portraitRuns = 0
  let end = clock
  for (let i = 0; i < count; i++) {
    clock += spacing * noise(0.5)
    const id = `s${String(i).padStart(6, '0')}-${Math.floor(rnd() * 1e9).toString(36)}`
    // The heavy user submits as many prompts as the four others together, ten times over (same kinds of
    // job), so their GPU-seconds are 10x each other person's while per-run timings stay comparable.
    const user = heavy
      ? (HEAVY_CYCLE[i % HEAVY_CYCLE.length] as string)
      : (PLANTED.users[i % PLANTED.users.length] as string)
    const portrait = i % 7 === 3
    const workflowId = portrait ? PLANTED.loraWorkflow : `wf-${['landscape', 'product', 'concept'][i % 3]}`
    // Version 2 of the portrait workflow (second half of the history) swaps the LoRA.
    const portraitVersion = portrait && portraitRuns >= 20 ? 2 : 1
    if (portrait) portraitRuns++
    const loraName = portrait
      ? portraitVersion === 2
        ? PLANTED.badLora
        : PLANTED.goodLora
      : 'detail_tweaker.safetensors'
    const [width, height] = pick(SIZES)
    const batch = pick([1, 1, 1, 2, 4])
    const steps = pick([20, 25, 30, 40])
    const graph: JsonObject = {
      '1': {
        class_type: 'CheckpointLoaderSimple',
        inputs: { ckpt_name: portrait ? CHECKPOINTS[0] : pick(CHECKPOINTS) },
      },
      '2': {
        class_type: 'LoraLoader',
        inputs: {
          lora_name: loraName,
          strength_model: 0.8,
          strength_clip: 0.8,
          model: ['1', 0],
          clip: ['1', 1],
        },
      },
      '3': {
        class_type: 'CLIPTextEncode',
        inputs: { text: `a ${workflowId} picture #${i}`, clip: ['2', 1] },
      },
      '4': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry, low quality', clip: ['2', 1] } },
      '5': { class_type: 'EmptyLatentImage', inputs: { width, height, batch_size: batch } },
      '6': {
        class_type: 'KSampler',
        inputs: {
          seed: Math.floor(rnd() * 2 ** 48),
          steps,
          cfg: pick([5, 6.5, 7, 8]),
          sampler_name: pick(SAMPLERS),
          scheduler: pick(SCHEDULERS),
          denoise: 1,
          model: ['2', 0],
          positive: ['3', 0],
          negative: ['4', 0],
          latent_image: ['5', 0],
        },
      },
      '7': { class_type: 'VAEDecode', inputs: { samples: ['6', 0], vae: ['1', 2] } },
      '8': { class_type: 'SaveImage', inputs: { filename_prefix: workflowId, images: ['7', 0] } },
    }
    const extraIds: string[] = []
    for (let e = 0; e < extraNodes; e++) {
      const nodeId = String(9 + e)
      graph[nodeId] = {
        class_type: EXTRA_NODE_TYPES[e % EXTRA_NODE_TYPES.length] as string,
        inputs: { image: [e === 0 ? '7' : String(8 + e), 0], amount: 1 },
      }
      extraIds.push(nodeId)
    }
    if (extraNodes > 0) (graph['8'] as { inputs: JsonObject }).inputs.images = [String(8 + extraNodes), 0]
    const workflow: JsonObject = {
      id: workflowId,
      revision: portraitVersion,
      version: 0.4,
      nodes: [],
      links: [],
    }
    const analysis = analyzePrompt(graph, { extra_pnginfo: { workflow } })
    const queuedAt = clock
    await push('prompt.submitted', queuedAt, id, {
      session: {
        status: 'queued',
        http_status: null,
        number: null,
        client_id: `gw-${user}`,
        prompt: analysis.prompt,
        workflow: analysis.workflow,
        prompt_sha256: analysis.prompt_sha256,
        workflow_sha256: analysis.workflow_sha256,
        extra_data: analysis.extra_data,
        validation: null,
        queued_at: iso(queuedAt),
        started_at: null,
        ended_at: null,
        duration_ms: null,
        environment: null,
        models: analysis.models as unknown as JsonValue,
        seeds: analysis.seeds as unknown as JsonValue,
        outputs: [],
        error: null,
        status_reason: null,
        flags: [],
        submitter: {
          user,
          auth_method: 'token',
          client_address: '10.0.0.7',
          user_agent: 'generator',
          client_id: null,
        },
      },
      downstream_client_id: null,
      body_bytes: 2048,
    })
    await push('prompt.accepted', queuedAt + 3, id, {
      session: { http_status: 200, number: i, validation: null },
      node_errors: {},
    })
    let t = queuedAt + 50 + rnd() * 200
    const startedAt = t
    await push('execution.started', t, id, {
      session: { status: 'running', started_at: iso(t), environment },
    })
    const hashed: ModelRef[] = analysis.models.map((m) => ({
      ...m,
      sha256: standInSha256(m.name),
      autov2: standInSha256(m.name).slice(0, 10),
      bytes: 100_000_000,
    }))
    await push('models.hashed', t + 1, id, { session: { models: hashed as unknown as JsonValue } })
    const megapixels = (width * height * batch) / 1e6
    const failing = lora && portraitVersion === 2
    let status: 'success' | 'error' = 'success'
    let errorNode: string | null = null
    const files: JsonObject[] = []
    for (const nodeId of ['1', '2', '3', '4', '5', '6', '7', ...extraIds, '8']) {
      const node = graph[nodeId] as { class_type: string; inputs: JsonObject }
      const type = node.class_type
      const cached = (type === 'CheckpointLoaderSimple' || type === 'LoraLoader') && rnd() < 0.6 && !failing
      let duration: number
      let gpu = Math.round(PLANTED.vramTotalMib * (0.3 + rnd() * 0.68))
      if (type === 'KSampler') {
        duration = work ? PLANTED.msPerStepMegapixel * steps * megapixels * noise(0.03) : 900 * noise(0.5)
      } else if (type === 'VAEDecode') {
        const fraction = gpu / PLANTED.vramTotalMib
        duration =
          memory && fraction > PLANTED.memoryKnee
            ? 300 * (1 + 40 * (fraction - PLANTED.memoryKnee)) * noise(0.1)
            : 300 * noise(0.1)
      } else if (type === 'CLIPTextEncode') {
        duration = 40 * noise(0.25) * (t >= slowAfter ? (slowdown ? slowdown.factor : 1) : 1)
      } else if (type === 'SaveImage') {
        duration = 60 * noise(0.3)
      } else if (type === 'EmptyLatentImage') {
        duration = 2 * noise(0.5)
      } else if ((EXTRA_NODE_TYPES as readonly string[]).includes(type)) {
        duration = 25 * noise(0.3)
      } else {
        duration = 1500 * noise(0.3)
      }
      duration = Math.max(1, Math.round(duration))
      if (cached) {
        duration = 0
        gpu = Math.round(PLANTED.vramTotalMib * 0.3)
      }
      const fails = failing && type === 'LoraLoader'
      const startMs = t
      if (!cached)
        await push('node.started', startMs, id, {
          node_id: nodeId,
          node_type: type,
          display_node: null,
          real_node_id: null,
          parent_node_id: null,
        })
      t += duration
      const outputs: JsonObject | null =
        type === 'SaveImage'
          ? { images: [{ filename: `${workflowId}_${i}.png`, subfolder: '', type: 'output' }] }
          : null
      const file = { filename: `${workflowId}_${i}.png`, subfolder: '', type: 'output', node_id: nodeId }
      if (type === 'SaveImage') files.push(file)
      await push('node.finished', t, id, {
        node_run: {
          session_id: id,
          node_id: nodeId,
          node_type: type,
          timestamp_start: iso(startMs),
          timestamp_end: iso(cached ? startMs : t),
          duration_ms: duration,
          inputs: node.inputs,
          outputs,
          status: cached ? 'cached' : fails ? 'error' : 'success',
          error_message: fails ? `lora key not loaded: ${PLANTED.badLora} does not match the model` : null,
          exception_type: fails ? 'RuntimeError' : null,
          traceback: fails
            ? ['Traceback (most recent call last):', 'RuntimeError: lora key not loaded']
            : null,
          gpu_memory_used: gpu,
          gpu_memory_torch: Math.round(gpu * 0.9),
          display_node: nodeId,
          real_node_id: nodeId,
          parent_node_id: null,
          progress: type === 'KSampler' ? { value: steps, max: steps } : null,
        },
        outputs: type === 'SaveImage' ? [file] : [],
      })
      nodeRuns++
      if (fails) {
        status = 'error'
        errorNode = nodeId
        break
      }
    }
    await push('execution.finished', t + 2, id, {
      session: {
        status,
        started_at: iso(startedAt),
        ended_at: iso(t + 2),
        duration_ms: Math.round(t + 2) - Math.round(startedAt),
        error:
          errorNode === null
            ? null
            : {
                node_id: errorNode,
                node_type: 'LoraLoader',
                exception_type: 'RuntimeError',
                exception_message: 'lora key not loaded',
              },
        outputs: files,
      },
    })
    if (portrait) loraRuns.push({ session_id: id, lora: loraName, status })
    end = Math.max(end, t + 2)
  }
  await flush()
  await store.flush()
  return { sessions: count, nodeRuns, events, end: iso(end), loraRuns }
}

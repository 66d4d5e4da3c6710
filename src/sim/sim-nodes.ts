/**
 * What the stand-in's nodes do. Image nodes really compute; model nodes read the safetensors headers
 * and take the recording's times; the audit fixture nodes behave like their Python originals
 * (shared/tools/comfyui-device/audit_fixture_nodes). Any other catalogued class passes its first
 * matching input through after a short delay.
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { basename, dirname, join, normalize, resolve, sep } from 'node:path'
import type { DataDir } from './data-dir.js'
import type { GpuModel } from './gpu-model.js'
import {
  blurFrame,
  frameFromRaw,
  frameToRaw,
  invertFrame,
  noiseFrame,
  pyRound,
  scaleFrame,
} from './images.js'
import type { Frame } from './images.js'
import { encodeJpeg } from './jpeg.js'
import { decodePng, encodePng } from './png.js'
import { dumpPyJson, isPyObject, pyNumber } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'
import { pyStr } from './py-repr.js'
import { readSafetensorsHeader } from './safetensors.js'
import { annotatedPath } from './validate-prompt.js'

export type SimValue =
  | { kind: 'image'; frames: Frame[] }
  | { kind: 'mask'; width: number; height: number; data: Float32Array }
  | { kind: 'model'; ckpt: string; loras: string[] }
  | { kind: 'clip'; ckpt: string; loras: string[] }
  | { kind: 'vae'; ckpt: string }
  | { kind: 'conditioning'; text: string }
  | { kind: 'latent'; width: number; height: number; batch: number; seed: number | undefined }
  | { kind: 'opaque'; type: string }

export function isSimValue(v: unknown): v is SimValue {
  return (
    typeof v === 'object' && v !== null && 'kind' in v && typeof (v as { kind: unknown }).kind === 'string'
  )
}

/** A node failure: a Python exception with the traceback frames ComfyUI would report. */
export class NodeFailure extends Error {
  constructor(
    readonly pyType: string,
    message: string,
    readonly traceback: string[],
  ) {
    super(message)
  }
}

/** `comfy.model_management.InterruptProcessingException`. */
export class Interrupted extends Error {}

interface NodeContext {
  readonly nodeId: string
  readonly classType: string
  /** The prompt as held in memory (with `is_changed`), for SaveImage's metadata. */
  readonly prompt: PyObject
  readonly extraData: PyObject
  readonly dir: DataDir
  readonly gpu: GpuModel
  /** Per-node object state, kept across prompts like ComfyUI's object cache. */
  readonly state: Record<string, unknown>
  /** Classes already run once in this server (first runs are slower: model loads, kernel warm-up). */
  readonly warm: Set<string>
  /** Waits `ms` recorded milliseconds (divided by the speed); not interruptible, like time.sleep. */
  sleep(ms: number): Promise<void>
  /** A progress-bar step: checks for an interrupt, then reports `value/total` (with a preview image). */
  progress(value: number, total: number, preview?: () => Buffer): Promise<void>
  /** Whether sampler previews are on for this prompt (`--preview-method`, `extra_data.preview_method`). */
  readonly previews: boolean
  random(): number
  now(): number
}

interface NodeResult {
  readonly outputs: unknown[]
  readonly ui?: PyObject
}

type NodeImpl = (inputs: Record<string, unknown>, ctx: NodeContext) => Promise<NodeResult>

const HOME = '/home/artist/ComfyUI'
const CARET = (n: number): string => ' '.repeat(n)

/** The four execution.py frames every node failure starts with (as recorded). */
const EXECUTION_FRAMES: readonly string[] = [
  `  File "${HOME}/execution.py", line 518, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n${CARET(62)}${'^'.repeat(151)}\n`,
  `  File "${HOME}/execution.py", line 329, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n${CARET(20)}${'^'.repeat(197)}\n`,
  `  File "${HOME}/execution.py", line 303, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n`,
  `  File "${HOME}/execution.py", line 291, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n`,
]

const AUDIT_FAIL_FRAME = `  File "${HOME}/custom_nodes/audit_fixture_nodes/__init__.py", line 35, in run\n    raise ValueError(message)\n`

const CHECKPOINT_FRAMES: readonly string[] = [
  `  File "${HOME}/nodes.py", line 585, in load_checkpoint\n    out = comfy.sd.load_checkpoint_guess_config(ckpt_path, output_vae=True, output_clip=True, embedding_directory=folder_paths.get_folder_paths("embeddings"))\n${CARET(10)}${'^'.repeat(148)}\n`,
  `  File "${HOME}/comfy/sd.py", line 1348, in load_checkpoint_guess_config\n    sd, metadata = comfy.utils.load_torch_file(ckpt_path, return_metadata=True)\n${CARET(19)}${'^'.repeat(60)}\n`,
  `  File "${HOME}/comfy/utils.py", line 80, in load_torch_file\n    raise e\n`,
  `  File "${HOME}/comfy/utils.py", line 64, in load_torch_file\n    with safetensors.safe_open(ckpt, framework="pt", device=device.type) as f:\n${CARET(9)}${'^'.repeat(63)}\n`,
]

const LORA_FRAMES: readonly string[] = [
  `  File "${HOME}/nodes.py", line 682, in load_lora\n    lora = comfy.utils.load_torch_file(lora_path, safe_load=True)\n${CARET(11)}${'^'.repeat(52)}\n`,
  `  File "${HOME}/comfy/utils.py", line 80, in load_torch_file\n    raise e\n`,
  `  File "${HOME}/comfy/utils.py", line 64, in load_torch_file\n    with safetensors.safe_open(ckpt, framework="pt", device=device.type) as f:\n${CARET(9)}${'^'.repeat(63)}\n`,
]

// VAELoader.load_vae reads the file with load_torch_file directly (nodes.py, ComfyUI 0.8.0).
const VAE_FRAMES: readonly string[] = [
  `  File "${HOME}/nodes.py", line 800, in load_vae\n    sd = comfy.utils.load_torch_file(vae_path)\n${CARET(9)}${'^'.repeat(37)}\n`,
  `  File "${HOME}/comfy/utils.py", line 80, in load_torch_file\n    raise e\n`,
  `  File "${HOME}/comfy/utils.py", line 64, in load_torch_file\n    with safetensors.safe_open(ckpt, framework="pt", device=device.type) as f:\n${CARET(9)}${'^'.repeat(63)}\n`,
]

function fail(pyType: string, message: string, frames: readonly string[]): never {
  throw new NodeFailure(pyType, message, [...EXECUTION_FRAMES, ...frames])
}

function frameOf(v: unknown, name: string): Frame[] {
  if (isSimValue(v) && v.kind === 'image') return v.frames
  return fail('AttributeError', `'NoneType' object has no attribute 'shape' (input ${name})`, [])
}

const num = (v: unknown, dflt: number): number => pyNumber(v) ?? dflt

/** The sha256 hex LoadImage's IS_CHANGED returns for a file. */
export async function imageFileHash(dir: DataDir, image: string): Promise<string> {
  const data = await readFile(annotatedPath(dir, image, dir.input))
  return createHash('sha256').update(data).digest('hex')
}

async function saveImages(
  frames: Frame[],
  prefixIn: string,
  ctx: NodeContext,
  kind: 'output' | 'temp',
  prefixAppend: string,
): Promise<NodeResult> {
  const baseDir = kind === 'output' ? ctx.dir.output : ctx.dir.temp
  let prefix = prefixIn + prefixAppend
  const first = frames[0]
  if (prefix.includes('%')) {
    const d = new Date(ctx.now())
    const p2 = (n: number): string => String(n).padStart(2, '0')
    prefix = prefix
      .replaceAll('%width%', String(first?.width ?? 0))
      .replaceAll('%height%', String(first?.height ?? 0))
      .replaceAll('%year%', String(d.getFullYear()))
      .replaceAll('%month%', p2(d.getMonth() + 1))
      .replaceAll('%day%', p2(d.getDate()))
      .replaceAll('%hour%', p2(d.getHours()))
      .replaceAll('%minute%', p2(d.getMinutes()))
      .replaceAll('%second%', p2(d.getSeconds()))
  }
  const norm = normalize(prefix)
  const subfolderRaw = dirname(norm)
  const subfolder = subfolderRaw === '.' ? '' : subfolderRaw
  const filename = basename(norm)
  const folder = resolve(baseDir, subfolder)
  if (folder !== baseDir && !folder.startsWith(baseDir + sep)) {
    fail(
      'Exception',
      `**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: ${folder}\n         output_dir: ${baseDir}`,
      [],
    )
  }
  let counter = 1
  try {
    let best = 0
    for (const name of await readdir(folder)) {
      const head = name.slice(0, filename.length + 1)
      if (head.slice(0, -1) === filename && head.endsWith('_')) {
        const digits = Number.parseInt(name.slice(filename.length + 1).split('_')[0] ?? '', 10)
        const d = /^\d+$/.test(name.slice(filename.length + 1).split('_')[0] ?? '') ? digits : 0
        best = Math.max(best, d)
        counter = best + 1
      }
    }
  } catch {
    await mkdir(folder, { recursive: true })
  }
  const text: Array<[string, string]> = [['prompt', dumpPyJson(ctx.prompt)]]
  const pnginfo = ctx.extraData.extra_pnginfo
  if (isPyObject(pnginfo)) for (const [k, v] of Object.entries(pnginfo)) text.push([k, dumpPyJson(v)])
  const results: PyValue[] = []
  for (let b = 0; b < frames.length; b++) {
    const file = `${filename.replaceAll('%batch_num%', String(b))}_${String(counter).padStart(5, '0')}_.png`
    const png = encodePng(frameToRaw(frames[b]!), { text, level: kind === 'output' ? 4 : 1 })
    await writeFile(join(folder, file), png)
    results.push({ filename: file, subfolder, type: kind })
    counter++
  }
  return { outputs: [], ui: { images: results } }
}

async function loadHeader(
  ctx: NodeContext,
  folder: string,
  name: string,
  frames: readonly string[],
): Promise<void> {
  const path = await ctx.dir.findModel(folder, name)
  if (!path) fail('FileNotFoundError', `Model in folder '${folder}' with filename '${name}' not found.`, [])
  // load_torch_file opens only .safetensors/.sft with safetensors; other files go to torch.load,
  // which the stand-in does not imitate (it accepts them).
  if (!/\.(safetensors|sft)$/i.test(path!)) return
  const header = await readSafetensorsHeader(path!)
  // Every message safetensors 0.6 gives ("header too large", "invalid JSON in header", ...) misses
  // the two CamelCase names load_torch_file rewrites into a ValueError, so the error is re-raised.
  if (!header.ok) fail('safetensors._safetensors_rust.SafetensorError', header.message, frames)
}

const IMPLS: Record<string, NodeImpl> = {
  async LoadImage(inputs, ctx) {
    const image = pyStr(inputs.image)
    const path = annotatedPath(ctx.dir, image, ctx.dir.input)
    let data: Buffer
    try {
      data = await readFile(path)
    } catch {
      fail('FileNotFoundError', `[Errno 2] No such file or directory: '${path}'`, [])
    }
    const decoded = decodePng(data!)
    if (!decoded.ok) fail('PIL.UnidentifiedImageError', `cannot identify image file '${path}'`, [])
    const v = (decoded as { ok: true; value: Parameters<typeof frameFromRaw>[0] }).value
    const { frame, alpha } = frameFromRaw(v)
    await ctx.sleep(7)
    const mask = alpha
      ? { kind: 'mask' as const, width: frame.width, height: frame.height, data: alpha.map((a) => 1 - a) }
      : { kind: 'mask' as const, width: 64, height: 64, data: new Float32Array(64 * 64) }
    return { outputs: [{ kind: 'image', frames: [frame] }, mask] }
  },
  async ImageScaleBy(inputs, ctx) {
    const frames = frameOf(inputs.image, 'image')
    const s = num(inputs.scale_by, 1)
    const method = pyStr(inputs.upscale_method)
    const out = frames.map((f) => scaleFrame(f, pyRound(f.width * s), pyRound(f.height * s), method))
    await ctx.sleep(6)
    return { outputs: [{ kind: 'image', frames: out }] }
  },
  async ImageBlur(inputs, ctx) {
    const frames = frameOf(inputs.image, 'image')
    const r = Math.trunc(num(inputs.blur_radius, 1))
    const sigma = num(inputs.sigma, 1)
    const out = frames.map((f) => blurFrame(f, r, sigma))
    await ctx.sleep(ctx.warm.has('ImageBlur') ? 12 : 175)
    return { outputs: [{ kind: 'image', frames: out }] }
  },
  async ImageInvert(inputs, ctx) {
    const out = frameOf(inputs.image, 'image').map(invertFrame)
    await ctx.sleep(1)
    return { outputs: [{ kind: 'image', frames: out }] }
  },
  async SaveImage(inputs, ctx) {
    const res = await saveImages(
      frameOf(inputs.images, 'images'),
      pyStr(inputs.filename_prefix ?? 'ComfyUI'),
      ctx,
      'output',
      '',
    )
    await ctx.sleep(15)
    return res
  },
  async PreviewImage(inputs, ctx) {
    // PreviewImage picks its suffix when the node object is created; the object cache keeps it.
    let suffix = ctx.state.previewSuffix as string | undefined
    if (!suffix) {
      const letters = 'abcdefghijklmnopqrstupvxyz'
      suffix =
        '_temp_' +
        Array.from({ length: 5 }, () => letters[Math.floor(ctx.random() * letters.length)]).join('')
      ctx.state.previewSuffix = suffix
    }
    const res = await saveImages(frameOf(inputs.images, 'images'), 'ComfyUI', ctx, 'temp', suffix)
    await ctx.sleep(13)
    return res
  },
  async AuditSlowProgress(inputs, ctx) {
    const image = inputs.image
    const seconds = num(inputs.seconds, 1)
    const steps = Math.max(1, Math.trunc(num(inputs.steps, 10)))
    for (let i = 0; i < steps; i++) {
      await ctx.sleep((seconds * 1000) / steps)
      await ctx.progress(i + 1, steps)
    }
    return { outputs: [image] }
  },
  async AuditFail(inputs) {
    frameOf(inputs.image, 'image')
    throw new NodeFailure('ValueError', pyStr(inputs.message), [...EXECUTION_FRAMES, AUDIT_FAIL_FRAME])
  },
  async AuditGpuAlloc(inputs, ctx) {
    ctx.gpu.hold(Math.trunc(num(inputs.megabytes, 1024)) * 1024 * 1024)
    await ctx.sleep(num(inputs.hold_seconds, 0.5) * 1000)
    return { outputs: [inputs.image] }
  },
  async AuditGpuFree(inputs, ctx) {
    ctx.gpu.release()
    await ctx.sleep(6)
    return { outputs: [inputs.image] }
  },
  async CheckpointLoaderSimple(inputs, ctx) {
    const name = pyStr(inputs.ckpt_name)
    await loadHeader(ctx, 'checkpoints', name, CHECKPOINT_FRAMES)
    await ctx.sleep(711)
    ctx.gpu.loadCheckpoint()
    return {
      outputs: [
        { kind: 'model', ckpt: name, loras: [] },
        { kind: 'clip', ckpt: name, loras: [] },
        { kind: 'vae', ckpt: name },
      ],
    }
  },
  async LoraLoader(inputs, ctx) {
    const name = pyStr(inputs.lora_name)
    await loadHeader(ctx, 'loras', name, LORA_FRAMES)
    await ctx.sleep(77)
    const m = inputs.model
    const c = inputs.clip
    return {
      outputs: [
        isSimValue(m) && m.kind === 'model' ? { ...m, loras: [...m.loras, name] } : m,
        isSimValue(c) && c.kind === 'clip' ? { ...c, loras: [...c.loras, name] } : c,
      ],
    }
  },
  async VAELoader(inputs, ctx) {
    const name = pyStr(inputs.vae_name)
    if (name !== 'pixel_space') await loadHeader(ctx, 'vae', name, VAE_FRAMES)
    await ctx.sleep(ctx.warm.has('VAELoader') ? 20 : 95)
    return { outputs: [{ kind: 'vae', ckpt: name }] }
  },
  async CLIPTextEncode(inputs, ctx) {
    await ctx.sleep(ctx.warm.has('CLIPTextEncode') ? 10 : 280)
    return { outputs: [{ kind: 'conditioning', text: pyStr(inputs.text) }] }
  },
  async EmptyLatentImage(inputs) {
    const w = Math.trunc(num(inputs.width, 512))
    const h = Math.trunc(num(inputs.height, 512))
    const batch = Math.trunc(num(inputs.batch_size, 1))
    return {
      outputs: [
        { kind: 'latent', width: Math.floor(w / 8), height: Math.floor(h / 8), batch, seed: undefined },
      ],
    }
  },
  async KSampler(inputs, ctx) {
    const steps = Math.max(1, Math.trunc(num(inputs.steps, 20)))
    const model = inputs.model
    const key =
      isSimValue(model) && model.kind === 'model' ? `${model.ckpt}|${model.loras.join(',')}` : 'none'
    const loaded = ctx.state.loadedModel === key
    ctx.state.loadedModel = key
    ctx.gpu.sample()
    await ctx.sleep(!ctx.warm.has('KSampler') ? 5440 : loaded ? 5 : 1690)
    const latent = inputs.latent_image
    const l = isSimValue(latent) && latent.kind === 'latent' ? latent : { width: 64, height: 64, batch: 1 }
    const seed = Number(BigInt.asUintN(32, BigInt(Math.trunc(num(inputs.seed, 0)))))
    for (let i = 0; i < steps; i++) {
      await ctx.sleep(30)
      const step = i + 1
      await ctx.progress(step, steps, ctx.previews ? () => latentPreview(l, seed, step / steps) : undefined)
    }
    return { outputs: [{ kind: 'latent', width: l.width, height: l.height, batch: l.batch, seed }] }
  },
  async VAEDecode(inputs, ctx) {
    const latent = inputs.samples
    const l =
      isSimValue(latent) && latent.kind === 'latent' ? latent : { width: 8, height: 8, batch: 1, seed: 0 }
    const frames: Frame[] = []
    for (let b = 0; b < l.batch; b++) frames.push(noiseFrame(l.width * 8, l.height * 8, (l.seed ?? 0) + b))
    ctx.gpu.decode()
    await ctx.sleep(ctx.warm.has('VAEDecode') ? 43 : 188)
    return { outputs: [{ kind: 'image', frames }] }
  },
}

/**
 * A Latent2RGB-style preview of the first latent of the batch: latent-sized, then scaled to fit
 * 512x512 as send_image's ImageOps.contain does (MAX_PREVIEW_RESOLUTION), JPEG at quality 95.
 */
function latentPreview(l: { width: number; height: number }, seed: number, done: number): Buffer {
  const w = Math.max(1, l.width)
  const h = Math.max(1, l.height)
  const s = Math.min(512 / w, 512 / h)
  const W = Math.max(1, Math.round(w * s))
  const H = Math.max(1, Math.round(h * s))
  const rgb = new Uint8Array(W * H * 3)
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const lx = Math.floor((x * w) / W)
      const ly = Math.floor((y * h) / H)
      const n = ((lx * 73856093) ^ (ly * 19349663) ^ seed) >>> 0
      const o = (y * W + x) * 3
      for (let c = 0; c < 3; c++) {
        const noise = (n >>> (c * 8)) & 0xff
        const clean = c === 0 ? (lx * 255) / w : c === 1 ? (ly * 255) / h : 128
        rgb[o + c] = Math.round(noise * (1 - done) + clean * done)
      }
    }
  }
  return encodeJpeg(W, H, rgb, 95)
}

/** Runs one node of class `classType`. `returnTypes` shapes the outputs of classes without a model here. */
export async function runNode(
  classType: string,
  returnTypes: PyValue[],
  inputs: Record<string, unknown>,
  ctx: NodeContext,
): Promise<NodeResult> {
  const impl = IMPLS[classType]
  if (impl) {
    ctx.gpu.beginNode()
    try {
      return await impl(inputs, ctx)
    } finally {
      ctx.gpu.endNode()
      ctx.warm.add(classType)
    }
  }
  await ctx.sleep(5)
  const values = Object.values(inputs)
  const outputs = returnTypes.map((t) => {
    const same = values.find((v) => {
      if (!isSimValue(v)) return false
      return (
        (t === 'IMAGE' && v.kind === 'image') ||
        (t === 'LATENT' && v.kind === 'latent') ||
        (t === 'MODEL' && v.kind === 'model') ||
        (t === 'CLIP' && v.kind === 'clip') ||
        (t === 'VAE' && v.kind === 'vae') ||
        (t === 'CONDITIONING' && v.kind === 'conditioning') ||
        (t === 'MASK' && v.kind === 'mask')
      )
    })
    return same ?? { kind: 'opaque', type: typeof t === 'string' ? t : 'COMBO' }
  })
  return { outputs }
}

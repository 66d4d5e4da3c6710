/**
 * The stand-in's base directory (ComfyUI's `--base-directory`): input/, output/, temp/, models/ and
 * user/, read and written for real. Seeds the files the recording had, and lists model folders the way
 * `folder_paths.get_filename_list` does.
 */
import { mkdir, readdir, rm, stat, writeFile, access } from 'node:fs/promises'
import { join, resolve, extname, sep } from 'node:path'
import { encodePng } from './png.js'
import { encodeSafetensors } from './safetensors.js'

/** Model folder names in ComfyUI 0.8's registration order (what `GET /models` lists). */
export const MODEL_FOLDERS = [
  'checkpoints',
  'configs',
  'loras',
  'vae',
  'text_encoders',
  'diffusion_models',
  'clip_vision',
  'style_models',
  'embeddings',
  'diffusers',
  'vae_approx',
  'controlnet',
  'gligen',
  'upscale_models',
  'latent_upscale_models',
  'custom_nodes',
  'hypernetworks',
  'photomaker',
  'classifiers',
  'model_patches',
  'audio_encoders',
] as const

const PT_EXTENSIONS = new Set(['.ckpt', '.pt', '.pt2', '.bin', '.pth', '.safetensors', '.pkl', '.sft'])
const IMAGE_EXTENSIONS = new Set([
  '.png',
  '.jpg',
  '.jpeg',
  '.webp',
  '.gif',
  '.bmp',
  '.tif',
  '.tiff',
  '.ico',
  '.avif',
])

/** Folder layout and listings of one data directory. */
export interface DataDir {
  readonly base: string
  readonly input: string
  readonly output: string
  readonly temp: string
  readonly models: string
  readonly user: string
  /** Search paths per model folder, in ComfyUI's order. */
  folderPaths(): Record<string, string[]>
  /** Relative file names of a model folder, sorted and de-duplicated; undefined for an unknown folder. */
  listModels(folder: string): Promise<string[] | undefined>
  /** Absolute path of the first search path holding `name`, or undefined. */
  findModel(folder: string, name: string): Promise<string | undefined>
  /** Top-level image files of input/, sorted (LoadImage's list). */
  listInputImages(): Promise<string[]>
  /** The directory for a view/upload `type` (input/output/temp), or undefined. */
  dirByType(type: string): string | undefined
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p)
    return true
  } catch {
    return false
  }
}

async function walk(dir: string, prefix: string, out: string[]): Promise<void> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return
  }
  for (const e of entries) {
    if (e.isDirectory()) {
      if (e.name === '.git') continue
      await walk(join(dir, e.name), prefix + e.name + sep, out)
    } else out.push(prefix + e.name)
  }
}

/** The recorded input image: 256x256 RGB, pixel (x, y) = (x, y, x*y mod 256). */
export function auditInputPng(): Buffer {
  const data = new Uint8Array(256 * 256 * 3)
  for (let y = 0; y < 256; y++) {
    for (let x = 0; x < 256; x++) {
      const o = (y * 256 + x) * 3
      data[o] = x
      data[o + 1] = y
      data[o + 2] = (x * y) % 256
    }
  }
  return encodePng({ width: 256, height: 256, channels: 3, data }, { level: 6 })
}

function examplePng(): Buffer {
  const data = new Uint8Array(64 * 64 * 3)
  for (let y = 0; y < 64; y++) {
    for (let x = 0; x < 64; x++) {
      const o = (y * 64 + x) * 3
      data[o] = x * 4
      data[o + 1] = 128
      data[o + 2] = 255 - y * 4
    }
  }
  return encodePng({ width: 64, height: 64, channels: 3, data }, { level: 6 })
}

function corruptModel(random: () => number): Buffer {
  const b = Buffer.alloc(4096)
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(random() * 256) & 0xff
  // An absurd header length (well above safetensors' 100 MB limit), as random bytes almost always give.
  b[7] = 0x80 | (b[7]! & 0x7f)
  return b
}

/**
 * Creates the folders, wipes temp/ (ComfyUI does at start) and seeds missing files: the recording's
 * input images and small stand-ins for its model files.
 */
export async function createDataDir(baseDir: string, random: () => number): Promise<DataDir> {
  const base = resolve(baseDir)
  const input = join(base, 'input')
  const output = join(base, 'output')
  const temp = join(base, 'temp')
  const models = join(base, 'models')
  const user = join(base, 'user')
  await rm(temp, { recursive: true, force: true })
  for (const d of [input, output, temp, models, user, join(user, 'default')])
    await mkdir(d, { recursive: true })
  for (const f of ['checkpoints', 'loras', 'vae', 'embeddings'])
    await mkdir(join(models, f), { recursive: true })

  const seeds: Array<[string, () => Buffer]> = [
    [join(input, 'audit-input.png'), auditInputPng],
    [join(input, 'example.png'), examplePng],
    [
      join(models, 'checkpoints', 'audit-sd15-random.safetensors'),
      () =>
        encodeSafetensors(
          { 'modelspec.title': 'audit-sd15-random' },
          {
            'model.diffusion_model.input_blocks.0.0.weight': { dtype: 'F16', shape: [8, 4, 3, 3] },
            'cond_stage_model.transformer.text_model.final_layer_norm.weight': { dtype: 'F16', shape: [16] },
            'first_stage_model.decoder.conv_out.weight': { dtype: 'F16', shape: [3, 8, 3, 3] },
          },
        ),
    ],
    [join(models, 'checkpoints', 'corrupt-model.safetensors'), () => corruptModel(random)],
    [
      join(models, 'loras', 'audit-style-lora.safetensors'),
      () =>
        encodeSafetensors(
          { ss_output_name: 'audit-style-lora' },
          {
            'lora_unet_fixture_block.lora_down.weight': { dtype: 'F16', shape: [4, 32] },
            'lora_unet_fixture_block.lora_up.weight': { dtype: 'F16', shape: [32, 4] },
            'lora_unet_fixture_block.alpha': { dtype: 'F32', shape: [] },
          },
        ),
    ],
  ]
  for (const [path, make] of seeds) {
    if (!(await exists(path))) await writeFile(path, make())
  }

  const folderPaths = (): Record<string, string[]> => {
    const m = (n: string): string => join(models, n)
    const out: Record<string, string[]> = {}
    for (const f of MODEL_FOLDERS) out[f] = [m(f)]
    out.checkpoints!.push(join(output, 'checkpoints'))
    out.loras!.push(join(output, 'loras'))
    out.vae!.push(join(output, 'vae'))
    out.text_encoders = [m('text_encoders'), m('clip'), join(output, 'clip')]
    out.diffusion_models = [m('unet'), m('diffusion_models'), join(output, 'diffusion_models')]
    out.controlnet = [m('controlnet'), m('t2i_adapter')]
    out.custom_nodes = [join(base, 'custom_nodes')]
    return out
  }

  const extensionOk = (folder: string, name: string): boolean => {
    if (folder === 'configs') return extname(name) === '.yaml'
    if (folder === 'classifiers') return extname(name) === ''
    if (folder === 'custom_nodes') return true
    return PT_EXTENSIONS.has(extname(name).toLowerCase())
  }

  const listModels = async (folder: string): Promise<string[] | undefined> => {
    const paths = folderPaths()[folder]
    if (!paths) return undefined
    const all = new Set<string>()
    if (folder === 'diffusers') {
      for (const p of paths) {
        const found: string[] = []
        await walk(p, '', found)
        for (const f of found) {
          if (f.endsWith('model_index.json')) all.add(f.slice(0, -'model_index.json'.length - 1))
        }
      }
    } else {
      for (const p of paths) {
        const found: string[] = []
        await walk(p, '', found)
        for (const f of found) if (extensionOk(folder, f)) all.add(f)
      }
    }
    return [...all].sort()
  }

  return {
    base,
    input,
    output,
    temp,
    models,
    user,
    folderPaths,
    listModels,
    async findModel(folder, name) {
      const paths = folderPaths()[folder]
      if (!paths || name.includes('\0')) return undefined
      for (const p of paths) {
        const full = resolve(p, name)
        if (!full.startsWith(p + sep)) continue
        try {
          if ((await stat(full)).isFile()) return full
        } catch {
          // next search path
        }
      }
      return undefined
    },
    async listInputImages() {
      let entries
      try {
        entries = await readdir(input, { withFileTypes: true })
      } catch {
        return []
      }
      return entries
        .filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()))
        .map((e) => e.name)
        .sort()
    },
    dirByType(type) {
      if (type === 'input') return input
      if (type === 'output') return output
      if (type === 'temp') return temp
      return undefined
    },
  }
}

/**
 * The node catalogue: ComfyUI 0.8's `/object_info` as recorded, with file-backed COMBO lists
 * (checkpoints, LoRAs, input images) replaced by what the data directory holds now.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import type { DataDir } from './data-dir.js'
import { parsePyJson, isPyObject, clonePy } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'

/** Where the recorded ComfyUI 0.8.0 fixtures live (shipped with the package). */
export const FIXTURE_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'fixtures',
  'comfyui-0.8.0',
)

type FileSource = 'checkpoints' | 'loras' | 'vae' | 'input-images'

interface FileCombo {
  readonly classType: string
  readonly category: 'required' | 'optional'
  readonly input: string
  readonly source: FileSource
  readonly v3: boolean
}

let recorded: PyObject | undefined
let fileCombos: FileCombo[] = []

// The lists the recording server had; a COMBO equal to one of them is a folder listing.
const RECORDED_LISTS: Record<FileSource, string> = {
  checkpoints: JSON.stringify(['audit-sd15-random.safetensors', 'corrupt-model.safetensors']),
  loras: JSON.stringify(['audit-style-lora.safetensors']),
  // VAELoader: the vae folder, the TAESD pairs found in vae_approx (none here), then pixel_space.
  vae: JSON.stringify(['pixel_space']),
  'input-images': JSON.stringify(['audit-input.png', 'example.png']),
}

function load(): PyObject {
  if (recorded) return recorded
  const parsed = parsePyJson(readFileSync(join(FIXTURE_DIR, 'object_info.json'), 'utf8'))
  if (!parsed.ok || !isPyObject(parsed.value))
    throw new Error(`object_info.json in ${FIXTURE_DIR} is not a JSON object`)
  recorded = parsed.value
  const combos: FileCombo[] = []
  for (const [classType, def] of Object.entries(recorded)) {
    if (!isPyObject(def) || !isPyObject(def.input)) continue
    for (const category of ['required', 'optional'] as const) {
      const group = def.input[category]
      if (!isPyObject(group)) continue
      for (const [input, spec] of Object.entries(group)) {
        if (!Array.isArray(spec)) continue
        let list: PyValue | undefined
        let v3 = false
        if (Array.isArray(spec[0])) list = spec[0]
        else if (spec[0] === 'COMBO' && isPyObject(spec[1])) {
          list = spec[1].options
          v3 = true
        }
        if (!Array.isArray(list)) continue
        const key = JSON.stringify(list)
        for (const source of Object.keys(RECORDED_LISTS) as FileSource[]) {
          if (RECORDED_LISTS[source] === key) combos.push({ classType, category, input, source, v3 })
        }
      }
    }
  }
  fileCombos = combos
  return recorded
}

/** The live catalogue of one data directory. */
export interface Catalogue {
  /** Every node definition with current file lists (what `GET /object_info` returns). */
  objectInfo(): Promise<PyObject>
  /** One node definition (current file lists) or undefined. */
  node(classType: string): Promise<PyObject | undefined>
  /** Whether a class exists (cheap; no folder scan). */
  has(classType: string): boolean
  /** `OUTPUT_NODE` of a class. */
  isOutput(classType: string): boolean
  /** `RETURN_TYPES` of a class. */
  returnTypes(classType: string): PyValue[]
}

export function createCatalogue(dir: DataDir): Catalogue {
  const base = load()
  const lists = async (): Promise<Record<FileSource, string[]>> => ({
    checkpoints: (await dir.listModels('checkpoints')) ?? [],
    loras: (await dir.listModels('loras')) ?? [],
    vae: [...((await dir.listModels('vae')) ?? []), 'pixel_space'],
    'input-images': await dir.listInputImages(),
  })
  const patch = (classType: string, def: PyObject, l: Record<FileSource, string[]>): PyObject => {
    const combos = fileCombos.filter((c) => c.classType === classType)
    if (combos.length === 0) return def
    const copy = clonePy(def)
    for (const c of combos) {
      const spec = ((copy.input as PyObject)[c.category] as PyObject)[c.input] as PyValue[]
      if (c.v3) (spec[1] as PyObject).options = [...l[c.source]]
      else spec[0] = [...l[c.source]]
    }
    return copy
  }
  return {
    async objectInfo() {
      const l = await lists()
      const out: PyObject = {}
      for (const [k, def] of Object.entries(base)) out[k] = isPyObject(def) ? patch(k, def, l) : def
      return out
    },
    async node(classType) {
      if (!Object.hasOwn(base, classType)) return undefined
      const def = base[classType]
      return isPyObject(def) ? patch(classType, def, await lists()) : undefined
    },
    has: (classType) => Object.hasOwn(base, classType),
    isOutput: (classType) => {
      const def = base[classType]
      return isPyObject(def) && def.output_node === true
    },
    returnTypes: (classType) => {
      const def = base[classType]
      return isPyObject(def) && Array.isArray(def.output) ? def.output : []
    },
  }
}

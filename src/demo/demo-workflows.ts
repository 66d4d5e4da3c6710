/**
 * The demo's studio: who works there and the workflows they run, as the API prompts ComfyUI's front end
 * would send (graph plus the UI workflow in `extra_data.extra_pnginfo.workflow`, whose `id` analysis groups by).
 */
import type { JsonObject } from '../audit/types.js'

/** A person of the demo studio. */
interface DemoPerson {
  readonly name: string
  readonly role: 'admin' | 'auditor' | 'artist'
  /** Relative share of the prompts this person submits (0: submits none). */
  readonly weight: number
}

export const DEMO_PEOPLE: readonly DemoPerson[] = [
  { name: 'mei', role: 'admin', weight: 1 },
  { name: 'alice', role: 'artist', weight: 5 },
  { name: 'bob', role: 'artist', weight: 2 },
  { name: 'chen', role: 'artist', weight: 2 },
  { name: 'quinn', role: 'auditor', weight: 0 },
]

/** The LoRA file whose "update" breaks the portrait workflow: its header is not valid JSON. */
export const BROKEN_LORA = 'portrait-style-v2.safetensors'
const GOOD_LORA = 'audit-style-lora.safetensors'
const CHECKPOINT = 'audit-sd15-random.safetensors'

/** A safetensors file whose 16-byte header is not JSON, as a truncated download leaves it. */
export function brokenSafetensors(): Buffer {
  const header = Buffer.from('{"__metadata__":', 'utf8')
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(header.length))
  return Buffer.concat([length, header])
}

export interface SamplerSettings {
  readonly seed: number
  readonly steps: number
  readonly cfg: number
  readonly sampler: string
  readonly scheduler: string
  readonly width: number
  readonly height: number
  readonly batch: number
}

function uiWorkflow(id: string, revision: number, graph: JsonObject): JsonObject {
  // The UI graph as the front end saves it, reduced to what the audit trail reads: an id, a revision and the
  // nodes with their types (the positions are the front end's business).
  const nodes = Object.entries(graph).map(([nodeId, node], i) => ({
    id: Number(nodeId),
    type: (node as { class_type: string }).class_type,
    pos: [40 + 280 * i, 120],
    size: [240, 120],
  }))
  return { id, revision, last_node_id: nodes.length, last_link_id: 0, nodes, links: [], version: 0.4 }
}

function sd15Graph(
  s: SamplerSettings,
  text: string,
  prefix: string,
  lora: string,
  strength: number,
): JsonObject {
  const clip = ['2', 1]
  const model = ['2', 0]
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: CHECKPOINT } },
    '2': {
      class_type: 'LoraLoader',
      inputs: {
        model: ['1', 0],
        clip: ['1', 1],
        lora_name: lora,
        strength_model: strength,
        strength_clip: 0.6,
      },
    },
    '3': { class_type: 'CLIPTextEncode', inputs: { text, clip } },
    '4': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry, low quality, watermark', clip } },
    '5': {
      class_type: 'EmptyLatentImage',
      inputs: { width: s.width, height: s.height, batch_size: s.batch },
    },
    '6': {
      class_type: 'KSampler',
      inputs: {
        model,
        positive: ['3', 0],
        negative: ['4', 0],
        latent_image: ['5', 0],
        seed: s.seed,
        steps: s.steps,
        cfg: s.cfg,
        sampler_name: s.sampler,
        scheduler: s.scheduler,
        denoise: 1.0,
      },
    },
    '7': { class_type: 'VAEDecode', inputs: { samples: ['6', 0], vae: ['1', 2] } },
    '8': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: prefix } },
  }
}

const SCENES = [
  'a lighthouse at dusk, oil painting',
  'a rainy neon street in Shanghai at night, cinematic',
  'portrait of a knight in silver armour, studio light',
  'a bowl of ramen, food photography',
  'misty mountains above a tea plantation, ink wash',
  'a red fox in the snow, wildlife photography',
]

/** One prompt of the demo: the body to POST and what the demo expects of it. */
export interface DemoPrompt {
  readonly workflow: string
  readonly body: JsonObject
}

/**
 * `txt2img`: the everyday SD1.5 workflow with the studio's house-style LoRA (the same model and LoRA as the
 * portrait workflow, so ComfyUI keeps the patched model loaded between the two).
 */
export function txt2img(s: SamplerSettings, scene: number, person: string): DemoPrompt {
  const graph = sd15Graph(s, SCENES[scene % SCENES.length]!, `${person}/txt2img`, GOOD_LORA, 0.7)
  return {
    workflow: 'wf-txt2img',
    body: { prompt: graph, extra_data: { extra_pnginfo: { workflow: uiWorkflow('wf-txt2img', 3, graph) } } },
  }
}

/**
 * `portrait`: SD1.5 with a style LoRA. Version 2 switches to the updated LoRA file, which is broken, so every
 * run of it fails; version 3 goes back to the old LoRA at a lower strength.
 */
export function portrait(s: SamplerSettings, version: 1 | 2 | 3, person: string): DemoPrompt {
  const lora = version === 2 ? BROKEN_LORA : GOOD_LORA
  const graph = sd15Graph(
    s,
    'portrait of a young woman in a hanfu, soft window light',
    `${person}/portrait`,
    lora,
    version === 3 ? 0.6 : 0.8,
  )
  return {
    workflow: 'wf-portrait',
    body: {
      prompt: graph,
      extra_data: { extra_pnginfo: { workflow: uiWorkflow('wf-portrait', version, graph) } },
    },
  }
}

/** `upscale`: the compositing team's quick post-process of a delivered image (no model). */
export function upscale(blur: number, person: string): DemoPrompt {
  const graph: JsonObject = {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': {
      class_type: 'ImageScaleBy',
      inputs: { image: ['1', 0], upscale_method: 'bilinear', scale_by: 1.5 },
    },
    '3': { class_type: 'ImageBlur', inputs: { image: ['2', 0], blur_radius: blur, sigma: 1.0 } },
    '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: `${person}/upscale` } },
  }
  return {
    workflow: 'wf-upscale',
    body: { prompt: graph, extra_data: { extra_pnginfo: { workflow: uiWorkflow('wf-upscale', 1, graph) } } },
  }
}

/** A prompt ComfyUI refuses at validation: the checkpoint name has a typo. */
export function typo(s: SamplerSettings, person: string): DemoPrompt {
  const p = txt2img(s, 0, person)
  const prompt = p.body.prompt as Record<string, { inputs: Record<string, unknown> }>
  prompt['1']!.inputs.ckpt_name = 'audit-sd15-randon.safetensors'
  return p
}

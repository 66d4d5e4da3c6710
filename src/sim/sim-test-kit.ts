/**
 * Helpers for tests that drive the stand-in: a recording WebSocket client that can wait for a frame,
 * JSON requests, and the recorder's prompts (shared/tools/comfyui-device/record.py).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { createSimServer } from './index.js'
import type { SimOptions, SimServer } from './index.js'
import { isPyObject, parsePyJson } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'

/** A server on port 0 in a fresh temp data dir; `dispose()` closes it and removes the dir. */
export async function startSim(
  options: Partial<SimOptions> = {},
): Promise<SimServer & { dispose(): Promise<void> }> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'comfy-sim-')))
  const sim = await createSimServer({ speed: 50, ...options, dataDir })
  return Object.assign(sim, {
    async dispose() {
      await sim.close()
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true })
    },
  })
}

interface Frame {
  readonly type: string
  readonly data: PyObject
}

/** A WebSocket client that records every JSON frame. */
export class RecordingClient {
  readonly frames: Frame[] = []
  readonly #ws: WebSocket
  readonly #waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void }> = []
  readonly opened: Promise<void>
  readonly closed: Promise<void>

  constructor(url: string, clientId?: string, featureFlags = true) {
    const q = clientId === undefined ? '' : `?clientId=${encodeURIComponent(clientId)}`
    this.#ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws' + q)
    this.opened = new Promise((resolve, reject) => {
      this.#ws.once('open', () => {
        if (featureFlags)
          this.#ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }))
        resolve()
      })
      this.#ws.once('error', reject)
    })
    this.closed = new Promise((resolve) => this.#ws.once('close', () => resolve()))
    this.#ws.on('message', (raw, isBinary) => {
      if (isBinary) return
      const p = parsePyJson(raw.toString())
      if (!p.ok || !isPyObject(p.value)) return
      const f: Frame = { type: String(p.value.type), data: isPyObject(p.value.data) ? p.value.data : {} }
      this.frames.push(f)
      for (const w of [...this.#waiters]) {
        if (w.pred(f)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(f)
        }
      }
    })
  }

  /** Resolves with the first frame (already received or future) matching `pred`. */
  waitFor(pred: (f: Frame) => boolean, timeoutMs = 20_000): Promise<Frame> {
    const seen = this.frames.find(pred)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (f: Frame) => {
          clearTimeout(t)
          resolve(f)
        },
      }
      const t = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1)
        reject(new Error(`timed out waiting for a frame; got ${this.frames.map((x) => x.type).join(',')}`))
      }, timeoutMs)
      this.#waiters.push(w)
    })
  }

  /** Waits for the end of a prompt (success, error or interrupt). */
  ended(promptId: string): Promise<Frame> {
    return this.waitFor(
      (f) =>
        ['execution_success', 'execution_error', 'execution_interrupted'].includes(f.type) &&
        f.data.prompt_id === promptId,
    )
  }

  /** Frames of one prompt (except `status`), as `type` or `type:node`. */
  trail(promptId: string): string[] {
    return this.frames
      .filter((f) => f.data.prompt_id === promptId && f.type !== 'progress_state')
      .map((f) =>
        f.type === 'executing' || f.type === 'executed' || f.type === 'progress'
          ? `${f.type}:${String(f.data.node)}`
          : f.type,
      )
  }

  close(): Promise<void> {
    this.#ws.close()
    return this.closed
  }
}

interface JsonReply {
  readonly status: number
  readonly contentType: string
  readonly text: string
  readonly body: PyValue | undefined
}

/** A request with a JSON (or raw string) body, parsed with Python's rules. */
export async function request(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<JsonReply> {
  const res = await fetch(base + path, {
    method,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  const parsed = parsePyJson(text)
  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    text,
    body: parsed.ok ? parsed.value : undefined,
  }
}

/** record.py's image pipeline. */
export function imagePipeline(blur = 3, prefix = 'audit/pipeline'): PyObject {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': {
      class_type: 'ImageScaleBy',
      inputs: { image: ['1', 0], upscale_method: 'bilinear', scale_by: 1.5 },
    },
    '3': { class_type: 'ImageBlur', inputs: { image: ['2', 0], blur_radius: blur, sigma: 1.0 } },
    '4': { class_type: 'ImageInvert', inputs: { image: ['3', 0] } },
    '5': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: prefix } },
    '6': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
  }
}

/** record.py's SD1.5 graph (with the LoRA). */
export function sd15(seed = 42, steps = 6): PyObject {
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'audit-sd15-random.safetensors' } },
    '2': {
      class_type: 'LoraLoader',
      inputs: {
        model: ['1', 0],
        clip: ['1', 1],
        lora_name: 'audit-style-lora.safetensors',
        strength_model: 0.8,
        strength_clip: 0.6,
      },
    },
    '3': {
      class_type: 'CLIPTextEncode',
      inputs: { text: 'a lighthouse at dusk, oil painting', clip: ['2', 1] },
    },
    '4': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry, low quality', clip: ['2', 1] } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 256, height: 256, batch_size: 1 } },
    '6': {
      class_type: 'KSampler',
      inputs: {
        model: ['2', 0],
        positive: ['3', 0],
        negative: ['4', 0],
        latent_image: ['5', 0],
        seed,
        steps,
        cfg: 7.0,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1.0,
      },
    },
    '7': { class_type: 'VAEDecode', inputs: { samples: ['6', 0], vae: ['1', 2] } },
    '8': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: 'audit/sd15' } },
  }
}

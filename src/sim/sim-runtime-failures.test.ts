/**
 * Issue 15 item 6: a model file that is present but corrupt passes validation (its name is in the
 * loader's list), starts execution and fails in its loader with the exception type and traceback
 * ComfyUI 0.8.0 gives there (nodes.py / comfy/utils.py line numbers of that release).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { PyObject, PyValue } from './py-json.js'
import { RecordingClient, request, startSim } from './sim-test-kit.js'

type Sim = Awaited<ReturnType<typeof startSim>>

// A header length of 2^63: "header too large", as random bytes almost always give.
const corruptBytes = (): Buffer => {
  const b = Buffer.alloc(256, 0x5a)
  b.writeBigUInt64LE(1n << 63n, 0)
  return b
}

const HOME = '/home/artist/ComfyUI'
const EXEC_TAIL = `  File "${HOME}/execution.py", line 291, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n`
const UTILS = [
  `  File "${HOME}/comfy/utils.py", line 80, in load_torch_file\n    raise e\n`,
  `  File "${HOME}/comfy/utils.py", line 64, in load_torch_file\n    with safetensors.safe_open(ckpt, framework="pt", device=device.type) as f:\n         ${'^'.repeat(63)}\n`,
]

function decode(vae: PyValue, samples: PyValue = ['5', 0]): PyObject {
  return {
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '7': { class_type: 'VAEDecode', inputs: { samples, vae } },
    '8': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: 'audit/corrupt' } },
  }
}

describe('corrupt model files (issue 15 item 6)', () => {
  let sim: Sim
  let a: RecordingClient
  beforeEach(async () => {
    sim = await startSim({ speed: 200 })
    await writeFile(join(sim.dir.base, 'models', 'loras', 'corrupt-lora.safetensors'), corruptBytes())
    await writeFile(join(sim.dir.base, 'models', 'vae', 'corrupt-vae.safetensors'), corruptBytes())
    a = new RecordingClient(sim.url, 'client-a')
    await a.opened
  })
  afterEach(async () => {
    await a.close()
    await sim.dispose()
  })

  async function failAt(prompt: PyObject, node: string): Promise<PyObject> {
    const reply = await request(sim.url, 'POST', '/prompt', { prompt, client_id: 'client-a' })
    expect(reply.status).toBe(200)
    const body = reply.body as PyObject
    expect(body.node_errors).toEqual({})
    const id = String(body.prompt_id)
    const end = await a.ended(id)
    expect(end.type).toBe('execution_error')
    expect(a.trail(id)).toContain(`executing:${node}`)
    expect(end.data).toMatchObject({
      node_id: node,
      exception_type: 'safetensors._safetensors_rust.SafetensorError',
      exception_message: 'Error while deserializing header: header too large\n',
    })
    await sim.idle()
    const status = sim.history().get(id)?.status as PyObject
    expect(status.status_str).toBe('error')
    return end.data
  }

  it('a corrupt VAE is listed by VAELoader and fails in load_vae', async () => {
    const info = (await request(sim.url, 'GET', '/object_info/VAELoader')).body as PyObject
    const spec = (((info.VAELoader as PyObject).input as PyObject).required as PyObject).vae_name
    expect((spec as PyValue[])[0]).toEqual(['corrupt-vae.safetensors', 'pixel_space'])
    const p = decode(['4', 0])
    p['4'] = { class_type: 'VAELoader', inputs: { vae_name: 'corrupt-vae.safetensors' } }
    const err = await failAt(p, '4')
    expect(err.node_type).toBe('VAELoader')
    const tb = err.traceback as string[]
    expect(tb.slice(3)).toEqual([
      EXEC_TAIL,
      `  File "${HOME}/nodes.py", line 800, in load_vae\n    sd = comfy.utils.load_torch_file(vae_path)\n         ${'^'.repeat(37)}\n`,
      ...UTILS,
    ])
  })

  it('a corrupt LoRA fails in load_lora (nodes.py line 682)', async () => {
    const p = decode(['1', 2])
    p['1'] = { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'audit-sd15-random.safetensors' } }
    p['2'] = {
      class_type: 'LoraLoader',
      inputs: {
        model: ['1', 0],
        clip: ['1', 1],
        lora_name: 'corrupt-lora.safetensors',
        strength_model: 1.0,
        strength_clip: 1.0,
      },
    }
    p['3'] = { class_type: 'CLIPTextEncode', inputs: { text: 'x', clip: ['2', 1] } }
    p['6'] = {
      class_type: 'KSampler',
      inputs: {
        model: ['2', 0],
        positive: ['3', 0],
        negative: ['3', 0],
        latent_image: ['5', 0],
        seed: 1,
        steps: 2,
        cfg: 7.0,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1.0,
      },
    }
    p['7'] = { class_type: 'VAEDecode', inputs: { samples: ['6', 0], vae: ['1', 2] } }
    const err = await failAt(p, '2')
    expect(err.node_type).toBe('LoraLoader')
    expect((err.traceback as string[]).slice(3)).toEqual([
      EXEC_TAIL,
      `  File "${HOME}/nodes.py", line 682, in load_lora\n    lora = comfy.utils.load_torch_file(lora_path, safe_load=True)\n           ${'^'.repeat(52)}\n`,
      ...UTILS,
    ])
  })

  it('a corrupt checkpoint fails in load_checkpoint_guess_config (the recorded traceback)', async () => {
    const p = decode(['1', 2])
    p['1'] = { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'corrupt-model.safetensors' } }
    const err = await failAt(p, '1')
    const tb = err.traceback as string[]
    expect(tb.slice(3, 5)).toEqual([
      EXEC_TAIL,
      expect.stringMatching(/^ {2}File ".*\/nodes\.py", line 585, in load_checkpoint\n/),
    ])
    expect(tb[5]).toMatch(/comfy\/sd\.py", line 1348, in load_checkpoint_guess_config/)
    expect(tb.slice(6)).toEqual(UTILS)
  })
})

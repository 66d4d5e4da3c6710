import { describe, expect, it } from 'vitest'
import { canonicalJson, sha256Hex } from '../audit/json.js'
import { customNodePacks, environmentFromSystemStats, gpuName, systemStatsIdentity } from './environment.js'
import { createGpuSampler } from './gpu-sampler.js'
import { parseMultipart } from '../comfyui/multipart.js'
import {
  REDACTED,
  analyzePromptBody,
  findModels,
  stripSensitive,
  stripSensitiveText,
} from './prompt-analysis.js'
import { checkWith, zPromptGraph, zSystemStats } from '../comfyui/schemas.js'

describe('prompt analysis', () => {
  it('redacts the comfy.org secrets at any depth before hashing', () => {
    const body = Buffer.from(
      '{"prompt":{"1":{"class_type":"X","inputs":{"api_key_comfy_org":"k1"}}},' +
        '"extra_data":{"api_key_comfy_org":"k2","nested":{"auth_token_comfy_org":"k3"},"extra_pnginfo":{"workflow":{"id":"w"}}}}',
    )
    const result = analyzePromptBody(body)
    expect(result.ok).toBe(true)
    if (!result.ok) return
    expect(result.extra_data).toEqual({
      api_key_comfy_org: REDACTED,
      nested: { auth_token_comfy_org: REDACTED },
      extra_pnginfo: { workflow: { id: 'w' } },
    })
    expect(result.prompt).toEqual({ 1: { class_type: 'X', inputs: { api_key_comfy_org: REDACTED } } })
    expect(result.prompt_sha256).toBe(sha256Hex(canonicalJson(result.prompt ?? null)))
    expect(result.workflow).toEqual({ id: 'w' })
  })

  it('applies the redaction hook with the path of the value', () => {
    const seen: string[][] = []
    const result = analyzePromptBody(Buffer.from('{"prompt":{},"extra_data":{"user_email":"a@b"}}'), {
      redact: (value, path) => {
        seen.push(path)
        return path[0] === 'extra_data' ? { user_email: REDACTED } : value
      },
    })
    expect(seen).toEqual([['prompt'], ['extra_data']])
    expect(result.ok && result.extra_data).toEqual({ user_email: REDACTED })
  })

  it('redacts secrets in text that is not JSON, even cut off mid-value', () => {
    expect(stripSensitiveText('{"api_key_comfy_org" : "abc\\"def", "x": 1')).toBe(
      `{"api_key_comfy_org" : "${REDACTED}", "x": 1`,
    )
    expect(stripSensitiveText('{"auth_token_comfy_org": "half')).toBe(
      `{"auth_token_comfy_org": "${REDACTED}"`,
    )
    expect(stripSensitive(['a', { api_key_comfy_org: 1 }])).toEqual(['a', { api_key_comfy_org: REDACTED }])
  })

  it('maps loader inputs to model folders', () => {
    const graph = checkWith(zPromptGraph, {
      1: {
        class_type: 'DualCLIPLoader',
        inputs: { clip_name1: 'a.safetensors', clip_name2: 'b.safetensors', type: 'flux' },
      },
      2: { class_type: 'CLIPVisionLoader', inputs: { clip_name: 'v.safetensors' } },
      3: { class_type: 'UpscaleModelLoader', inputs: { model_name: '4x.pth' } },
      4: { class_type: 'UNETLoader', inputs: { unet_name: 'u.safetensors', weight_dtype: 'default' } },
      5: { class_type: 'VAELoader', inputs: { vae_name: 'v.pt' } },
      6: { class_type: 'ControlNetLoader', inputs: { control_net_name: 'c.pth' } },
      7: { class_type: 'SomethingElse', inputs: { model_name: 'not-a-file', lora_name: ['1', 0] } },
    })
    if (!graph.ok) throw new Error(graph.reason)
    expect(findModels(graph.value).map((m) => `${m.node_id}:${m.folder}/${m.name}`)).toEqual([
      '1:text_encoders/a.safetensors',
      '1:text_encoders/b.safetensors',
      '2:clip_vision/v.safetensors',
      '3:upscale_models/4x.pth',
      '4:diffusion_models/u.safetensors',
      '5:vae/v.pt',
      '6:controlnet/c.pth',
    ])
  })
})

describe('environment', () => {
  it('derives custom node packs from python_module and the GPU name from the device name', () => {
    expect(
      customNodePacks({
        A: { python_module: 'custom_nodes.pack_a' },
        B: { python_module: 'custom_nodes.pack_b.nodes' },
        C: { python_module: 'comfy_extras.nodes_mask' },
        D: { python_module: 'custom_nodes.pack_a' },
        E: { python_module: null },
      }),
    ).toEqual(['pack_a', 'pack_b'])
    expect(gpuName('cuda:0 NVIDIA H200 : cudaMallocAsync')).toBe('NVIDIA H200')
    const stats = checkWith(zSystemStats, {
      system: { os: 'linux', comfyui_version: '0.8.0', python_version: '3.12', pytorch_version: '2.11' },
      devices: [
        {
          name: 'cuda:0 NVIDIA H200 : cudaMallocAsync',
          vram_total: 150109880320,
          vram_free: 1,
          torch_vram_total: 0,
          torch_vram_free: 0,
        },
      ],
    })
    if (!stats.ok) throw new Error(stats.reason)
    expect(environmentFromSystemStats(stats.value, null)).toEqual({
      comfyui_version: '0.8.0',
      python_version: '3.12',
      pytorch_version: '2.11',
      os: 'linux',
      gpu_name: 'NVIDIA H200',
      vram_total_mib: 143156,
      custom_node_packs: [],
      devices: [
        { name: 'cuda:0 NVIDIA H200 : cudaMallocAsync', type: null, index: null, vram_total_mib: 143156 },
      ],
      ram_total_mib: null,
      embedded_python: null,
      frontend_version: null,
    })
  })

  it('sees a restart in /system_stats (other versions, argv or totals), not free memory moving', () => {
    const reading = (freeBytes: number, version = '0.8.0') => {
      const parsed = checkWith(zSystemStats, {
        system: {
          os: 'linux',
          ram_total: 8,
          ram_free: freeBytes,
          comfyui_version: version,
          argv: ['main.py'],
        },
        devices: [
          {
            name: 'cuda:0 X',
            vram_total: 100,
            vram_free: freeBytes,
            torch_vram_total: freeBytes,
            torch_vram_free: 1,
          },
        ],
      })
      if (!parsed.ok) throw new Error(parsed.reason)
      return systemStatsIdentity(parsed.value)
    }
    expect(reading(5)).toBe(reading(7))
    expect(reading(5)).not.toBe(reading(5, '0.8.1'))
  })
})

describe('multipart', () => {
  it('reads fields and files and refuses a truncated body', () => {
    const body = Buffer.from(
      '--b\r\nContent-Disposition: form-data; name="image"; filename="a \\"q\\".png"\r\n\r\nDATA\r\n--b\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--b--\r\n',
    )
    const parsed = parseMultipart(body)
    expect(parsed.ok && parsed.parts.map((p) => [p.name, p.filename, p.data.toString()])).toEqual([
      ['image', 'a "q".png', 'DATA'],
      ['overwrite', null, 'true'],
    ])
    expect(parseMultipart(body.subarray(0, 60)).ok).toBe(false)
    expect(parseMultipart(Buffer.from('{"json":1}')).ok).toBe(false)
  })
})

describe('gpu sampler', () => {
  it('joins a sample in flight and reuses the last one within the interval', async () => {
    let clock = 0
    let calls = 0
    const errors: unknown[] = []
    const sampler = createGpuSampler({
      now: () => clock,
      onError: (e) => errors.push(e),
      sample: async () => {
        calls++
        if (calls === 3) throw new Error('stats down')
        return { vram_total: 100, vram_free: 100 - calls, torch_vram_total: 0 }
      },
    })
    const [a, b] = await Promise.all([sampler.sample(), sampler.sample()])
    expect(a).toBe(b)
    expect(calls).toBe(1)
    clock = 50
    expect(await sampler.sample()).toBe(a)
    clock = 150
    expect((await sampler.sample())?.vram_free).toBe(98)
    clock = 300
    expect(await sampler.sample()).toBeNull()
    expect(errors).toHaveLength(1)
  })
})

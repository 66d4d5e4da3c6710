/**
 * The environment snapshot a session records at its start, built from ComfyUI's own answers:
 * `GET /system_stats` (versions, OS, the one torch device) and `GET /object_info` (custom node packs).
 */
import type { EnvironmentSnapshot } from '../audit/types.js'
import type { GpuSample } from './gpu-sampler.js'
import type { ObjectInfo, SystemStats } from '../comfyui/schemas.js'

/**
 * Custom node packs seen in `/object_info`: the `X` of every `python_module` of the form `custom_nodes.X`
 * (or `custom_nodes.X.sub`), sorted and de-duplicated. Core nodes (`nodes`, `comfy_extras.*`, `comfy_api_nodes.*`)
 * are not packs.
 */
export function customNodePacks(objectInfo: ObjectInfo): string[] {
  const packs = new Set<string>()
  for (const node of Object.values(objectInfo)) {
    const module = node.python_module
    if (typeof module !== 'string' || !module.startsWith('custom_nodes.')) continue
    const pack = module.slice('custom_nodes.'.length).split('.')[0]
    if (pack) packs.add(pack)
  }
  return [...packs].sort()
}

/** `"cuda:0 NVIDIA H200 : cudaMallocAsync"` → `"NVIDIA H200"`. */
export function gpuName(deviceName: string): string {
  return deviceName
    .replace(/^\s*[a-z]+:\d+\s+/i, '')
    .replace(/\s+:\s+\S+\s*$/, '')
    .trim()
}

/**
 * An {@link EnvironmentSnapshot} from `/system_stats` and (optionally) `/object_info`. Free memory is left out:
 * it changes from one reading to the next, the snapshot only when ComfyUI restarts.
 */
export function environmentFromSystemStats(
  stats: SystemStats,
  objectInfo: ObjectInfo | null,
): EnvironmentSnapshot {
  const device = stats.devices[0]
  const mib = (bytes: number): number => Math.round(bytes / (1024 * 1024))
  return {
    comfyui_version: stats.system.comfyui_version ?? null,
    python_version: stats.system.python_version ?? null,
    pytorch_version: stats.system.pytorch_version ?? null,
    os: stats.system.os ?? null,
    gpu_name: device ? gpuName(device.name) : null,
    vram_total_mib: device ? mib(device.vram_total) : null,
    custom_node_packs: objectInfo ? customNodePacks(objectInfo) : [],
    devices: stats.devices.map((d) => ({
      name: d.name,
      type: d.type ?? null,
      index: d.index ?? null,
      vram_total_mib: mib(d.vram_total),
    })),
    ram_total_mib: stats.system.ram_total === undefined ? null : mib(stats.system.ram_total),
    embedded_python: stats.system.embedded_python ?? null,
    frontend_version: stats.system.required_frontend_version ?? null,
  }
}

/**
 * The parts of a `/system_stats` answer that stay put while one ComfyUI process lives (versions, argv, devices
 * and their totals): when this changes between two readings, ComfyUI restarted in between.
 */
export function systemStatsIdentity(stats: SystemStats): string {
  const { ram_free: _ramFree, ...system } = stats.system
  const devices = stats.devices.map(
    ({ vram_free: _f, torch_vram_free: _tf, torch_vram_total: _tt, ...rest }) => rest,
  )
  return JSON.stringify({ system, devices })
}

/** The GPU reading of a `/system_stats` answer (its first, and in 0.8 only, device). */
export function gpuSampleFromSystemStats(stats: SystemStats): GpuSample | null {
  const device = stats.devices[0]
  if (!device) return null
  return {
    vram_total: device.vram_total,
    vram_free: device.vram_free,
    torch_vram_total: device.torch_vram_total,
    torch_vram_free: device.torch_vram_free,
  }
}

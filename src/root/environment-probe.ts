/**
 * What capture asks of ComfyUI about the machine: GPU memory samples and the environment snapshot, with the
 * custom node packs of `/object_info` cached for as long as one ComfyUI process lives.
 */
import type { Capture, CaptureOptions } from '../capture/capture.js'
import {
  environmentFromSystemStats,
  gpuSampleFromSystemStats,
  systemStatsIdentity,
} from '../capture/environment.js'
import { zObjectInfo, zSystemStats, type SystemStats } from '../comfyui/schemas.js'
import type { ComfyReader } from './comfy-reader.js'

/** The probe capture samples through. */
interface EnvironmentProbe {
  readonly sampleGpu: NonNullable<CaptureOptions['sampleGpu']>
  readonly environment: NonNullable<CaptureOptions['environment']>
  /**
   * Forgets the snapshot and the node packs (ComfyUI went away, or came back as maybe another process), and
   * has capture take a new snapshot for the next session.
   */
  forget(): void
}

/**
 * Creates the probe. `capture` is asked for lazily: capture is built with the probe's functions, so it does
 * not exist yet when the probe does.
 */
export function createEnvironmentProbe(
  comfy: ComfyReader,
  capture: () => Pick<Capture, 'refreshEnvironment'>,
): EnvironmentProbe {
  let objectInfo: ReturnType<typeof zObjectInfo.safeParse> | null = null
  // What of /system_stats lasts as long as one ComfyUI process: a reading that differs means it restarted, so
  // the environment (and the custom node packs of /object_info) must be taken again.
  let systemIdentity: string | null = null
  const forget = (): void => {
    objectInfo = null
    capture().refreshEnvironment()
  }
  const noteSystemStats = (stats: SystemStats): void => {
    const identity = systemStatsIdentity(stats)
    if (systemIdentity !== null && identity !== systemIdentity) forget()
    systemIdentity = identity
  }
  return {
    forget,
    sampleGpu: async () => {
      const stats = zSystemStats.safeParse(await comfy.getJson('/system_stats', 2000))
      if (!stats.success) return null
      noteSystemStats(stats.data)
      return gpuSampleFromSystemStats(stats.data)
    },
    environment: async () => {
      const stats = zSystemStats.safeParse(await comfy.getJson('/system_stats', 5000))
      if (!stats.success) return null
      noteSystemStats(stats.data)
      if (!objectInfo?.success)
        objectInfo = zObjectInfo.safeParse(await comfy.getJson('/object_info', 30_000))
      return environmentFromSystemStats(stats.data, objectInfo.success ? objectInfo.data : null)
    },
  }
}

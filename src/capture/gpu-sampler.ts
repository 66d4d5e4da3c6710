/**
 * Rate-limited, non-overlapping GPU memory sampling. ComfyUI's only memory figure is `/system_stats`, a
 * point-in-time poll (comfyui-protocol.md §2.5, §7.8), so capture polls it at node transitions and on a
 * timer while nodes run; this wrapper keeps those polls to at most one in flight and one start per
 * `minIntervalMillis`, handing callers within that window the latest result instead.
 */

/** One reading of the device ComfyUI uses (bytes, as `/system_stats` gives them). */
export interface GpuSample {
  readonly vram_total: number
  readonly vram_free: number
  /** PyTorch-reserved bytes. */
  readonly torch_vram_total: number
  readonly torch_vram_free?: number
}

/** Options of {@link createGpuSampler}. */
interface GpuSamplerOptions {
  readonly sample: () => Promise<GpuSample | null>
  /** Clock for the rate limit (epoch ms). */
  readonly now: () => number
  /** Shortest time between two sample starts, ms (default 100: at most ~10 polls a second). */
  readonly minIntervalMillis?: number
  /** How long a caller waits for a sample before going on without one, ms (default 2000). */
  readonly timeoutMillis?: number
  readonly onError: (err: unknown) => void
}

/** A sampler shared by every caller. */
export interface GpuSampler {
  /** The newest sample, taking one unless one is in flight (joined) or one started under minIntervalMillis ago. */
  sample(): Promise<GpuSample | null>
}

/** Creates a {@link GpuSampler}. */
export function createGpuSampler(options: GpuSamplerOptions): GpuSampler {
  const minInterval = options.minIntervalMillis ?? 100
  const timeoutMs = options.timeoutMillis ?? 2000
  let inFlight: Promise<GpuSample | null> | null = null
  let lastStart = Number.NEGATIVE_INFINITY
  let last: GpuSample | null = null

  const start = (): Promise<GpuSample | null> => {
    lastStart = options.now()
    let call: Promise<GpuSample | null>
    try {
      call = options.sample()
    } catch (err) {
      call = Promise.reject(err)
    }
    // The slot stays taken until the real call settles, even if callers gave up waiting: no overlap.
    const settled = call.then(
      (s) => {
        if (s) last = s
        return s
      },
      (err: unknown) => {
        options.onError(err)
        return null
      },
    )
    inFlight = settled
    void settled.finally(() => {
      if (inFlight === settled) inFlight = null
    })
    return settled
  }

  const withTimeout = (p: Promise<GpuSample | null>): Promise<GpuSample | null> => {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs)
      timer.unref()
    })
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
  }

  return {
    sample() {
      if (inFlight) return withTimeout(inFlight)
      if (options.now() - lastStart < minInterval) return Promise.resolve(last)
      return withTimeout(start())
    },
  }
}

const MIB = 1024 * 1024

/** Device-wide use in MiB (total minus free). */
export function usedMiB(sample: GpuSample): number {
  return Math.round((sample.vram_total - sample.vram_free) / MIB)
}

/** PyTorch-reserved memory in MiB. */
export function torchMiB(sample: GpuSample): number {
  return Math.round(sample.torch_vram_total / MIB)
}

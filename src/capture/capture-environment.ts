/**
 * The shell's I/O for the session machine: the environment snapshot (asked of ComfyUI once per TTL: a
 * prefetch when a prompt is submitted, a bounded wait when it starts) and GPU samples (taken at node
 * transitions, and on a timer while a node runs). The machine says when it needs either; this fetches it.
 */
import type { EnvironmentSnapshot } from '../audit/types.js'
import { createGpuSampler, type GpuSample, type GpuSampler } from './gpu-sampler.js'
import type { SessionMachine } from './session-machine.js'
import type { CaptureOptions } from './capture.js'

export function captureEnvironment(
  options: CaptureOptions,
  shell: {
    readonly now: () => number
    readonly onError: (err: unknown) => void
    readonly machine: SessionMachine
    readonly flags: { closed: boolean }
  },
) {
  const { now, onError, machine, flags } = shell
  const interval = options.gpuSampleIntervalMillis ?? 100
  const envTimeout = options.environmentTimeoutMillis ?? 5000
  const envTtl = options.environmentTtlMillis ?? 60_000
  const sampler: GpuSampler | null = options.sampleGpu
    ? createGpuSampler({
        sample: options.sampleGpu,
        now,
        minIntervalMillis: Math.max(100, interval),
        onError,
      })
    : null
  let timer: NodeJS.Timeout | null = null
  // The snapshot and when it was taken; a generation number tells answers asked before a refresh apart.
  let envCache: { readonly env: EnvironmentSnapshot; readonly atMs: number } | null = null
  let envInFlight: Promise<EnvironmentSnapshot | null> | null = null
  let envGeneration = 0

  const withTimeout = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> => {
    let t: NodeJS.Timeout | undefined
    const timeout = new Promise<T>((resolve) => {
      t = setTimeout(() => resolve(fallback), ms)
      t.unref()
    })
    return Promise.race([p, timeout]).finally(() => clearTimeout(t))
  }

  const envFresh = (): boolean => envCache !== null && now() - envCache.atMs < envTtl

  const prefetchEnvironment = (): void => {
    if (!options.environment || envFresh() || envInFlight) return
    const generation = envGeneration
    const askedAtMs = now()
    let call: Promise<EnvironmentSnapshot | null>
    try {
      call = options.environment()
    } catch (err) {
      call = Promise.reject(err)
    }
    const settled = call.then(
      (env) => {
        if (generation !== envGeneration) return null
        if (env) envCache = { env, atMs: askedAtMs }
        return env
      },
      (err: unknown) => {
        onError(err)
        return null
      },
    )
    envInFlight = settled
    void settled.finally(() => {
      if (envInFlight === settled) envInFlight = null
    })
  }

  const getEnvironment = async (): Promise<EnvironmentSnapshot | null> => {
    if (envFresh()) return envCache!.env
    prefetchEnvironment()
    const asked = envInFlight ? await withTimeout(envInFlight, envTimeout, null) : null
    // ComfyUI did not answer in time: the expired snapshot is still the best guess, unless a restart was
    // signalled since (refreshEnvironment dropped it), when no snapshot beats a wrong one.
    return asked ?? envCache?.env ?? null
  }

  const sampleNow = async (): Promise<GpuSample | null> => (sampler ? sampler.sample() : null)

  /** Runs the GPU timer exactly while some node runs; each tick's sample is a `sample` input. */
  const updateTimer = (): void => {
    if (!sampler || interval <= 0 || flags.closed) return
    const anyRunning = machine.anyRunning()
    if (anyRunning && !timer) {
      timer = setInterval(() => {
        void sampler.sample().then((sample) => {
          // Synchronous: it cannot interleave with a step, whatever the serial queue is waiting on.
          if (sample && !flags.closed) machine.step({ type: 'sample', sample })
        })
      }, interval)
      timer.unref()
    } else if (!anyRunning && timer) {
      clearInterval(timer)
      timer = null
    }
  }

  /** Forgets the snapshot; an answer asked before this call is not used after it. */
  const refresh = (): void => {
    envGeneration++
    envCache = null
    envInFlight = null
  }

  const stopTimer = (): void => {
    if (timer) clearInterval(timer)
    timer = null
  }

  return { prefetchEnvironment, getEnvironment, sampleNow, updateTimer, refresh, stopTimer }
}

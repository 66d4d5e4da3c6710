/**
 * The environment snapshot and GPU samples capture attaches to sessions and node runs: the snapshot is asked
 * of ComfyUI once per TTL (a prefetch when a prompt is submitted, a bounded wait when it starts); samples are
 * taken at node transitions and on a timer while a node runs.
 */
import type { EnvironmentSnapshot } from '../audit/types.js'
import { torchMiB, usedMiB, type GpuSample } from './gpu-sampler.js'
import type { CaptureCore, NodeState } from './capture-state.js'

/** The environment and GPU part of capture. */
export type CaptureEnvironment = ReturnType<typeof captureEnvironment>

export function captureEnvironment(c: CaptureCore) {
  const { options, now, onError, sampler, interval, envTimeout, envTtl, sessions, flags } = c
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

  const runningNodes = function* (): Generator<NodeState> {
    for (const s of sessions.values()) {
      for (const n of s.nodes.values()) if (n.status === 'running') yield n
    }
  }

  const applySample = (sample: GpuSample, nodes: Iterable<NodeState>): void => {
    const used = usedMiB(sample)
    const torch = torchMiB(sample)
    for (const n of nodes) {
      n.gpuUsed = n.gpuUsed === null ? used : Math.max(n.gpuUsed, used)
      n.gpuTorch = n.gpuTorch === null ? torch : Math.max(n.gpuTorch, torch)
    }
  }

  const sampleNow = async (): Promise<GpuSample | null> => (sampler ? sampler.sample() : null)

  const updateTimer = (): void => {
    if (!sampler || interval <= 0 || flags.closed) return
    const anyRunning = !runningNodes().next().done
    if (anyRunning && !timer) {
      timer = setInterval(() => {
        void sampler.sample().then((s) => {
          if (s) applySample(s, [...runningNodes()])
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

  return {
    prefetchEnvironment,
    getEnvironment,
    runningNodes,
    applySample,
    sampleNow,
    updateTimer,
    refresh,
    stopTimer,
  }
}

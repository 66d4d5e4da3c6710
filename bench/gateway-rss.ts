/**
 * Gateway memory under a burst: many clients, each with its own WebSocket and client id, submit a prompt
 * at the same moment and wait for it to finish. The gateway runs in its own process (built CLI), so the
 * peak it reports (VmHWM) is its own; VmRSS is sampled meanwhile to show the curve's shape.
 */
import http from 'node:http'
import {
  BenchClient,
  readProcMemory,
  round,
  submitPrompt,
  withTimeout,
  type GatewayProcess,
} from './bench-kit.js'

/** Options of {@link measureGatewayRss}. */
export interface GatewayRssOptions {
  readonly gateway: GatewayProcess
  /** Concurrent clients (default 200). */
  readonly clients?: number
  /** Longest wait for all prompts, ms (default 300 000). */
  readonly timeoutMs?: number
  /** VmRSS sampling period, ms (default 50). */
  readonly sampleEveryMs?: number
}

/** Memory figures in MiB. */
export interface GatewayRssResult {
  readonly clients: number
  readonly promptsSucceeded: number
  /** Prompts the gateway did not accept, by HTTP status (`503` was "ComfyUI is not reachable"). */
  readonly refused: Readonly<Record<string, number>>
  /** Submit → end of each prompt, ms: how long the last client waited behind the others. */
  readonly promptP50Ms: number
  readonly promptMaxMs: number
  readonly idleRssMb: number
  /** VmHWM at the end: the process's peak resident set over its life. */
  readonly peakRssMb: number
  /** Highest sampled VmRSS. */
  readonly maxSampledRssMb: number
  readonly rssSamples: number
  readonly elapsedMs: number
}

/** The recorded image_pipeline graph; `prefix` makes each prompt's SaveImage differ, so it is not cached. */
export function pipelinePrompt(prefix: string): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': {
      class_type: 'ImageScaleBy',
      inputs: { image: ['1', 0], upscale_method: 'bilinear', scale_by: 1.5 },
    },
    '3': { class_type: 'ImageBlur', inputs: { image: ['2', 0], blur_radius: 3, sigma: 1.0 } },
    '4': { class_type: 'ImageInvert', inputs: { image: ['3', 0] } },
    '5': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: prefix } },
    '6': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
  }
}

const MiB = 1024

/** Runs the burst and reads the gateway's memory. */
export async function measureGatewayRss(options: GatewayRssOptions): Promise<GatewayRssResult> {
  const { gateway } = options
  const count = options.clients ?? 200
  const timeoutMs = options.timeoutMs ?? 300_000
  const idle = readProcMemory(gateway.pid)
  if (!idle) throw new Error(`cannot read /proc/${gateway.pid}/status`)
  let maxRss = idle.rssKiB
  let samples = 0
  const sampler = setInterval(() => {
    const m = readProcMemory(gateway.pid)
    if (!m) return
    samples++
    maxRss = Math.max(maxRss, m.rssKiB)
  }, options.sampleEveryMs ?? 50)
  const agent = new http.Agent({ keepAlive: true, maxSockets: count })
  const clients: BenchClient[] = []
  const started = performance.now()
  let succeeded = 0
  const refused: Record<string, number> = {}
  const spans: number[] = []
  try {
    for (let i = 0; i < count; i++) clients.push(new BenchClient(gateway.url, `bench-rss-${i}`))
    await withTimeout(Promise.all(clients.map((c) => c.opened)), 60_000, 'clients did not connect')
    // All at once: every client submits without waiting for the others.
    const results = await withTimeout(
      Promise.all(
        clients.map(async (client, i) => {
          const t0 = performance.now()
          let id: string
          try {
            id = await submitPrompt(agent, gateway.url, pipelinePrompt(`bench/rss-${i}`), client.clientId)
          } catch (error) {
            // A refusal is a figure, not a failed bench: count it by status and go on.
            const status = /answered (\d+)/.exec(String(error))?.[1] ?? 'error'
            refused[status] = (refused[status] ?? 0) + 1
            return false
          }
          const end = await client.ended(id, timeoutMs)
          spans.push(performance.now() - t0)
          return end.type === 'execution_success'
        }),
      ),
      timeoutMs,
      `${count} prompts did not finish`,
    )
    succeeded = results.filter(Boolean).length
  } finally {
    clearInterval(sampler)
    await Promise.all(clients.map((c) => c.close()))
    agent.destroy()
  }
  const elapsedMs = performance.now() - started
  const end = readProcMemory(gateway.pid)
  if (!end) throw new Error(`gateway process ${gateway.pid} is gone:\n${gateway.stderr()}`)
  maxRss = Math.max(maxRss, end.rssKiB)
  spans.sort((a, b) => a - b)
  return {
    clients: count,
    promptsSucceeded: succeeded,
    refused,
    promptP50Ms: round(spans[spans.length >> 1] ?? 0, 0),
    promptMaxMs: round(spans[spans.length - 1] ?? 0, 0),
    idleRssMb: round(idle.rssKiB / MiB, 1),
    peakRssMb: round(end.hwmKiB / MiB, 1),
    maxSampledRssMb: round(maxRss / MiB, 1),
    rssSamples: samples,
    elapsedMs: round(elapsedMs, 0),
  }
}

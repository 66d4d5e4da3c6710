/**
 * WebSocket relay rate: `progress` frames per second reaching a client directly from the stand-in, and
 * through the gateway, for a prompt with tens of thousands of progress steps.
 *
 * ComfyUI's `AuditSlowProgress` caps `steps` at 1000 (object_info.json), and the stand-in validates that
 * like ComfyUI does, so the prompt chains several of them: LoadImage → AuditSlowProgress × N → SaveImage.
 */
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import { BenchClient, round, submitPrompt, type ArrivedFrame } from './bench-kit.js'

/** Options of {@link measureWsRelay}. */
export interface WsRelayOptions {
  readonly directUrl: string
  readonly gatewayUrl: string
  /** AuditSlowProgress nodes in the chain (default 20). */
  readonly nodes?: number
  /** Steps of each (default 1000, ComfyUI's maximum). */
  readonly stepsPerNode?: number
  /** `seconds` of each node; the stand-in sleeps seconds/steps/speed per step (default 0.001). */
  readonly seconds?: number
  /** Longest wait for one run, ms (default 240 000). */
  readonly timeoutMs?: number
}

/** One run's figures. */
export interface RelayRun {
  readonly progressFrames: number
  readonly framesTotal: number
  readonly spanMs: number
  readonly framesPerSecond: number
}

/** Both runs and their ratio. */
export interface WsRelayResult {
  readonly steps: number
  readonly direct: RelayRun
  readonly gateway: RelayRun
  /** gateway frames/s ÷ direct frames/s */
  readonly ratio: number
}

/** The prompt: LoadImage → AuditSlowProgress × nodes → SaveImage. */
export function slowProgressPrompt(
  nodes: number,
  steps: number,
  seconds: number,
  prefix: string,
): Record<string, unknown> {
  const prompt: Record<string, unknown> = {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  }
  let previous = '1'
  for (let i = 0; i < nodes; i++) {
    const id = String(10 + i)
    prompt[id] = { class_type: 'AuditSlowProgress', inputs: { image: [previous, 0], seconds, steps } }
    previous = id
  }
  prompt['2'] = { class_type: 'SaveImage', inputs: { images: [previous, 0], filename_prefix: prefix } }
  return prompt
}

async function relayRun(
  baseUrl: string,
  prompt: Record<string, unknown>,
  label: string,
  timeoutMs: number,
): Promise<RelayRun> {
  const agent = new http.Agent({ keepAlive: true })
  let promptId: string | null = null
  let progress = 0
  let total = 0
  let first = 0
  let last = 0
  // Frames can overtake the POST's answer through a proxy: keep them until the id is known.
  const early: ArrivedFrame[] = []
  const count = (f: ArrivedFrame): void => {
    if (f.type !== 'progress' || f.data.prompt_id !== promptId) return
    if (progress === 0) first = f.atMs
    last = f.atMs
    progress++
  }
  const client = new BenchClient(baseUrl, `bench-relay-${label}-${randomUUID()}`, (f) => {
    total++
    if (promptId === null) early.push(f)
    else count(f)
  })
  try {
    await client.opened
    promptId = await submitPrompt(agent, baseUrl, prompt, client.clientId)
    for (const f of early.splice(0)) count(f)
    const end = await client.ended(promptId, timeoutMs)
    if (end.type !== 'execution_success')
      throw new Error(`${label} run ended with ${end.type}: ${JSON.stringify(end.data).slice(0, 500)}`)
  } finally {
    await client.close()
    agent.destroy()
  }
  const spanMs = last - first
  return {
    progressFrames: progress,
    framesTotal: total,
    spanMs: round(spanMs, 1),
    framesPerSecond: round(spanMs > 0 ? ((progress - 1) * 1000) / spanMs : 0, 1),
  }
}

/**
 * Warms both paths up with a short prompt each (JIT, sockets), then runs the prompt directly and, with
 * `seconds` nudged so nothing is cached, through the gateway.
 */
export async function measureWsRelay(options: WsRelayOptions): Promise<WsRelayResult> {
  const nodes = options.nodes ?? 20
  const steps = options.stepsPerNode ?? 1000
  const seconds = options.seconds ?? 0.001
  const timeoutMs = options.timeoutMs ?? 240_000
  const warmSteps = Math.min(steps, 500)
  await relayRun(
    options.directUrl,
    slowProgressPrompt(2, warmSteps, seconds * 0.997, 'bench/relay-warm'),
    'warmup-direct',
    timeoutMs,
  )
  await relayRun(
    options.gatewayUrl,
    slowProgressPrompt(2, warmSteps, seconds * 0.998, 'bench/relay-warm'),
    'warmup-gateway',
    timeoutMs,
  )
  const direct = await relayRun(
    options.directUrl,
    slowProgressPrompt(nodes, steps, seconds, 'bench/relay-direct'),
    'direct',
    timeoutMs,
  )
  const gateway = await relayRun(
    options.gatewayUrl,
    slowProgressPrompt(nodes, steps, seconds * 1.001, 'bench/relay-gateway'),
    'gateway',
    timeoutMs,
  )
  const expected = nodes * steps
  for (const [label, run] of [
    ['direct', direct],
    ['gateway', gateway],
  ] as const) {
    if (run.progressFrames !== expected) {
      throw new Error(
        `${label}: ${run.progressFrames} progress frames reached the client, expected ${expected}`,
      )
    }
  }
  return {
    steps: expected,
    direct,
    gateway,
    ratio: round(direct.framesPerSecond > 0 ? gateway.framesPerSecond / direct.framesPerSecond : 0),
  }
}

/** Options of {@link measureWsRelayFlood}. */
export interface WsRelayFloodOptions {
  /** The fast upstream (bench/flood-upstream.ts). */
  readonly directUrl: string
  /** A gateway whose ComfyUI is that upstream. */
  readonly gatewayUrl: string
  /** Nodes × steps of the prompt (default 20 × 1000). */
  readonly nodes?: number
  readonly stepsPerNode?: number
  /** Direct/gateway pairs, alternated so both see the same machine load (default 3). */
  readonly rounds?: number
  readonly timeoutMs?: number
}

/** Every round's runs, the medians and their ratio. */
export interface WsRelayFloodResult {
  readonly steps: number
  readonly directRuns: readonly RelayRun[]
  readonly gatewayRuns: readonly RelayRun[]
  readonly directFramesPerSecond: number
  readonly gatewayFramesPerSecond: number
  /** median gateway frames/s ÷ median direct frames/s */
  readonly ratio: number
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/**
 * The relay ceiling: the upstream sends as fast as each socket drains, so the direct figure is what a client
 * can take and the gateway's is what it can relay. One warm-up per path, then direct and gateway alternated.
 */
export async function measureWsRelayFlood(options: WsRelayFloodOptions): Promise<WsRelayFloodResult> {
  const nodes = options.nodes ?? 20
  const steps = options.stepsPerNode ?? 1000
  const rounds = options.rounds ?? 3
  const timeoutMs = options.timeoutMs ?? 240_000
  const prompt = (tag: string): Record<string, unknown> =>
    slowProgressPrompt(nodes, steps, 0.001, `bench/relay-flood-${tag}`)
  await relayRun(options.directUrl, prompt('warm'), 'warmup-direct', timeoutMs)
  await relayRun(options.gatewayUrl, prompt('warm'), 'warmup-gateway', timeoutMs)
  const directRuns: RelayRun[] = []
  const gatewayRuns: RelayRun[] = []
  for (let r = 0; r < rounds; r++) {
    directRuns.push(await relayRun(options.directUrl, prompt('direct'), 'direct', timeoutMs))
    gatewayRuns.push(await relayRun(options.gatewayUrl, prompt('gateway'), 'gateway', timeoutMs))
  }
  const expected = nodes * steps
  for (const run of [...directRuns, ...gatewayRuns]) {
    if (run.progressFrames !== expected)
      throw new Error(`${run.progressFrames} progress frames reached the client, expected ${expected}`)
  }
  const direct = median(directRuns.map((r) => r.framesPerSecond))
  const gateway = median(gatewayRuns.map((r) => r.framesPerSecond))
  return {
    steps: expected,
    directRuns,
    gatewayRuns,
    directFramesPerSecond: direct,
    gatewayFramesPerSecond: gateway,
    ratio: round(direct > 0 ? gateway / direct : 0),
  }
}

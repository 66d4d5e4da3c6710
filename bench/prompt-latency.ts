/**
 * POST /prompt overhead: a real 30-node workflow (LoadImage, 28 image nodes, SaveImage, with the UI workflow
 * in `extra_data.extra_pnginfo` as the front end sends it) submitted alternately to the stand-in and to the
 * gateway, one request at a time, each side on its own keep-alive agent. Every prompt gets its own seed-like
 * value (the SaveImage prefix), so none is answered from a cache. The figure is gateway percentile minus
 * direct percentile of the time until ComfyUI's answer (the prompt id) arrives.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ensureBuild, percentile, request, round, startGatewayProcess, startSimProcess } from './bench-kit.js'

/** Options of {@link measurePromptLatency}. */
export interface PromptLatencyOptions {
  readonly directUrl: string
  readonly gatewayUrl: string
  /** Untimed direct+gateway pairs first (default 10). */
  readonly warmupPairs?: number
  /** Timed direct+gateway pairs (default 100). */
  readonly pairs?: number
}

/** Latency figures in milliseconds. */
export interface PromptLatencyResult {
  readonly nodes: number
  readonly body_bytes: number
  readonly pairs: number
  readonly direct: { p50: number; p99: number }
  readonly gateway: { p50: number; p99: number }
  readonly p50OverheadMs: number
  readonly p99OverheadMs: number
}

/** Nodes in {@link thirtyNodeBody}. */
export const PROMPT_NODES = 30

/** The POST /prompt body of the 30-node workflow; `tag` makes the prompt (and its output) unique. */
export function thirtyNodeBody(tag: string, clientId: string): Record<string, unknown> {
  const prompt: Record<string, unknown> = {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  }
  for (let i = 2; i < PROMPT_NODES; i++) {
    // Cheap image nodes, so that executing the queued prompts does not take the stand-in's CPU from its answers.
    prompt[String(i)] = { class_type: 'ImageInvert', inputs: { image: [String(i - 1), 0] } }
  }
  prompt[String(PROMPT_NODES)] = {
    class_type: 'SaveImage',
    inputs: { images: [String(PROMPT_NODES - 1), 0], filename_prefix: `bench/${tag}` },
  }
  const nodes = Object.entries(prompt).map(([id, node], i) => ({
    id: Number(id),
    type: (node as { class_type: string }).class_type,
    pos: [40 + 280 * i, 120],
    size: [240, 120],
    flags: {},
    order: i,
    mode: 0,
    inputs: i === 0 ? [] : [{ name: 'image', type: 'IMAGE', link: i }],
    outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [i + 1] }],
    properties: { 'Node name for S&R': (node as { class_type: string }).class_type },
    widgets_values: [],
  }))
  const links = nodes.slice(1).map((n, i) => [i + 1, nodes[i]!.id, 0, n.id, 0, 'IMAGE'])
  const workflow = {
    id: 'wf-bench-30',
    revision: 0,
    last_node_id: PROMPT_NODES,
    last_link_id: links.length,
    nodes,
    links,
    groups: [],
    config: {},
    extra: { ds: { scale: 1, offset: [0, 0] } },
    version: 0.4,
  }
  return { prompt, client_id: clientId, extra_data: { extra_pnginfo: { workflow } } }
}

async function post(agent: http.Agent, baseUrl: string, body: string): Promise<number> {
  const start = process.hrtime.bigint()
  const res = await request(agent, `${baseUrl}/prompt`, 'POST', body).catch((error: unknown) => {
    throw new Error(`POST ${baseUrl}/prompt failed: ${String(error)}`)
  })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (res.status !== 200)
    throw new Error(`POST ${baseUrl}/prompt answered ${res.status}: ${res.body.slice(0, 300)}`)
  return ms
}

/** Measures POST /prompt latency direct and through the gateway, interleaved. */
export async function measurePromptLatency(options: PromptLatencyOptions): Promise<PromptLatencyResult> {
  const pairs = options.pairs ?? 100
  const warmup = options.warmupPairs ?? 10
  const settings: http.AgentOptions = { keepAlive: true, maxSockets: 1, keepAliveMsecs: 30_000 }
  const directAgent = new http.Agent(settings)
  const gatewayAgent = new http.Agent(settings)
  const direct: number[] = []
  const gateway: number[] = []
  let n = 0
  const body = (): string => JSON.stringify(thirtyNodeBody(`p${n++}-${Date.now()}`, 'bench-prompt-latency'))
  try {
    for (let i = 0; i < warmup + pairs; i++) {
      // Alternate which side goes first, so neither always meets the other's just-queued prompt.
      const order = i % 2 === 0 ? (['d', 'g'] as const) : (['g', 'd'] as const)
      for (const side of order) {
        const ms =
          side === 'd'
            ? await post(directAgent, options.directUrl, body())
            : await post(gatewayAgent, options.gatewayUrl, body())
        if (i >= warmup) (side === 'd' ? direct : gateway).push(ms)
      }
    }
  } finally {
    directAgent.destroy()
    gatewayAgent.destroy()
  }
  direct.sort((a, b) => a - b)
  gateway.sort((a, b) => a - b)
  const d = { p50: round(percentile(direct, 50)), p99: round(percentile(direct, 99)) }
  const g = { p50: round(percentile(gateway, 50)), p99: round(percentile(gateway, 99)) }
  return {
    nodes: PROMPT_NODES,
    body_bytes: Buffer.byteLength(body()),
    pairs,
    direct: d,
    gateway: g,
    p50OverheadMs: round(g.p50 - d.p50),
    p99OverheadMs: round(g.p99 - d.p99),
  }
}

/**
 * Alone: `node --import tsx bench/prompt-latency.ts [--pairs N] [--warmup N] [--gateway-node-options S] [--out FILE]`
 * starts a stand-in and a gateway from the built CLI (as `npm run bench` does) and measures only this.
 * `--gateway-node-options` is the gateway's NODE_OPTIONS (for a profiler preload: `--cpu-prof` itself is
 * not allowed there).
 */
async function main(args: readonly string[]): Promise<void> {
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name)
    return i >= 0 ? args[i + 1] : undefined
  }
  ensureBuild((line) => void process.stderr.write(`[bench] ${line}\n`))
  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bench-prompt-'))
  const sim = await startSimProcess(join(dir, 'sim'), 50)
  const nodeOptions = flag('--gateway-node-options')
  const inherited = process.env.NODE_OPTIONS
  // The child's environment is read at spawn: only the gateway gets these.
  if (nodeOptions !== undefined) process.env.NODE_OPTIONS = `${inherited ?? ''} ${nodeOptions}`
  const gw = await startGatewayProcess(sim.url, join(dir, 'gw')).finally(() => {
    if (inherited === undefined) delete process.env.NODE_OPTIONS
    else process.env.NODE_OPTIONS = inherited
  })
  try {
    const result = await measurePromptLatency({
      directUrl: sim.url,
      gatewayUrl: gw.url,
      pairs: Number(flag('--pairs') ?? 100),
      warmupPairs: Number(flag('--warmup') ?? 10),
    })
    console.log(JSON.stringify(result, null, 2))
    const out = flag('--out')
    if (out) await writeFile(out, JSON.stringify(result, null, 2) + '\n')
  } catch (error) {
    process.stderr.write(`gateway stderr (last 4 kB):\n${gw.stderr().slice(-4000)}\n`)
    throw error
  } finally {
    await gw.stop()
    await sim.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main(process.argv.slice(2))

/**
 * Proxy overhead: the same small JSON route asked alternately of the stand-in and of the gateway, one
 * request at a time, each side with its own keep-alive agent of identical settings. Alternating keeps
 * both series under the same machine load, so their percentiles can be subtracted.
 */
import http from 'node:http'
import { percentile, request, round } from './bench-kit.js'

/** Options of {@link measureProxyLatency}. */
export interface ProxyLatencyOptions {
  readonly directUrl: string
  readonly gatewayUrl: string
  /** Route asked of both (default `/prompt`: ComfyUI's `{"exec_info": {"queue_remaining": n}}`). */
  readonly path?: string
  /** Untimed direct+gateway pairs first (default 500). */
  readonly warmupPairs?: number
  /** Timed direct+gateway pairs (default 5000, i.e. 10 000 requests). */
  readonly pairs?: number
}

/** Latency figures in milliseconds. */
export interface ProxyLatencyResult {
  readonly path: string
  readonly pairs: number
  readonly requests: number
  readonly direct: { p50: number; p99: number; mean: number }
  readonly gateway: { p50: number; p99: number; mean: number }
  readonly p50OverheadMs: number
  readonly p99OverheadMs: number
}

function summary(samples: number[]): { p50: number; p99: number; mean: number } {
  samples.sort((a, b) => a - b)
  const mean = samples.reduce((s, x) => s + x, 0) / samples.length
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), mean }
}

async function timed(agent: http.Agent, url: string): Promise<number> {
  const start = process.hrtime.bigint()
  const res = await request(agent, url)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}: ${res.body.slice(0, 200)}`)
  return ms
}

/** Measures p50/p99 latency direct and through the gateway, interleaved. */
export async function measureProxyLatency(options: ProxyLatencyOptions): Promise<ProxyLatencyResult> {
  const path = options.path ?? '/prompt'
  const pairs = options.pairs ?? 5000
  const warmup = options.warmupPairs ?? 500
  // One socket each, kept alive: a request never waits for a connection, and both sides pay the same.
  const agentSettings: http.AgentOptions = { keepAlive: true, maxSockets: 1, keepAliveMsecs: 30_000 }
  const directAgent = new http.Agent(agentSettings)
  const gatewayAgent = new http.Agent(agentSettings)
  const directUrl = `${options.directUrl}${path}`
  const gatewayUrl = `${options.gatewayUrl}${path}`
  const direct: number[] = []
  const gateway: number[] = []
  try {
    for (let i = 0; i < warmup; i++) {
      await timed(directAgent, directUrl)
      await timed(gatewayAgent, gatewayUrl)
    }
    for (let i = 0; i < pairs; i++) {
      // Swap who goes first every pair, so neither side always follows the other's garbage or timers.
      if (i % 2 === 0) {
        direct.push(await timed(directAgent, directUrl))
        gateway.push(await timed(gatewayAgent, gatewayUrl))
      } else {
        gateway.push(await timed(gatewayAgent, gatewayUrl))
        direct.push(await timed(directAgent, directUrl))
      }
    }
  } finally {
    directAgent.destroy()
    gatewayAgent.destroy()
  }
  const d = summary(direct)
  const g = summary(gateway)
  return {
    path,
    pairs,
    requests: direct.length + gateway.length,
    direct: { p50: round(d.p50), p99: round(d.p99), mean: round(d.mean) },
    gateway: { p50: round(g.p50), p99: round(g.p99), mean: round(g.mean) },
    p50OverheadMs: round(g.p50 - d.p50),
    p99OverheadMs: round(g.p99 - d.p99),
  }
}

/**
 * Prometheus metrics, served at `/_audit/metrics` (pull-based, so not a sink, as in OpenTelemetry). Uses its
 * own prom-client Registry: nothing leaks into or from the global default registry, and tests can create
 * as many collectors as they like.
 */
import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { decodeEvent } from '../audit/decode-event.js'
import { reportError } from '../audit/report-error.js'
import type { AuditEvent, JsonObject, JsonValue, NodeRunRecord } from '../audit/types.js'
import { FINAL_SESSION_STATUSES } from '../audit/types.js'
import { queueRemaining, type UpstreamFrame } from '../comfyui/frames.js'

/** The per-sink figures metrics need (structurally the sinks' `SinkHealth`; metrics do not depend on sinks). */
interface SinkHealthSample {
  readonly name: string
  readonly queued: number
  readonly spooledBytes: number
  /** Running total since the processor started. */
  readonly failures: number
  /** Running total since the processor started. */
  readonly dropped: number
}

/** The runtime store's write-path health, as metrics need it. */
interface StoreHealthSample {
  /** `ok`, `retrying` or `over-quota`. */
  readonly state: string
  readonly queuedEvents: number
  readonly spooledBytes: number
  /** Running total of failed commit attempts. */
  readonly failedCommits: number
}

/** The gateway's metrics. */
export interface Metrics {
  /** The registry holding every series (its own, never the global one). */
  readonly registry: Registry
  /** Updates node and run series from a committed audit event (node.finished, a session closing). */
  observe(event: AuditEvent): void
  /** ComfyUI's queue depth (running + pending), as last seen. */
  setQueueDepth(depth: number): void
  /** Device-wide GPU memory in use, MiB, as last sampled. */
  setGpuMemoryUsed(mib: number): void
  /** One gateway HTTP request: `route` is the route pattern, never the raw path (cardinality). */
  observeRequest(method: string, route: string, status: number, seconds: number): void
  /** Sets the per-sink series from processor health. */
  sinkHealth(health: readonly SinkHealthSample[]): void
  /** Sets the store write-path series from the runtime store's health (see StoreHealth). */
  storeHealth(health: StoreHealthSample): void
  /** A POST /prompt the gateway refused because it could not record it (fail-closed). */
  promptRefused(reason: 'store'): void
  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string>
  /** Content type of {@link text}. */
  readonly contentType: string
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Creates the collector.
 * @example
 * const metrics = createMetrics()
 * store.onCommit((event) => metrics.observe(event))
 * server.on('request', (req, res) => req.url === '/_audit/metrics' && metricsHandler(metrics, { token })(req, res))
 */
export function createMetrics(): Metrics {
  const registry = new Registry()
  const registers = [registry]
  const nodeDuration = new Histogram({
    name: 'comfyui_node_duration_seconds',
    help: 'Execution time of ComfyUI nodes (cache hits excluded), by node type.',
    labelNames: ['node_type'] as const,
    // ComfyUI nodes range from milliseconds (loaders from cache) to many minutes (video samplers).
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers,
  })
  const runs = new Counter({
    name: 'comfyui_runs_total',
    help: 'Prompt runs that ended, by final status.',
    labelNames: ['status'] as const,
    registers,
  })
  const queueDepth = new Gauge({
    name: 'comfyui_queue_depth',
    help: 'Prompts running or pending in ComfyUI.',
    registers,
  })
  const cacheHits = new Counter({
    name: 'comfyui_cache_hits_total',
    help: 'Node runs answered from ComfyUI cache (divide by comfyui_node_runs_total for the hit ratio).',
    registers,
  })
  const nodeRuns = new Counter({
    name: 'comfyui_node_runs_total',
    help: 'Node runs finished, by status.',
    labelNames: ['status'] as const,
    registers,
  })
  const gpuMemory = new Gauge({
    name: 'comfyui_gpu_memory_used_mib',
    help: 'Device-wide GPU memory in use (total - free), MiB.',
    registers,
  })
  const sinkQueue = new Gauge({
    name: 'comfy_audit_sink_queue_depth',
    help: 'Records waiting in memory for a sink.',
    labelNames: ['sink'] as const,
    registers,
  })
  const sinkSpool = new Gauge({
    name: 'comfy_audit_sink_spool_bytes',
    help: 'Bytes in a sink disk spool.',
    labelNames: ['sink'] as const,
    registers,
  })
  const sinkFailures = new Counter({
    name: 'comfy_audit_sink_failures_total',
    help: 'Sink exports that did not succeed.',
    labelNames: ['sink'] as const,
    registers,
  })
  const sinkDropped = new Counter({
    name: 'comfy_audit_sink_dropped_total',
    help: 'Records a sink gave up (spool quota, refused by the receiver).',
    labelNames: ['sink'] as const,
    registers,
  })
  const httpDuration = new Histogram({
    name: 'comfy_audit_http_request_duration_seconds',
    help: 'Gateway HTTP requests, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  })
  const storeState = new Gauge({
    name: 'comfy_audit_store_write_state',
    help: 'Store write path: 1 for the current state (ok, retrying a failing database, over-quota: spool full).',
    labelNames: ['state'] as const,
    registers,
  })
  const storeQueued = new Gauge({
    name: 'comfy_audit_store_queued_events',
    help: 'Acknowledged events waiting in memory for the store.',
    registers,
  })
  const storeSpool = new Gauge({
    name: 'comfy_audit_store_spool_bytes',
    help: 'Bytes of acknowledged events waiting in the store write-ahead spool.',
    registers,
  })
  const storeFailures = new Counter({
    name: 'comfy_audit_store_commit_failures_total',
    help: 'Store commits that failed (retried when the cause passes).',
    registers,
  })
  const promptsRefused = new Counter({
    name: 'comfy_audit_prompts_refused_total',
    help: 'POST /prompt refused with 503 because the gateway could not record it.',
    labelNames: ['reason'] as const,
    registers,
  })
  let lastStoreFailures = 0
  // Health reports running totals; counters only go up, so add the difference since the last report.
  const lastTotals = new Map<string, { failures: number; dropped: number }>()

  return {
    registry,
    contentType: registry.contentType,
    observe(event) {
      const payload = event.payload
      const decoded = decodeEvent(event)
      if (decoded.ok && decoded.event.kind === 'node.finished') {
        const r: NodeRunRecord = decoded.event.payload.node_run
        nodeRuns.inc({ status: r.status })
        if (r.status === 'cached') cacheHits.inc()
        else if (typeof r.duration_ms === 'number')
          nodeDuration.observe({ node_type: r.node_type ?? 'unknown' }, r.duration_ms / 1000)
        if (typeof r.gpu_memory_used === 'number') gpuMemory.set(r.gpu_memory_used)
      }
      const session = payload.session
      if (isObject(session) && typeof session.status === 'string') {
        const status = session.status
        if ((FINAL_SESSION_STATUSES as readonly string[]).includes(status)) runs.inc({ status })
      }
    },
    setQueueDepth: (depth) => queueDepth.set(depth),
    setGpuMemoryUsed: (mib) => gpuMemory.set(mib),
    observeRequest(method, route, status, seconds) {
      httpDuration.observe({ method, route, status: String(status) }, seconds)
    },
    sinkHealth(health) {
      for (const h of health) {
        sinkQueue.set({ sink: h.name }, h.queued)
        sinkSpool.set({ sink: h.name }, h.spooledBytes)
        const last = lastTotals.get(h.name) ?? { failures: 0, dropped: 0 }
        // A restarted processor starts from 0 again: then the whole new total is new.
        const failures = h.failures >= last.failures ? h.failures - last.failures : h.failures
        const dropped = h.dropped >= last.dropped ? h.dropped - last.dropped : h.dropped
        sinkFailures.inc({ sink: h.name }, failures)
        sinkDropped.inc({ sink: h.name }, dropped)
        lastTotals.set(h.name, { failures: h.failures, dropped: h.dropped })
      }
    },
    storeHealth(health) {
      for (const state of ['ok', 'retrying', 'over-quota'])
        storeState.set({ state }, health.state === state ? 1 : 0)
      storeQueued.set(health.queuedEvents)
      storeSpool.set(health.spooledBytes)
      if (health.failedCommits > lastStoreFailures)
        storeFailures.inc(health.failedCommits - lastStoreFailures)
      lastStoreFailures = health.failedCommits
    },
    promptRefused: (reason) => promptsRefused.inc({ reason }),
    text: () => registry.metrics(),
  }
}

/**
 * Feeds committed events to the collector, in order (for `store.onCommitted`). Never throws: an event the
 * collector cannot read is reported and skipped, so metrics never disturb the audit path.
 */
export function observeEvents(metrics: Pick<Metrics, 'observe'>, events: readonly AuditEvent[]): void {
  for (const event of events) {
    try {
      metrics.observe(event)
    } catch (error) {
      reportError(error, `metrics: event ${event.origin}:${event.seq}`)
    }
  }
}

/**
 * ComfyUI's queue depth (running + pending) from one upstream WebSocket frame: its `status` message carries
 * `exec_info.queue_remaining` (read by {@link queueRemaining}, as the socket hub reads it), kept when it is a
 * count. Returns undefined for every other frame. Feed it from the gateway's frame tap into
 * {@link Metrics.setQueueDepth}.
 */
export function queueDepthFromFrame(frame: UpstreamFrame): number | undefined {
  const depth = queueRemaining(frame)
  return depth !== undefined && Number.isInteger(depth) && depth >= 0 ? depth : undefined
}

/** Options of {@link metricsHandler}. */
interface MetricsHandlerOptions {
  /** Bearer token a scraper must send (`Authorization: Bearer <token>`). */
  readonly token?: string
  /** Serve without a token (e.g. bound to a private interface). */
  readonly open?: boolean
  /** Called before each scrape (e.g. to pull sink health into the gauges). */
  readonly beforeScrape?: () => void
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer[ ]+(.+)$/i.exec(header ?? '')
  if (!m) return false
  const given = Buffer.from(m[1]!.trim())
  const expected = Buffer.from(token)
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/**
 * A node:http handler for `/_audit/metrics`: GET/HEAD only; requires the bearer token unless `open`.
 * Throws at startup when neither a token nor `open: true` is given, so metrics are never exposed by accident.
 */
export function metricsHandler(
  metrics: Metrics,
  options: MetricsHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { token, open = false } = options
  if (!open && (token === undefined || token === '')) {
    throw new Error('metricsHandler: a token is required unless open: true')
  }
  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    if (!open && !tokenMatches(req.headers.authorization, token as string)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="comfy-audit metrics"' }).end()
      return
    }
    options.beforeScrape?.()
    let text: string
    try {
      text = await metrics.text()
    } catch (error) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(error)}`)
      return
    }
    res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : text)
  }
}

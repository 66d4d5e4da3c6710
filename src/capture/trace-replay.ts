/**
 * Replays a recorded ComfyUI session (`fixtures/comfyui-0.8.0/trace.jsonl`, see its README) into a
 * {@link CaptureTap}, as the gateway would have called it: POST /prompt as `promptSubmitted` (at the
 * request's start) and `promptAnswered` (when the answer arrived), each client's frames as `frame` on its
 * upstream socket, state-changing requests as `action`, and the `/system_stats` polls as GPU readings.
 * Tests and the demo use it; rows are read with the lossless parser, so seeds stay exact.
 */
import { parseJson, stringifyJson } from '../audit/json.js'
import type { JsonObject, JsonValue, Submitter } from '../audit/types.js'
import type { GpuSample } from './gpu-sampler.js'
import { isJsonObject } from '../comfyui/schemas.js'
import { parseUpstreamFrame } from '../comfyui/frames.js'
import type { CaptureTap } from './tap.js'

/** One row of trace.jsonl (every row has these; the rest depends on `kind`). */
export interface TraceRow extends JsonObject {
  t_ms: number
  wall: number
  scenario: string
  kind: string
}

/** Parses trace.jsonl text; rows that are not objects with the common fields are refused. */
export function parseTrace(text: string): { ok: true; rows: TraceRow[] } | { ok: false; reason: string } {
  const rows: TraceRow[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    if (line.trim() === '') continue
    const parsed = parseJson(line)
    if (!parsed.ok) return { ok: false, reason: `line ${i + 1}: ${parsed.reason}` }
    const row = parsed.value
    if (
      !isJsonObject(row) ||
      typeof row.wall !== 'number' ||
      typeof row.t_ms !== 'number' ||
      typeof row.scenario !== 'string' ||
      typeof row.kind !== 'string'
    ) {
      return { ok: false, reason: `line ${i + 1}: not a trace row` }
    }
    rows.push(row as TraceRow)
  }
  return { ok: true, rows }
}

/** A step of a replay, in time order. */
export type ReplayStep =
  | { at: number; kind: 'submitted'; call: Parameters<CaptureTap['promptSubmitted']>[0] }
  | { at: number; kind: 'answered'; call: Parameters<CaptureTap['promptAnswered']>[0] }
  | { at: number; kind: 'frame'; call: Parameters<CaptureTap['frame']>[0] }
  | { at: number; kind: 'action'; call: Parameters<CaptureTap['action']>[0] }

/** Options of {@link replaySteps}. */
export interface ReplayOptions {
  /** Upstream client id for each recorded client name (`A`, `B`, `C`, ...); unlisted clients are not fed. */
  readonly clients: Readonly<Record<string, string>>
  /** Upstream client id for prompts that named no client (the gateway injects one). */
  readonly injectedClientId?: string
  /** Who submitted everything. */
  readonly submitter?: Submitter
  /** Only rows of these scenarios become steps (all rows still name the clients). Default: every row. */
  readonly scenarios?: readonly string[]
  /** Rewrites a POST /prompt request before it is replayed (e.g. to plant a 2^64-1 seed). */
  readonly rewriteRequest?: (request: JsonValue) => JsonValue
}

const LOCAL: Submitter = {
  user: 'local',
  auth_method: 'none',
  client_address: '127.0.0.1',
  user_agent: null,
  client_id: null,
}

const ACTION_PATHS: Readonly<Record<string, Parameters<CaptureTap['action']>[0]['kind']>> = {
  '/interrupt': 'interrupt',
  '/queue': 'queue',
  '/history': 'history',
  '/free': 'free',
}

/**
 * The tap calls a gateway would have made for these rows, sorted by time. The recorder logs an HTTP row
 * when the answer arrived, with `ms` its duration, so a request starts at `wall - ms`. Rejected prompts get
 * the id `rejected-<t_ms>` (ComfyUI names none; the gateway assigns its own).
 */
export function replaySteps(rows: readonly TraceRow[], options: ReplayOptions): ReplayStep[] {
  const submitter = options.submitter ?? LOCAL
  const steps: ReplayStep[] = []
  const clientIds = new Map<string, string>()
  for (const row of rows) {
    if (row.kind === 'ws_open' && typeof row.client === 'string' && typeof row.client_id === 'string') {
      clientIds.set(row.client_id, row.client)
    }
  }
  for (const row of rows) {
    if (options.scenarios && !options.scenarios.includes(row.scenario)) continue
    const at = row.wall * 1000
    if (row.kind === 'ws' && typeof row.client === 'string') {
      const upstream = options.clients[row.client]
      if (upstream === undefined) continue
      const data = stringifyJson(row.msg ?? null)
      steps.push({
        at,
        kind: 'frame',
        call: { upstreamClientId: upstream, frame: parseUpstreamFrame(data, false), timeMs: at },
      })
      continue
    }
    if (row.kind !== 'http' || row.method !== 'POST' || typeof row.path !== 'string') continue
    const status = typeof row.status === 'number' ? row.status : 0
    const startAt = at - (typeof row.ms === 'number' ? row.ms : 0)
    const request = row.request ?? null
    const responseBody =
      row.response !== undefined
        ? Buffer.from(stringifyJson(row.response))
        : typeof row.response_text === 'string'
          ? Buffer.from(row.response_text)
          : Buffer.alloc(0)
    const path = row.path.replace(/^\/api(?=\/)/, '')
    if (path === '/prompt') {
      const sent = options.rewriteRequest ? options.rewriteRequest(request) : request
      const body = Buffer.from(stringifyJson(sent, { python: true }))
      const response = row.response
      const promptId =
        isJsonObject(response) && typeof response.prompt_id === 'string'
          ? response.prompt_id
          : `rejected-${row.t_ms}`
      const given = isJsonObject(sent) && typeof sent.client_id === 'string' ? sent.client_id : null
      const client = given === null ? undefined : clientIds.get(given)
      const upstream =
        (client === undefined ? undefined : options.clients[client]) ?? options.injectedClientId ?? 'gateway'
      steps.push({
        at: startAt,
        kind: 'submitted',
        call: {
          promptId,
          upstreamClientId: upstream,
          clientId: given,
          body,
          forwardedBody: body,
          submitter: { ...submitter, client_id: given },
          timeMs: startAt,
        },
      })
      steps.push({ at, kind: 'answered', call: { promptId, status, body: responseBody, timeMs: at } })
      continue
    }
    const kind = ACTION_PATHS[path]
    if (kind === undefined) continue
    steps.push({
      at,
      kind: 'action',
      call: {
        kind,
        method: 'POST',
        path: row.path,
        body: Buffer.from(stringifyJson(request)),
        status,
        responseBody,
        submitter,
        timeMs: at,
      },
    })
  }
  // Stable: rows logged at the same instant keep their recorded order.
  return steps
    .map((s, i) => ({ s, i }))
    .sort((a, b) => a.s.at - b.s.at || a.i - b.i)
    .map(({ s }) => s)
}

/** Calls the tap for one step. */
export function applyStep(tap: CaptureTap, step: ReplayStep): void {
  switch (step.kind) {
    case 'submitted':
      tap.promptSubmitted(step.call)
      return
    case 'answered':
      tap.promptAnswered(step.call)
      return
    case 'frame':
      tap.frame(step.call)
      return
    case 'action':
      tap.action(step.call)
      return
  }
}

/** The recorded `/system_stats` polls as GPU readings, with their times (epoch ms), in time order. */
export function gpuReadings(rows: readonly TraceRow[]): { at: number; sample: GpuSample }[] {
  const out: { at: number; sample: GpuSample }[] = []
  for (const row of rows) {
    if (row.kind !== 'vram') continue
    const { vram_total, vram_free, torch_vram_total, torch_vram_free } = row
    if (
      typeof vram_total !== 'number' ||
      typeof vram_free !== 'number' ||
      typeof torch_vram_total !== 'number'
    )
      continue
    out.push({
      at: row.wall * 1000,
      sample: {
        vram_total,
        vram_free,
        torch_vram_total,
        torch_vram_free: typeof torch_vram_free === 'number' ? torch_vram_free : undefined,
      },
    })
  }
  return out.sort((a, b) => a.at - b.at)
}

/** The newest reading at or before `timeMs`, or null. */
export function readingAt(
  readings: readonly { at: number; sample: GpuSample }[],
  timeMs: number,
): GpuSample | null {
  let found: GpuSample | null = null
  for (const r of readings) {
    if (r.at > timeMs) break
    found = r.sample
  }
  return found
}

/**
 * Builders of realistic audit events and records, for sink tests (ours and those of anyone writing a sink).
 * The events follow the payload conventions of `ProjectedPayload`.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  RECORD_SCHEMA_VERSION,
  type AuditEvent,
  type JsonObject,
  type NodeRunRecord,
} from '../audit/types.js'
import { toJsonObject } from '../audit/json-value.js'
import { createSessionMerger, toSinkRecords, type SinkRecord } from './sink.js'

/** A node run with every field set (override what the test cares about). */
export function nodeRun(overrides: Partial<NodeRunRecord> = {}): NodeRunRecord {
  return {
    session_id: 'prompt-1',
    node_id: '3',
    node_type: 'KSampler',
    timestamp_start: '2026-11-26T04:34:00.123Z',
    timestamp_end: '2026-11-26T04:34:02.623Z',
    duration_ms: 2500,
    inputs: { seed: 18446744073709551615n, steps: 20, model: { node: '4', output: 0 } },
    outputs: null,
    status: 'success',
    error_message: null,
    exception_type: null,
    traceback: null,
    gpu_memory_used: 6144,
    gpu_memory_torch: 5120,
    display_node: null,
    real_node_id: null,
    parent_node_id: null,
    progress: { value: 20, max: 20 },
    ...overrides,
  }
}

/**
 * A whole session's events: submitted (queued), started (running), one finished node per entry of `nodes`,
 * an action, and execution.finished with `status`.
 */
export function sessionEvents(options: {
  origin?: string
  sessionId?: string
  firstSeq?: number
  nodes?: Partial<NodeRunRecord>[]
  status?: 'success' | 'error'
}): AuditEvent[] {
  const origin = options.origin ?? 'comfy-audit/test'
  const sid = options.sessionId ?? 'prompt-1'
  let seq = options.firstSeq ?? 0
  const events: AuditEvent[] = []
  const push = (kind: AuditEvent['kind'], time: string, payload: JsonObject): void => {
    events.push({ origin, seq: seq++, kind, time, session_id: sid, payload })
  }
  const submitter = {
    user: 'ada',
    auth_method: 'token',
    client_address: '10.0.0.7',
    user_agent: 'test',
    client_id: 'c1',
  }
  push('prompt.submitted', '2026-11-26T04:33:59.000Z', {
    session: { status: 'queued', queued_at: '2026-11-26T04:33:59.000Z', submitter, client_id: 'c1' },
  })
  push('execution.started', '2026-11-26T04:34:00.000Z', {
    session: { status: 'running', started_at: '2026-11-26T04:34:00.000Z' },
  })
  for (const n of options.nodes ?? [{}]) {
    const run = nodeRun({ session_id: sid, ...n })
    push('node.finished', run.timestamp_end ?? run.timestamp_start, {
      node_run: toJsonObject(run),
    })
  }
  push('action.interrupt', '2026-11-26T04:34:03.000Z', { submitter, prompt_id: sid })
  const failed = options.status === 'error'
  push('execution.finished', '2026-11-26T04:34:05.000Z', {
    session: {
      status: options.status ?? 'success',
      ended_at: '2026-11-26T04:34:05.000Z',
      duration_ms: 5000,
      ...(failed
        ? {
            error: {
              exception_type: 'RuntimeError',
              exception_message: 'CUDA out of memory',
              traceback: ['a\n', 'b\n'],
            },
          }
        : {}),
    },
  })
  return events
}

/** The records a sink would receive for the events (with a fresh session merger). */
export function recordsOf(events: readonly AuditEvent[]): SinkRecord[] {
  const merger = createSessionMerger()
  return events.flatMap((e) => toSinkRecords(e, merger))
}

/** `count` node-run records with distinct ids `origin:0` … (for volume tests). */
export function manyRecords(count: number, origin = 'comfy-audit/test'): SinkRecord[] {
  const out: SinkRecord[] = []
  for (let seq = 0; seq < count; seq++) {
    out.push({
      ...nodeRun({ node_id: String(seq) }),
      id: `${origin}:${seq}`,
      origin,
      seq,
      kind: 'node.finished',
      time: '2026-11-26T04:34:02.623Z',
      schema_version: RECORD_SCHEMA_VERSION,
      record_type: 'node_run',
    })
  }
  return out
}

/** One request a {@link RecordingServer} received. */
export interface RecordedRequest {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** How the recording server answers a request (default 200 `{}`). */
type RecordingResponder = (
  request: RecordedRequest,
  index: number,
) => { status: number; headers?: Record<string, string>; body?: string }

/** A real HTTP server on 127.0.0.1 and a free port that keeps every request, for testing exporters on the wire. */
export interface RecordingServer {
  readonly url: string
  readonly requests: RecordedRequest[]
  respondWith(responder: RecordingResponder): void
  close(): Promise<void>
}

/** Starts a {@link RecordingServer}. */
export async function startRecordingServer(responder?: RecordingResponder): Promise<RecordingServer> {
  let respond: RecordingResponder = responder ?? (() => ({ status: 200, body: '{}' }))
  const requests: RecordedRequest[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const recorded = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      }
      requests.push(recorded)
      const answer = respond(recorded, requests.length - 1)
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers })
      res.end(answer.body ?? '')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    respondWith(next) {
      respond = next
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A clock and a sleep that advances it, for driving retries without waiting. */
export function fakeClock(startMillis = Date.parse('2026-11-26T04:35:00.000Z')): {
  now: () => number
  sleep: (millis: number) => Promise<void>
  advance: (millis: number) => void
  slept: number[]
} {
  let t = startMillis
  const slept: number[] = []
  return {
    now: () => t,
    sleep: async (millis) => {
      slept.push(millis)
      t += millis
    },
    advance: (millis) => {
      t += millis
    },
    slept,
  }
}

/**
 * Capture throughput: client A's recorded frames of the image-pipeline scenarios (and their POST /prompt
 * exchanges) replayed many times, each time under fresh prompt ids, through the real capture into a real
 * SQLite store (events and derived tables). The figure is node runs committed per second of wall time,
 * from the first tap call to the last commit.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { AuditEventInput, EnvironmentSnapshot } from '../src/audit/types.js'
import { createCapture } from '../src/capture/capture.js'
import { environmentFromSystemStats } from '../src/capture/environment.js'
import { parseWith, zObjectInfo, zSystemStats } from '../src/comfyui/schemas.js'
import { applyStep, parseTrace, replaySteps, type ReplayStep } from '../src/capture/trace-replay.js'
import { createRuntimeStore } from '../src/store/runtime-store.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import { ROOT, round } from './bench-kit.js'
import { parseUpstreamFrame } from '../src/comfyui/frames.js'

/** The recorded scenarios that run the image pipeline graph (fully, cached, partly cached, partial targets). */
export const PIPELINE_SCENARIOS = [
  'image_pipeline',
  'image_pipeline_fully_cached',
  'image_pipeline_partly_cached',
  'partial_execution_targets',
] as const

/** Options of {@link measureCaptureThroughput}. */
export interface CaptureThroughputOptions {
  /** Untimed replays first (default 20). */
  readonly warmupReplays?: number
  /** Timed replays at most (default 3000). */
  readonly maxReplays?: number
  /** Stop starting replays after this much wall time, ms (default 8000). */
  readonly maxMillis?: number
  /** Replays fed between waits for capture to catch up (default 20): bounds queued work. */
  readonly chunk?: number
}

/** Throughput figures. */
export interface CaptureThroughputResult {
  readonly scenarios: readonly string[]
  readonly replays: number
  readonly tapCallsPerReplay: number
  readonly nodeRunsPerReplay: number
  readonly nodeRunsCommitted: number
  readonly eventsCommitted: number
  readonly sessionsCommitted: number
  readonly elapsedMs: number
  readonly recordsPerSecond: number
  readonly eventsPerSecond: number
  readonly captureErrors: number
  readonly storeCommits: number
}

/** A text with the recorded prompt ids cut out, to be joined again with fresh ones. */
interface Template {
  readonly parts: readonly string[]
  /** Which recorded id goes between parts[i] and parts[i + 1]. */
  readonly ids: readonly number[]
}

function templateOf(text: string, ids: readonly string[]): Template {
  const parts: string[] = []
  const which: number[] = []
  let rest = text
  for (;;) {
    let best = -1
    let at = Infinity
    for (let i = 0; i < ids.length; i++) {
      const p = rest.indexOf(ids[i]!)
      if (p >= 0 && p < at) {
        at = p
        best = i
      }
    }
    if (best < 0) break
    parts.push(rest.slice(0, at))
    which.push(best)
    rest = rest.slice(at + ids[best]!.length)
  }
  parts.push(rest)
  return { parts, ids: which }
}

function fill(t: Template, fresh: readonly string[]): string {
  if (t.ids.length === 0) return t.parts[0]!
  let out = t.parts[0]!
  for (let i = 0; i < t.ids.length; i++) out += fresh[t.ids[i]!]! + t.parts[i + 1]!
  return out
}

type StepFactory = (fresh: readonly string[], shiftMs: number) => ReplayStep

/** Turns recorded steps into factories that rename prompt ids and shift times. */
function factories(steps: readonly ReplayStep[], ids: readonly string[]): StepFactory[] {
  const text = (b: Buffer | string): Template =>
    templateOf(typeof b === 'string' ? b : b.toString('utf8'), ids)
  const idIndex = (id: string): number => ids.indexOf(id)
  return steps.map((step): StepFactory => {
    switch (step.kind) {
      case 'frame': {
        const t = text(step.call.frame.raw)
        const c = step.call
        return (fresh, shift) => ({
          at: step.at + shift,
          kind: 'frame',
          call: {
            upstreamClientId: c.upstreamClientId,
            frame: parseUpstreamFrame(fill(t, fresh), false),
            timeMs: c.timeMs + shift,
          },
        })
      }
      case 'submitted': {
        const c = step.call
        const body = text(c.body)
        const forwarded = text(c.forwardedBody)
        const id = idIndex(c.promptId)
        return (fresh, shift) => ({
          at: step.at + shift,
          kind: 'submitted',
          call: {
            ...c,
            promptId: fresh[id]!,
            body: Buffer.from(fill(body, fresh)),
            forwardedBody: Buffer.from(fill(forwarded, fresh)),
            timeMs: c.timeMs + shift,
          },
        })
      }
      case 'answered': {
        const c = step.call
        const body = text(c.body)
        const id = idIndex(c.promptId)
        return (fresh, shift) => ({
          at: step.at + shift,
          kind: 'answered',
          call: {
            ...c,
            promptId: fresh[id]!,
            body: Buffer.from(fill(body, fresh)),
            timeMs: c.timeMs + shift,
          },
        })
      }
      case 'action': {
        const c = step.call
        const body = text(c.body)
        const response = c.responseBody === null ? null : text(c.responseBody)
        return (fresh, shift) => ({
          at: step.at + shift,
          kind: 'action',
          call: {
            ...c,
            body: Buffer.from(fill(body, fresh)),
            responseBody: response === null ? null : Buffer.from(fill(response, fresh)),
            timeMs: c.timeMs + shift,
          },
        })
      }
    }
  })
}

function fixtureEnvironment(rows: ReturnType<typeof loadRows>): EnvironmentSnapshot | null {
  const statsRow = rows.find((r) => r.kind === 'http' && r.path === '/system_stats')
  const stats = parseWith(zSystemStats, statsRow?.response ?? null)
  const info = parseWith(zObjectInfo, readFileSync(join(ROOT, 'fixtures/comfyui-0.8.0/object_info.json')))
  return stats.ok ? environmentFromSystemStats(stats.value, info.ok ? info.value : null) : null
}

function loadRows() {
  const parsed = parseTrace(readFileSync(join(ROOT, 'fixtures/comfyui-0.8.0/trace.jsonl'), 'utf8'))
  if (!parsed.ok) throw new Error(`trace.jsonl: ${parsed.reason}`)
  return parsed.rows
}

/** Replays the pipeline scenarios through capture into SQLite and reports node runs committed per second. */
export async function measureCaptureThroughput(
  options: CaptureThroughputOptions = {},
): Promise<CaptureThroughputResult> {
  const warmup = options.warmupReplays ?? 20
  const maxReplays = options.maxReplays ?? 3000
  const maxMillis = options.maxMillis ?? 8000
  const chunk = Math.max(1, options.chunk ?? 20)
  const rows = loadRows()
  const steps = replaySteps(rows, { clients: { A: 'bench:A' }, scenarios: [...PIPELINE_SCENARIOS] })
  const ids = [...new Set(steps.flatMap((s) => (s.kind === 'submitted' ? [s.call.promptId] : [])))]
  if (ids.length === 0) throw new Error('no POST /prompt in the pipeline scenarios of trace.jsonl')
  const make = factories(steps, ids)
  const first = steps[0]!.at
  const spanMs = steps[steps.length - 1]!.at - first + 1000
  const environment = fixtureEnvironment(rows)

  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bench-capture-'))
  const path = join(dir, 'audit.sqlite')
  // As the gateway runs it: SQLite on a worker thread.
  const store = createRuntimeStore(createSqliteDialect({ path, thread: 'worker' }), {
    origin: 'comfy-audit/bench',
  })
  let captureErrors = 0
  let storeErrors = 0
  let firstStoreError: unknown = null
  const clock = { now: first }
  const capture = createCapture({
    origin: store.origin,
    now: () => clock.now,
    emit: (events: AuditEventInput[]) => {
      store.append(events).catch((err: unknown) => {
        storeErrors++
        firstStoreError ??= err
      })
    },
    environment: async () => environment,
    gpuSampleIntervalMillis: 0,
    onError: () => {
      captureErrors++
    },
  })
  const reader = (): { nodeRuns: number; events: number; sessions: number } => {
    const db = new Database(path, { readonly: true, fileMustExist: true })
    try {
      const n = (table: string): number =>
        (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n
      return { nodeRuns: n('node_runs'), events: n('events'), sessions: n('sessions') }
    } finally {
      db.close()
    }
  }
  let replay = 0
  const feed = (): void => {
    const fresh = ids.map(() => randomUUID())
    const shift = replay * spanMs
    replay++
    for (const f of make) {
      const step = f(fresh, shift)
      clock.now = step.at
      applyStep(capture, step)
    }
  }
  try {
    await store.init()
    for (let i = 0; i < warmup; i++) feed()
    await capture.flush()
    await store.flush()
    const before = reader()
    const nodeRunsPerReplay = warmup > 0 ? before.nodeRuns / warmup : 0
    const started = performance.now()
    let timed = 0
    while (timed < maxReplays && performance.now() - started < maxMillis) {
      for (let i = 0; i < chunk && timed < maxReplays; i++, timed++) feed()
      // Let capture drain what was fed, so queued work stays bounded; the store commits meanwhile.
      await capture.flush()
    }
    await capture.flush()
    await store.flush()
    const elapsedMs = performance.now() - started
    const after = reader()
    if (storeErrors > 0) throw new Error(`store rejected ${storeErrors} appends: ${String(firstStoreError)}`)
    const nodeRuns = after.nodeRuns - before.nodeRuns
    return {
      scenarios: [...PIPELINE_SCENARIOS],
      replays: timed,
      tapCallsPerReplay: make.length,
      nodeRunsPerReplay: round(nodeRunsPerReplay, 2),
      nodeRunsCommitted: nodeRuns,
      eventsCommitted: after.events - before.events,
      sessionsCommitted: after.sessions - before.sessions,
      elapsedMs: round(elapsedMs, 1),
      recordsPerSecond: round((nodeRuns * 1000) / elapsedMs, 0),
      eventsPerSecond: round(((after.events - before.events) * 1000) / elapsedMs, 0),
      captureErrors,
      storeCommits: store.stats().commits,
    }
  } finally {
    capture.close()
    await store.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

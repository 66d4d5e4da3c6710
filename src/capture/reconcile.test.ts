import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { AuditEventInput, JsonObject, JsonValue } from '../audit/types.js'
import { createCapture } from './capture.js'
import { bypassSessions, historyOutcome, reconcileSessions, type OpenSession } from './reconcile.js'
import { checkWith, isJsonObject, zHistory, type History } from '../comfyui/schemas.js'
import { applyStep, parseTrace, replaySteps, type TraceRow } from './trace-replay.js'

const parsedTrace = parseTrace(
  readFileSync(new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url), 'utf8'),
)
if (!parsedTrace.ok) throw new Error(parsedTrace.reason)
const ROWS = parsedTrace.rows

function httpResponse(path: string): JsonValue {
  const row = ROWS.find((r) => r.kind === 'http' && r.path === path)
  if (!row) throw new Error(`no recorded ${path}`)
  return row.response ?? null
}

function history(path: string): History {
  const checked = checkWith(zHistory, httpResponse(path))
  if (!checked.ok) throw new Error(checked.reason)
  return checked.value
}

const FULL_HISTORY = history('/history')
const RUNTIME_ERROR = 'bb98f9c0-a979-46e3-a4d6-83dac6ea3753'
const INTERRUPTED = '80d571d6-b498-4578-8c1d-d53b391c265f'
const PIPELINE = 'fixed-3189cedb6bec'
const T = Date.parse('2026-11-26T05:00:00.000Z')

function open(id: string, extra: Partial<OpenSession> = {}): OpenSession {
  return {
    session_id: id,
    status: 'queued',
    accepted: true,
    client_id: 'gw:A',
    number: 1,
    queued_at: null,
    started_at: null,
    running_nodes: [],
    recorded_nodes: [],
    ended: false,
    ...extra,
  }
}

function runsOf(events: readonly AuditEventInput[]): Map<string, JsonObject> {
  const runs = new Map<string, JsonObject>()
  for (const e of events)
    if (isJsonObject(e.payload.node_run)) runs.set(e.payload.node_run.node_id as string, e.payload.node_run)
  return runs
}

function sessionOf(events: readonly AuditEventInput[], id: string): JsonObject {
  const row: JsonObject = {}
  for (const e of events)
    if (e.session_id === id && isJsonObject(e.payload.session)) Object.assign(row, e.payload.session)
  return row
}

describe('historyOutcome', () => {
  it('tells an interrupt from an error although ComfyUI stores both as "error"', () => {
    const interrupted = FULL_HISTORY[INTERRUPTED]
    const failed = FULL_HISTORY[RUNTIME_ERROR]
    expect(interrupted?.status?.status_str).toBe('error')
    expect(interrupted && historyOutcome(interrupted)).toMatchObject({
      status: 'interrupted',
      cached_nodes: ['1', '2', '3', '4', '6'],
    })
    expect(failed && historyOutcome(failed)).toMatchObject({
      status: 'error',
      error: { node_id: '7', exception_type: 'ValueError' },
    })
    const ok = FULL_HISTORY[PIPELINE]
    expect(ok && historyOutcome(ok)).toMatchObject({
      status: 'success',
      number: 0,
      started_ms: 1795665242682,
      ended_ms: 1795665242903,
    })
  })
})

describe('reconcileSessions with recorded history', () => {
  it('closes a session whose node was running when the gap began, with the history error', () => {
    const running = {
      session_id: RUNTIME_ERROR,
      node_id: '7',
      node_type: 'AuditFail',
      timestamp_start: '2026-11-26T04:34:04.393Z',
      timestamp_end: null,
      duration_ms: null,
      inputs: {},
      outputs: null,
      error_message: null,
      exception_type: null,
      traceback: null,
      gpu_memory_used: 689,
      gpu_memory_torch: 32,
      display_node: '7',
      real_node_id: '7',
      parent_node_id: null,
      progress: { value: 0, max: 1 },
    }
    const result = reconcileSessions({
      open: [
        open(RUNTIME_ERROR, {
          status: 'running',
          started_at: '2026-11-26T04:34:04.378Z',
          running_nodes: [running],
          recorded_nodes: ['1', '2', '6', '3', '4'],
        }),
      ],
      history: FULL_HISTORY,
      queue: { queue_running: [], queue_pending: [] },
      timeMs: T,
    })
    expect(result.closed).toEqual([RUNTIME_ERROR])
    const runs = runsOf(result.events)
    expect([...runs.keys()]).toEqual(['7'])
    expect(runs.get('7')).toMatchObject({
      status: 'error',
      error_message: 'planned failure in node 7\n',
      exception_type: 'ValueError',
      timestamp_end: null,
      gpu_memory_used: 689,
    })
    const s = sessionOf(result.events, RUNTIME_ERROR)
    expect(s).toMatchObject({
      status: 'error',
      flags: ['reconciled'],
      started_at: '2026-11-26T04:34:04.378Z',
      error: { exception_message: 'planned failure in node 7\n' },
    })
    expect(result.events.at(-1)?.kind).toBe('session.reconciled')
  })

  it('records cached and interrupted nodes from history for a session whose run was never seen', () => {
    const result = reconcileSessions({
      open: [open(INTERRUPTED)],
      history: FULL_HISTORY,
      queue: null,
      timeMs: T,
    })
    const runs = runsOf(result.events)
    expect(Object.fromEntries([...runs].map(([id, r]) => [id, r.status]))).toEqual({
      7: 'interrupted',
      1: 'cached',
      2: 'cached',
      3: 'cached',
      4: 'cached',
      6: 'cached',
    })
    expect(runs.get('7')?.node_type).toBe('AuditSlowProgress')
    expect(runs.get('3')).toMatchObject({
      node_type: 'ImageBlur',
      duration_ms: 0,
      inputs: { image: { node: '2', output: 0 }, blur_radius: 3 },
    })
    expect(sessionOf(result.events, INTERRUPTED)).toMatchObject({ status: 'interrupted', number: 13 })
  })

  it('takes outputs and times of a successful run from history', () => {
    const result = reconcileSessions({
      open: [open(PIPELINE)],
      history: FULL_HISTORY,
      queue: null,
      timeMs: T,
    })
    const s = sessionOf(result.events, PIPELINE)
    expect(s).toMatchObject({
      status: 'success',
      started_at: new Date(1795665242682).toISOString(),
      ended_at: new Date(1795665242903).toISOString(),
      duration_ms: 221,
    })
    expect(s.outputs).toEqual(
      expect.arrayContaining([
        { filename: 'pipeline_00001_.png', subfolder: 'audit', type: 'output', node_id: '5' },
      ]),
    )
  })

  it('marks an accepted session lost only when ComfyUI neither queues nor remembers it', () => {
    const empty = { queue_running: [], queue_pending: [] }
    const lost = reconcileSessions({
      open: [open('gone')],
      history: {},
      queue: empty,
      timeMs: T,
      comfyRestarted: true,
    })
    expect(lost.events.map((e) => e.kind)).toEqual(['session.lost'])
    // Issue 10 item 3: every lost carries the evidence it was decided on.
    expect(lost.events[0]!.payload.evidence).toEqual({
      queue_running: 0,
      queue_pending: 0,
      history_entries: 0,
      in_queue: false,
      in_history: false,
      accepted: true,
      comfy_restarted: true,
      decided_at: new Date(T).toISOString(),
    })
    expect(sessionOf(lost.events, 'gone')).toMatchObject({
      status: 'lost',
      status_reason: expect.stringContaining('restarted'),
    })
    const queued = reconcileSessions({
      open: [open('waiting')],
      history: {},
      queue: { queue_running: [], queue_pending: [[3, 'waiting', {}, {}, []]] },
      timeMs: T,
    })
    expect(queued.events).toEqual([])
    expect(
      reconcileSessions({ open: [open('unknown')], history: {}, queue: null, timeMs: T }).events,
    ).toEqual([])
    expect(
      reconcileSessions({
        open: [open('unanswered', { accepted: false })],
        history: {},
        queue: empty,
        timeMs: T,
      }).events,
    ).toEqual([])
  })
})

describe('bypassSessions', () => {
  it('records history entries that never passed the gateway, flagged bypass', () => {
    const sd15 = 'e61f1532-769a-44df-a23d-de6fa3276474'
    const sensitive = '2b97752a-9f51-4947-a2cc-106d1b93ca71'
    const events = bypassSessions({
      history: FULL_HISTORY,
      isKnown: (id) => id !== sd15 && id !== sensitive,
      timeMs: T,
    })
    expect(events.filter((e) => e.kind === 'session.bypass').map((e) => e.session_id)).toEqual([
      sensitive,
      sd15,
    ])
    const s = sessionOf(events, sd15)
    expect(s).toMatchObject({
      status: 'success',
      flags: ['bypass'],
      number: 23,
      client_id: 'client-a-c1a13554',
      submitter: null,
    })
    expect(s.seeds).toEqual([{ node_id: '6', input_name: 'seed', value: 44 }])
    expect(s.models).toEqual([
      { folder: 'checkpoints', name: 'audit-sd15-random.safetensors', node_id: '1', input_name: 'ckpt_name' },
    ])
    expect(typeof s.prompt_sha256).toBe('string')
    expect(sessionOf(events, sensitive).queued_at).toBe(new Date(1795665259000).toISOString())
  })
})

describe('capture.reconcile', () => {
  it('closes the session left open by a gap and emits its held cached records', async () => {
    const events: AuditEventInput[] = []
    let clock = 0
    const capture = createCapture({
      now: () => clock,
      emit: (b) => events.push(...b),
      gpuSampleIntervalMillis: 0,
    })
    const steps = replaySteps(ROWS, { clients: { A: 'gw:A' }, scenarios: ['runtime_error_custom_node'] })
    const cut = steps.findIndex(
      (s) => s.kind === 'frame' && String(s.call.frame.raw).includes('"execution_error"'),
    )
    for (const step of steps.slice(0, cut)) {
      clock = step.at
      applyStep(capture, step)
    }
    await capture.flush()
    const [session] = capture.openSessions()
    expect(session).toMatchObject({ session_id: RUNTIME_ERROR, status: 'running', accepted: true })
    expect(session?.running_nodes.map((n) => n.node_id)).toEqual(['7'])
    const historyRow = ROWS.find((r: TraceRow) => r.kind === 'http' && r.path === `/history/${RUNTIME_ERROR}`)
    capture.reconcile({ history: historyRow?.response ?? null, queue: null, isKnown: () => true })
    await capture.flush()
    const runs = runsOf(events)
    expect(Object.fromEntries([...runs].map(([id, r]) => [id, r.status]))).toEqual({
      1: 'cached',
      2: 'cached',
      6: 'cached',
      3: 'success',
      4: 'success',
      7: 'error',
    })
    expect(sessionOf(events, RUNTIME_ERROR)).toMatchObject({ status: 'error', flags: ['reconciled'] })
    expect(capture.openSessions()).toEqual([])
  })
})

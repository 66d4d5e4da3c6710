import { describe, expect, it } from 'vitest'
import { decodeEvent } from '../audit/decode-event.js'
import type { AuditEventInput, JsonObject, Submitter } from '../audit/types.js'
import { checkWith, isJsonObject, zWsMessage, type WsMessage } from '../comfyui/schemas.js'
import { usedMiB, type GpuSample } from './gpu-sampler.js'
import { analyzePromptBody } from './prompt-analysis.js'
import { submittedBody } from './prompt-exchange.js'
import { createSessionMachine, type MachineInput, type SessionMachine } from './session-machine.js'
import type { CaptureTap } from './tap.js'
import { applyStep, gpuReadings, readingAt, replaySteps, type TraceRow } from './trace-replay.js'
import { nodeRuns, session, statuses } from '../../test/helpers/captured-events.js'
import { fixtureEnvironment, fixtureTraceRows } from '../../test/helpers/fixture-trace.js'

const ROWS = fixtureTraceRows()
const READINGS = gpuReadings(ROWS)
const ENVIRONMENT = fixtureEnvironment(ROWS)
const CLIENTS = { A: 'gw:A', B: 'gw:B', C: 'gw:C', 'C-reconnected': 'gw:C', 'C-duplicate': 'gw:C' }
const SUBMITTER: Submitter = {
  user: 'alice',
  auth_method: 'token',
  client_address: null,
  user_agent: null,
  client_id: null,
}

function newMachine(): SessionMachine {
  return createSessionMachine({
    redactText: null,
    reportRedactedFiles: false,
    maxInputStringLength: 2048,
    pendingFrameTtlMillis: 60_000,
  })
}

/** What a run of the machine produced, every step's output concatenated. */
interface Run {
  readonly events: AuditEventInput[]
  readonly errors: unknown[]
  /** What the machine asked for: `environment` and `sample`, with the time of the frame. */
  readonly asked: string[]
}

/**
 * Drives a machine as the shell does, with no queue and no await: a message's needs are answered from the
 * fixture (the environment, the recorded GPU reading at the frame's time) and replays are fed back at once.
 */
function driver(machine: SessionMachine, sampleAt: (timeMs: number) => GpuSample | null) {
  const run: Run = { events: [], errors: [], asked: [] }
  const step = (input: MachineInput): void => {
    const result = machine.step(input)
    run.events.push(...result.events)
    run.errors.push(...result.errors)
    for (const frame of result.replay) message(frame.msg, frame.timeMs, true)
  }
  const message = (msg: WsMessage, timeMs: number, replayed = false): void => {
    const needs = machine.needs(replayed ? { frame: { msg, timeMs } } : { msg })
    if (needs.environment) run.asked.push(`environment@${timeMs}`)
    if (needs.sample) run.asked.push(`sample@${timeMs}`)
    const res = {
      environment: needs.environment ? ENVIRONMENT : null,
      sample: needs.sample ? sampleAt(timeMs) : null,
    }
    if (replayed) step({ type: 'replayed', frame: { msg, timeMs }, ...res })
    else step({ type: 'message', msg, timeMs, ...res })
  }
  const tap: CaptureTap = {
    promptSubmitted(call) {
      step({ type: 'submitted', call, analysis: analyzePromptBody(submittedBody(call), {}) })
    },
    promptAnswered: (call) => step({ type: 'answered', call }),
    promptRefused: (call) => step({ type: 'refused', call }),
    action: (call) => step({ type: 'action', call }),
    frame({ frame, timeMs, upstreamClientId }) {
      if (frame.isBinary) {
        if (frame.preview) step({ type: 'preview', preview: frame.preview, upstreamClientId })
        return
      }
      const checked = frame.checked()
      if (checked.ok) message(checked.message, timeMs)
    },
  }
  return { run, step, message, tap }
}

function replayScenario(scenario: string): Run {
  const d = driver(newMachine(), (timeMs) => readingAt(READINGS, timeMs))
  for (const s of replaySteps(ROWS, {
    clients: CLIENTS,
    injectedClientId: 'gw:injected',
    scenarios: [scenario],
  }))
    applyStep(d.tap, s)
  return d.run
}

function promptIdOf(scenario: string): string {
  const post = ROWS.find(
    (r: TraceRow) =>
      r.scenario === scenario && r.kind === 'http' && r.path === '/prompt' && r.method === 'POST',
  )
  const response = post?.response
  if (!isJsonObject(response) || typeof response.prompt_id !== 'string')
    throw new Error(`no prompt in ${scenario}`)
  return response.prompt_id
}

function ws(type: string, data: JsonObject): WsMessage {
  const checked = checkWith(zWsMessage, { type, data })
  if (!checked.ok) throw new Error(checked.reason)
  return checked.value
}

function submit(d: ReturnType<typeof driver>, promptId: string, timeMs: number): void {
  const body = Buffer.from(JSON.stringify({ prompt: { '1': { class_type: 'LoadImage', inputs: {} } } }))
  d.tap.promptSubmitted({
    promptId,
    upstreamClientId: 'gw:A',
    clientId: null,
    body,
    forwardedBody: body,
    submitter: SUBMITTER,
    timeMs,
  })
  d.tap.promptAnswered({ promptId, status: 200, body: Buffer.from('{"number":0,"node_errors":{}}'), timeMs })
}

const MIB = 1024 * 1024
const sampleOf = (usedMib: number, torchMib: number): GpuSample => ({
  vram_total: 8192 * MIB,
  vram_free: (8192 - usedMib) * MIB,
  torch_vram_total: torchMib * MIB,
})

describe('the session machine on the recorded ComfyUI 0.8 traffic', () => {
  it('folds the image pipeline into six successful node runs and one finished session', () => {
    const { events, errors } = replayScenario('image_pipeline')
    const id = 'fixed-3189cedb6bec'
    expect(errors).toEqual([])
    expect(statuses(nodeRuns(events, id))).toEqual({
      1: 'success',
      2: 'success',
      3: 'success',
      4: 'success',
      5: 'success',
      6: 'success',
    })
    expect(nodeRuns(events, id).get('3')?.node_type).toBe('ImageBlur')
    expect(session(events, id)).toMatchObject({ status: 'success', http_status: 200, client_id: 'gw:A' })
    expect(session(events, id).environment).toMatchObject({ comfyui_version: ENVIRONMENT.comfyui_version })
    const kinds = events.filter((e) => e.session_id === id).map((e) => e.kind)
    expect(kinds.slice(0, 3)).toEqual(['prompt.submitted', 'prompt.accepted', 'execution.started'])
    expect(kinds.at(-1)).toBe('execution.finished')
    expect(events.filter((e) => e.kind === 'environment.snapshot')).toHaveLength(1)
  })

  it('builds every event so that the one decoder reads it back as its kind', () => {
    const events = ['image_pipeline', 'runtime_error_custom_node', 'interrupt', 'queue_and_clients'].flatMap(
      (s) => replayScenario(s).events,
    )
    expect(new Set(events.map((e) => e.kind)).size).toBeGreaterThan(8)
    events.forEach((e, seq) => {
      const decoded = decodeEvent({ ...e, origin: 'test', seq })
      expect(decoded.ok ? decoded.event.kind : decoded.reason).toBe(e.kind)
    })
  })

  it('records cached nodes as cached with zero duration, and no GPU reading for them', () => {
    const id = promptIdOf('image_pipeline_partly_cached')
    const runs = nodeRuns(replayScenario('image_pipeline_partly_cached').events, id)
    expect(runs.get('1')).toMatchObject({ status: 'cached', duration_ms: 0, gpu_memory_used: null })
    expect(runs.get('3')?.status).toBe('success')
  })

  it('closes the failing node with its error and the session as error', () => {
    const id = promptIdOf('runtime_error_custom_node')
    const { events } = replayScenario('runtime_error_custom_node')
    expect(nodeRuns(events, id).get('7')).toMatchObject({
      status: 'error',
      exception_type: 'ValueError',
      error_message: 'planned failure in node 7\n',
      node_type: 'AuditFail',
    })
    expect(session(events, id).status).toBe('error')
    expect(events.find((e) => e.kind === 'execution.finished')?.payload.error_node).toBe('7')
  })

  it('closes the running node of an interrupted prompt as interrupted, with its last progress', () => {
    const id = promptIdOf('interrupt')
    const { events } = replayScenario('interrupt')
    expect(nodeRuns(events, id).get('7')).toMatchObject({
      status: 'interrupted',
      progress: { value: 5, max: 40 },
    })
    expect(session(events, id).status).toBe('interrupted')
  })

  it('attributes the 4 GiB a node allocated to that node from the samples it asked for', () => {
    const id = promptIdOf('gpu_memory')
    const start = ROWS.find((r) => r.scenario === 'gpu_memory' && r.kind === 'scenario_start') as TraceRow
    const baseline = readingAt(READINGS, start.wall * 1000) as GpuSample
    const run = nodeRuns(replayScenario('gpu_memory').events, id).get('7')
    expect(run?.node_type).toBe('AuditGpuAlloc')
    expect(Math.abs((run?.gpu_memory_used as number) - usedMiB(baseline) - 4096)).toBeLessThan(64)
  })
})

describe('the session machine, frame by frame', () => {
  it('asks for the environment once, when a frame starts the session, and a sample at each node transition', () => {
    const d = driver(newMachine(), () => sampleOf(1000, 500))
    submit(d, 'p1', 1000)
    d.message(ws('execution_start', { prompt_id: 'p1', timestamp: 1 }), 1100)
    d.message(ws('executing', { node: '1', display_node: '1', prompt_id: 'p1' }), 1200)
    d.message(ws('progress', { value: 1, max: 2, prompt_id: 'p1', node: '1' }), 1250)
    d.message(ws('execution_success', { prompt_id: 'p1', timestamp: 2 }), 1300)
    expect(d.run.asked).toEqual(['environment@1100', 'sample@1200', 'sample@1300'])
    expect(d.run.errors).toEqual([])
  })

  it('attaches the highest GPU reading seen while a node ran, timer samples included', () => {
    const samples = [sampleOf(1000, 500), sampleOf(1500, 700)]
    const d = driver(newMachine(), () => samples.shift() ?? null)
    submit(d, 'p1', 1000)
    d.message(ws('executing', { node: '1', display_node: '1', prompt_id: 'p1' }), 1200)
    d.step({ type: 'sample', sample: sampleOf(3000, 2000) })
    d.message(ws('execution_success', { prompt_id: 'p1', timestamp: 2 }), 1300)
    const run = nodeRuns(d.run.events, 'p1').get('1')
    expect(run).toMatchObject({ status: 'success', gpu_memory_used: 3000, gpu_memory_torch: 2000 })
    expect(run?.duration_ms).toBe(100)
  })

  it('holds a frame that arrives before its prompt is submitted, and folds it once the submission comes', () => {
    const machine = newMachine()
    const d = driver(machine, () => null)
    const early = machine.step({
      type: 'message',
      msg: ws('execution_start', { prompt_id: 'p2', timestamp: 1 }),
      timeMs: 900,
      environment: null,
      sample: null,
    })
    expect(early.events).toEqual([])
    submit(d, 'p2', 1000)
    expect(d.run.events.map((e) => e.kind)).toEqual([
      'prompt.submitted',
      'environment.snapshot',
      'execution.started',
      'prompt.accepted',
    ])
    expect(session(d.run.events, 'p2').started_at).toBe(new Date(900).toISOString())
    expect(d.run.asked).toEqual(['environment@900'])
  })

  it('records an error without a running node as an error run of unknown start', () => {
    const d = driver(newMachine(), () => null)
    submit(d, 'p3', 1000)
    d.message(ws('execution_start', { prompt_id: 'p3', timestamp: 1 }), 1100)
    d.message(
      ws('execution_error', {
        prompt_id: 'p3',
        node_id: '1',
        node_type: 'LoadImage',
        exception_message: 'no such file',
        exception_type: 'FileNotFoundError',
        traceback: ['line 1'],
        executed: [],
        current_inputs: {},
        current_outputs: {},
        timestamp: 2,
      }),
      1200,
    )
    const run = nodeRuns(d.run.events, 'p3').get('1')
    expect(run).toMatchObject({ status: 'error', exception_type: 'FileNotFoundError', duration_ms: null })
    expect(session(d.run.events, 'p3')).toMatchObject({ status: 'error', duration_ms: 100 })
    // The session is closed: a late frame of it changes nothing.
    d.message(ws('executing', { node: '2', display_node: '2', prompt_id: 'p3' }), 1300)
    expect(d.run.events.at(-1)?.kind).toBe('execution.finished')
  })

  it('knows a submitted prompt id at once, and a claimed one', () => {
    const machine = newMachine()
    expect(machine.isKnown('p4')).toBe(false)
    submit(
      driver(machine, () => null),
      'p4',
      1000,
    )
    expect(machine.isKnown('p4')).toBe(true)
    expect(machine.openSessions().map((s) => s.session_id)).toEqual(['p4'])
  })
})

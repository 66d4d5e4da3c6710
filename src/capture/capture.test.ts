import { afterEach, describe, expect, it, vi } from 'vitest'
import { canonicalJson, sha256Hex, stringifyJson } from '../audit/json.js'
import type {
  AuditEventInput,
  EnvironmentSnapshot,
  JsonObject,
  JsonValue,
  Submitter,
} from '../audit/types.js'
import { zRedactionConfig } from '../config/security-config.js'
import { createRedactor } from '../identity/redaction.js'
import { createCapture, type Capture, type CaptureOptions } from './capture.js'
import { usedMiB } from './gpu-sampler.js'
import { REDACTED } from './prompt-analysis.js'
import { isJsonObject } from '../comfyui/schemas.js'
import {
  applyStep,
  gpuReadings,
  readingAt,
  replaySteps,
  type ReplayOptions,
  type ReplayStep,
  type TraceRow,
} from './trace-replay.js'
import { nodeRuns, session, statuses } from '../../test/helpers/captured-events.js'
import { fixtureEnvironment, fixtureTraceRows } from '../../test/helpers/fixture-trace.js'
import { parseUpstreamFrame } from '../comfyui/frames.js'

const ROWS = fixtureTraceRows()
const READINGS = gpuReadings(ROWS)

const ENVIRONMENT = fixtureEnvironment(ROWS)

const CLIENTS = { A: 'gw:A', B: 'gw:B', C: 'gw:C', 'C-reconnected': 'gw:C', 'C-duplicate': 'gw:C' }

interface Run {
  readonly events: AuditEventInput[]
  readonly errors: unknown[]
  readonly capture: Capture
}

function rowsOf(...scenarios: string[]): TraceRow[] {
  return ROWS.filter((r) => scenarios.includes(r.scenario))
}

function newCapture(
  clock: { now: number },
  events: AuditEventInput[],
  errors: unknown[],
  extra: Partial<CaptureOptions> = {},
): Capture {
  return createCapture({
    origin: 'test',
    now: () => clock.now,
    emit: (batch) => events.push(...batch),
    sampleGpu: async () => readingAt(READINGS, clock.now),
    environment: async () => ENVIRONMENT,
    onError: (err) => errors.push(err),
    gpuSampleIntervalMillis: 0,
    ...extra,
  })
}

async function feed(capture: Capture, clock: { now: number }, steps: readonly ReplayStep[]): Promise<void> {
  for (const step of steps) {
    clock.now = step.at
    applyStep(capture, step)
    await capture.flush()
  }
}

async function replay(scenarios: string[], options: Partial<ReplayOptions> = {}): Promise<Run> {
  const clock = { now: 0 }
  const events: AuditEventInput[] = []
  const errors: unknown[] = []
  const capture = newCapture(clock, events, errors)
  await feed(
    capture,
    clock,
    replaySteps(ROWS, { clients: CLIENTS, injectedClientId: 'gw:injected', scenarios, ...options }),
  )
  return { events, errors, capture }
}

function promptIdOf(scenario: string, index = 0): string {
  const posts = rowsOf(scenario).filter(
    (r) => r.kind === 'http' && r.path === '/prompt' && r.method === 'POST',
  )
  const response = posts[index]?.response
  if (!isJsonObject(response) || typeof response.prompt_id !== 'string')
    throw new Error(`no prompt ${index} in ${scenario}`)
  return response.prompt_id
}

function allJson(events: readonly AuditEventInput[]): string {
  return events.map((e) => stringifyJson(e.payload)).join('\n')
}

describe('capture on the recorded ComfyUI 0.8 traffic', () => {
  it('records six successful node runs of the image pipeline with plausible timings', async () => {
    const { events, errors } = await replay(['image_pipeline'])
    const id = 'fixed-3189cedb6bec'
    const runs = nodeRuns(events, id)
    expect(statuses(runs)).toEqual({
      1: 'success',
      2: 'success',
      3: 'success',
      4: 'success',
      5: 'success',
      6: 'success',
    })
    for (const run of runs.values()) {
      const start = Date.parse(run.timestamp_start as string)
      const end = Date.parse(run.timestamp_end as string)
      expect(run.duration_ms).toBe(end - start)
      expect(run.duration_ms).toBeGreaterThanOrEqual(0)
      expect(run.duration_ms).toBeLessThan(1000)
    }
    // ImageBlur ran from 583.7 ms to 758.3 ms of the recording.
    expect(runs.get('3')?.duration_ms).toBeGreaterThan(150)
    expect(runs.get('3')?.node_type).toBe('ImageBlur')
    expect(runs.get('3')?.inputs).toEqual({ image: { node: '2', output: 0 }, blur_radius: 3, sigma: 1 })
    expect(runs.get('5')?.outputs).toEqual({
      images: [{ filename: 'pipeline_00001_.png', subfolder: 'audit', type: 'output' }],
    })
    const s = session(events, id)
    expect(s.status).toBe('success')
    expect(s.http_status).toBe(200)
    expect(s.number).toBe(0)
    expect(s.client_id).toBe('gw:A')
    expect(s.prompt_sha256).toBe(sha256Hex(canonicalJson(s.prompt ?? null)))
    expect(s.workflow_sha256).toBe(sha256Hex(canonicalJson(s.workflow ?? null)))
    expect(isJsonObject(s.workflow) && s.workflow.last_node_id).toBe(6)
    expect(s.environment).toMatchObject({
      comfyui_version: '0.8.0',
      gpu_name: 'NVIDIA H200',
      custom_node_packs: ['audit_fixture_nodes', 'websocket_image_save'],
    })
    expect(s.outputs).toEqual([
      { filename: 'ComfyUI_temp_xoxih_00001_.png', subfolder: '', type: 'temp', node_id: '6' },
      { filename: 'pipeline_00001_.png', subfolder: 'audit', type: 'output', node_id: '5' },
    ])
    expect(Date.parse(s.ended_at as string) - Date.parse(s.started_at as string)).toBe(s.duration_ms)
    const kinds = events.filter((e) => e.session_id === id).map((e) => e.kind)
    expect(kinds[0]).toBe('prompt.submitted')
    expect(kinds.at(-1)).toBe('execution.finished')
    expect(kinds.filter((k) => k === 'node.finished')).toHaveLength(6)
    expect(events.filter((e) => e.kind === 'environment.snapshot')).toHaveLength(1)
    expect(errors).toEqual([])
  })

  it('records every node of a fully cached re-run as cached with zero duration', async () => {
    const { events } = await replay(['image_pipeline_fully_cached'])
    const runs = nodeRuns(events, promptIdOf('image_pipeline_fully_cached'))
    expect(statuses(runs)).toEqual({
      1: 'cached',
      2: 'cached',
      3: 'cached',
      4: 'cached',
      5: 'cached',
      6: 'cached',
    })
    for (const run of runs.values()) {
      expect(run.duration_ms).toBe(0)
      expect(run.timestamp_end).toBe(run.timestamp_start)
    }
    // Cached output nodes replay their UI output.
    expect(runs.get('5')?.outputs).toEqual({
      images: [{ filename: 'pipeline_00001_.png', subfolder: 'audit', type: 'output' }],
    })
    expect(session(events, promptIdOf('image_pipeline_fully_cached')).status).toBe('success')
  })

  it('tells cached from executed nodes in a partly cached run', async () => {
    const { events } = await replay(['image_pipeline_partly_cached'])
    const runs = nodeRuns(events, promptIdOf('image_pipeline_partly_cached'))
    expect(statuses(runs)).toEqual({
      1: 'cached',
      2: 'cached',
      6: 'cached',
      3: 'success',
      4: 'success',
      5: 'success',
    })
  })

  it('records refused prompts as rejected sessions and keeps node_errors of an accepted one', async () => {
    const { events } = await replay(['validation_errors'])
    const submitted = events.filter((e) => e.kind === 'prompt.submitted').map((e) => e.session_id as string)
    expect(submitted).toHaveLength(5)
    const rejected = submitted.filter((id) => session(events, id).status === 'rejected')
    expect(rejected.map((id) => session(events, id).http_status)).toEqual([400, 400, 500, 400])
    expect(events.filter((e) => e.kind === 'prompt.rejected')).toHaveLength(4)
    const first = session(events, rejected[0] as string)
    expect(first.validation).toMatchObject({
      error: { type: 'prompt_outputs_failed_validation' },
      node_errors: { 1: { class_type: 'LoadImage' } },
    })
    expect(session(events, rejected[2] as string).validation).toBe(
      '500 Internal Server Error\n\nServer got itself in trouble',
    )
    expect(session(events, rejected[2] as string).prompt).toBe('not a graph')
    expect(session(events, rejected[3] as string).prompt).toBeNull()
    const accepted = submitted.filter((id) => session(events, id).http_status === 200)
    expect(accepted).toEqual(['75ce9965-24bf-44be-ab06-136744588153'])
    const acceptedEvent = events.find((e) => e.kind === 'prompt.accepted' && e.session_id === accepted[0])
    expect(acceptedEvent?.payload.node_errors).toMatchObject({ 3: { class_type: 'ImageBlur' } })
    const s = session(events, accepted[0] as string)
    expect(s.validation).toMatchObject({
      node_errors: { 3: { errors: [{ type: 'value_bigger_than_max' }] } },
    })
    expect(s.status).toBe('success')
    expect(statuses(nodeRuns(events, accepted[0] as string))).toEqual({
      1: 'cached',
      2: 'cached',
      6: 'cached',
    })
  })

  it('records the failing custom node with its message, exception type and traceback', async () => {
    const { events } = await replay(['runtime_error_custom_node'])
    const id = promptIdOf('runtime_error_custom_node')
    const runs = nodeRuns(events, id)
    expect(statuses(runs)).toEqual({
      1: 'cached',
      2: 'cached',
      6: 'cached',
      3: 'success',
      4: 'success',
      7: 'error',
    })
    const failed = runs.get('7') as JsonObject
    expect(failed.error_message).toBe('planned failure in node 7\n')
    expect(failed.exception_type).toBe('ValueError')
    expect(Array.isArray(failed.traceback) && failed.traceback.length).toBeGreaterThan(0)
    expect(failed.node_type).toBe('AuditFail')
    expect(failed.timestamp_end).not.toBeNull()
    const s = session(events, id)
    expect(s.status).toBe('error')
    expect(s.error).toMatchObject({ node_id: '7', exception_type: 'ValueError' })
  })

  it('records a core node failing on a corrupt checkpoint', async () => {
    const { events } = await replay(['runtime_error_corrupt_checkpoint'])
    const id = promptIdOf('runtime_error_corrupt_checkpoint')
    const runs = nodeRuns(events, id)
    expect(statuses(runs)).toEqual({ 1: 'error' })
    expect(runs.get('1')?.exception_type).toBe('safetensors._safetensors_rust.SafetensorError')
    expect(runs.get('1')?.error_message).toBe('Error while deserializing header: header too large\n')
    expect(session(events, id).models).toEqual([
      { folder: 'checkpoints', name: 'corrupt-model.safetensors', node_id: '1', input_name: 'ckpt_name' },
    ])
  })

  it('attributes the 4 GiB a node allocated to that node', async () => {
    const { events } = await replay(['gpu_memory'])
    const runs = nodeRuns(events, promptIdOf('gpu_memory'))
    const start = rowsOf('gpu_memory').find((r) => r.kind === 'scenario_start') as TraceRow
    const baseline = readingAt(READINGS, start.wall * 1000)
    expect(baseline).not.toBeNull()
    const used = runs.get('7')?.gpu_memory_used as number
    expect(Math.abs(used - usedMiB(baseline as NonNullable<typeof baseline>) - 4096)).toBeLessThan(64)
    expect(Math.abs((runs.get('7')?.gpu_memory_torch as number) - 4096)).toBeLessThan(64)
    expect(runs.get('7')?.node_type).toBe('AuditGpuAlloc')
    // Cached nodes never ran: no reading belongs to them.
    expect(runs.get('1')?.gpu_memory_used).toBeNull()
  })

  it('folds progress into the node record without an event per frame', async () => {
    const { events } = await replay(['progress_events'])
    const id = promptIdOf('progress_events')
    const runs = nodeRuns(events, id)
    expect(runs.get('7')?.progress).toEqual({ value: 15, max: 15 })
    expect(runs.get('7')?.duration_ms).toBeGreaterThan(1400)
    const frames = rowsOf('progress_events').filter((r) => r.kind === 'ws' && r.client === 'A').length
    const sessionEvents = events.filter((e) => e.session_id === id)
    expect(sessionEvents.length).toBeLessThan(frames / 2)
    expect(sessionEvents.map((e) => e.kind)).not.toContain('node.progress')
  })

  it('records an interrupt: the running node and the session end interrupted', async () => {
    const { events } = await replay(['interrupt'])
    const id = promptIdOf('interrupt')
    const runs = nodeRuns(events, id)
    expect(runs.get('7')?.status).toBe('interrupted')
    expect(runs.get('7')?.progress).toEqual({ value: 5, max: 40 })
    expect(session(events, id).status).toBe('interrupted')
    const interrupt = events.find((e) => e.kind === 'action.interrupt')
    expect(interrupt?.session_id).toBe(id)
    expect(interrupt?.payload).toMatchObject({ scope: 'prompt', prompt_id: id, submitter: { user: 'local' } })
  })

  it('cancels a prompt deleted from the queue and keeps the others', async () => {
    const { events, capture } = await replay(['queue_and_clients'])
    const deleted = '23805575-fb90-41c7-a390-a94c10eab41b'
    expect(session(events, deleted)).toMatchObject({
      status: 'cancelled',
      status_reason: 'deleted from the queue by local',
    })
    expect(events.filter((e) => e.kind === 'action.queue_delete')[0]?.payload.prompt_ids).toEqual([deleted])
    for (const id of [
      '3c0bfbdd-321c-4432-ae4b-ca9f6ce4763c',
      '5e0a26d9-1f95-4041-8803-7c61929a7dfd',
      '17813279-db48-45e0-bc63-e502347fcacc',
    ]) {
      expect(session(events, id).status).toBe('success')
    }
    expect(session(events, '5e0a26d9-1f95-4041-8803-7c61929a7dfd').number).toBe(-17)
    expect(session(events, '17813279-db48-45e0-bc63-e502347fcacc').client_id).toBe('gw:B')
    // The prompt without a client id gets only broadcast progress_state frames: it ran, but no end was seen.
    const blind = '64a78578-f02b-4f1c-8a25-e4153624879f'
    expect(session(events, blind).status).toBe('running')
    expect(nodeRuns(events, blind).get('7')?.status).toBe('success')
    expect(capture.openSessions().map((s) => s.session_id)).toEqual([blind])
  })

  it('keeps one record per node across a client reconnect and a duplicate socket', async () => {
    const { events } = await replay(['reconnect_and_duplicate_client_id'])
    const id = promptIdOf('reconnect_and_duplicate_client_id')
    const runs = nodeRuns(events, id)
    expect(statuses(runs)).toEqual({
      1: 'cached',
      2: 'cached',
      3: 'cached',
      4: 'cached',
      6: 'cached',
      7: 'success',
      5: 'success',
    })
    expect(runs.get('7')?.duration_ms).toBeGreaterThan(2900)
    expect(
      events.filter((e) => e.session_id === id && e.kind === 'node.started').map((e) => e.payload.node_id),
    ).toEqual(['7', '5'])
  })

  it('never stores the comfy.org secrets, not even in a hash', async () => {
    const { events } = await replay(['sensitive_extra_data'])
    const text = allJson(events)
    expect(text).toContain(REDACTED)
    expect(text).not.toContain('secret-api-key-value')
    expect(text).not.toContain('secret-token')
    expect(text).not.toContain(sha256Hex('secret-api-key-value'))
    const s = session(events, promptIdOf('sensitive_extra_data'))
    expect(s.extra_data).toMatchObject({ api_key_comfy_org: REDACTED, auth_token_comfy_org: REDACTED })
  })

  it('records seeds and models of the SD1.5 runs exactly', async () => {
    const { events } = await replay(['sd15_model_workflow'])
    const ids = [0, 1, 2].map((i) => promptIdOf('sd15_model_workflow', i))
    expect(ids.map((id) => session(events, id).seeds)).toEqual([
      [{ node_id: '6', input_name: 'seed', value: 42 }],
      [{ node_id: '6', input_name: 'seed', value: 43 }],
      [{ node_id: '6', input_name: 'seed', value: 44 }],
    ])
    expect(session(events, ids[0] as string).models).toEqual([
      { folder: 'checkpoints', name: 'audit-sd15-random.safetensors', node_id: '1', input_name: 'ckpt_name' },
      { folder: 'loras', name: 'audit-style-lora.safetensors', node_id: '2', input_name: 'lora_name' },
    ])
    expect(
      (session(events, ids[2] as string).models as JsonValue[]).map((m) => isJsonObject(m) && m.folder),
    ).toEqual(['checkpoints'])
    for (const id of ids) expect(session(events, id).status).toBe('success')
    expect(nodeRuns(events, ids[0] as string).get('6')?.node_type).toBe('KSampler')
  })

  it('keeps a 2^64-1 seed exact', async () => {
    const max = 18446744073709551615n
    const { events } = await replay(['sd15_model_workflow'], {
      rewriteRequest: (request) => plantSeed(request, max),
    })
    const id = promptIdOf('sd15_model_workflow', 2)
    expect(session(events, id).seeds).toEqual([{ node_id: '6', input_name: 'seed', value: max }])
    expect(nodeRuns(events, id).get('6')?.inputs).toMatchObject({ seed: max })
    expect(stringifyJson(session(events, id).prompt ?? null)).toContain('"seed":18446744073709551615')
  })

  it('replays frames that arrive before their prompt is submitted', async () => {
    const steps = replaySteps(ROWS, { clients: CLIENTS, scenarios: ['image_pipeline'] })
    const submit = steps.findIndex((s) => s.kind === 'submitted')
    const firstFrame = steps.findIndex(
      (s) => s.kind === 'frame' && String(s.call.frame.raw).includes('fixed-3189cedb6bec'),
    )
    const late = [...steps]
    const [submitted] = late.splice(submit, 1)
    late.splice(firstFrame + 5, 0, submitted as ReplayStep)
    const clock = { now: 0 }
    const events: AuditEventInput[] = []
    const capture = newCapture(clock, events, [])
    await feed(capture, clock, late)
    const runs = nodeRuns(events, 'fixed-3189cedb6bec')
    expect(statuses(runs)).toEqual({
      1: 'success',
      2: 'success',
      3: 'success',
      4: 'success',
      5: 'success',
      6: 'success',
    })
    expect(session(events, 'fixed-3189cedb6bec').status).toBe('success')
  })

  it('corrects a session reconciliation closed as lost when ComfyUI later finishes it (issue 10 item 3)', async () => {
    const steps = replaySteps(ROWS, { clients: CLIENTS, scenarios: ['image_pipeline'] })
    const id = 'fixed-3189cedb6bec'
    const answered = steps.findIndex((s) => s.kind === 'answered' && s.call.promptId === id)
    const clock = { now: 0 }
    const events: AuditEventInput[] = []
    const capture = newCapture(clock, events, [])
    await feed(capture, clock, steps.slice(0, answered + 1))
    capture.reconcile({ history: {}, queue: { queue_running: [], queue_pending: [] } })
    await capture.flush()
    expect(session(events, id).status).toBe('lost')
    await feed(capture, clock, steps.slice(answered + 1))
    const corrected = events.filter((e) => e.kind === 'session.corrected' && e.session_id === id)
    expect(corrected).toHaveLength(1)
    expect(corrected[0]!.payload).toMatchObject({ from: 'lost', to: 'success', source: 'socket' })
    expect(session(events, id).status).toBe('success')
  })

  it('closes the no-client prompt from the recorded history', async () => {
    const { events, capture } = await replay(['queue_and_clients'])
    const blind = '64a78578-f02b-4f1c-8a25-e4153624879f'
    const historyRow = rowsOf('queue_and_clients').find(
      (r) => r.kind === 'http' && r.path === `/history/${blind}`,
    )
    capture.reconcile({
      history: historyRow?.response ?? null,
      queue: { queue_running: [], queue_pending: [] },
    })
    await capture.flush()
    expect(session(events, blind)).toMatchObject({ status: 'success', flags: ['reconciled'] })
    // Node 6 was only seen finishing; history says it was a cached output node.
    expect(statuses(nodeRuns(events, blind))).toEqual({
      1: 'cached',
      2: 'cached',
      3: 'cached',
      4: 'cached',
      6: 'cached',
      7: 'success',
      5: 'success',
    })
    expect(capture.openSessions()).toEqual([])
  })
})

function plantSeed(request: JsonValue, seed: bigint): JsonValue {
  if (!isJsonObject(request) || !isJsonObject(request.prompt)) return request
  const node = request.prompt['6']
  if (!isJsonObject(node) || !isJsonObject(node.inputs) || node.inputs.seed !== 44) return request
  return { ...request, prompt: { ...request.prompt, 6: { ...node, inputs: { ...node.inputs, seed } } } }
}

// ---------------------------------------------------------------------------------------------------------
// Synthetic traffic for cases the recording does not contain.

const SUBMITTER: Submitter = {
  user: 'alice',
  auth_method: 'token',
  client_address: '10.0.0.2',
  user_agent: 'test',
  client_id: null,
}

function harness(extra: Partial<CaptureOptions> = {}) {
  const clock = { now: 1_800_000_000_000 }
  const events: AuditEventInput[] = []
  const errors: unknown[] = []
  const capture = newCapture(clock, events, errors, {
    sampleGpu: undefined,
    environment: undefined,
    ...extra,
  })
  const at = (ms: number) => {
    clock.now += ms
    return clock.now
  }
  const frame = (type: string, data: JsonObject, ms = 1) =>
    capture.frame({
      upstreamClientId: 'gw:x',
      frame: parseUpstreamFrame(stringifyJson({ type, data }), false),
      timeMs: at(ms),
    })
  const submit = (promptId: string, body: JsonValue) => {
    const bytes = Buffer.from(stringifyJson(body))
    capture.promptSubmitted({
      promptId,
      upstreamClientId: 'gw:x',
      clientId: 'tab-1',
      body: bytes,
      forwardedBody: bytes,
      submitter: SUBMITTER,
      timeMs: at(1),
    })
  }
  const answer = (promptId: string, status: number, body: JsonValue | string) =>
    capture.promptAnswered({
      promptId,
      status,
      body: Buffer.from(typeof body === 'string' ? body : stringifyJson(body)),
      timeMs: at(1),
    })
  const ps = (
    promptId: string,
    nodes: Record<string, [string, number, number, { real?: string; display?: string; parent?: string }?]>,
  ) =>
    frame('progress_state', {
      prompt_id: promptId,
      nodes: Object.fromEntries(
        Object.entries(nodes).map(([id, [state, value, max, ids]]) => [
          id,
          {
            value,
            max,
            state,
            node_id: id,
            prompt_id: promptId,
            display_node_id: ids?.display ?? id,
            parent_node_id: ids?.parent ?? null,
            real_node_id: ids?.real ?? id,
          },
        ]),
      ),
    })
  return { capture, events, errors, clock, frame, submit, answer, ps, at }
}

const GRAPH = {
  1: { class_type: 'LoadImage', inputs: { image: 'x.png' } },
  2: { class_type: 'ForLoop', inputs: { image: ['1', 0], text: 'y'.repeat(5000) } },
  3: { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'out' } },
}

describe('capture on synthetic traffic', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('keeps one record when a node gets a second executing (lazy inputs)', async () => {
    const h = harness()
    h.submit('p1', { prompt: GRAPH })
    h.answer('p1', 200, { prompt_id: 'p1', number: 1, node_errors: {} })
    h.frame('execution_start', { prompt_id: 'p1' })
    h.ps('p1', { 2: ['running', 0, 1] })
    h.frame('executing', { node: '2', display_node: '2', prompt_id: 'p1' })
    h.ps('p1', { 2: ['running', 0, 1], 1: ['running', 0, 1] })
    h.frame('executing', { node: '1', display_node: '1', prompt_id: 'p1' })
    h.ps('p1', { 2: ['running', 0, 1], 1: ['finished', 1, 1] })
    h.frame('executing', { node: '2', display_node: '2', prompt_id: 'p1' }, 50)
    h.ps('p1', { 2: ['finished', 1, 1], 1: ['finished', 1, 1] })
    h.frame('execution_success', { prompt_id: 'p1' })
    await h.capture.flush()
    const runs = nodeRuns(h.events, 'p1')
    expect(statuses(runs)).toEqual({ 1: 'success', 2: 'success' })
    expect(h.events.filter((e) => e.kind === 'node.started').map((e) => e.payload.node_id)).toEqual([
      '2',
      '1',
    ])
    expect(runs.get('2')?.duration_ms).toBeGreaterThanOrEqual(50)
    // Long literal inputs are summarised, links become {node, output}.
    expect(runs.get('2')?.inputs).toEqual({
      image: { node: '1', output: 0 },
      text: { truncated: true, length: 5000, sha256: sha256Hex('y'.repeat(5000)) },
    })
  })

  it('maps ephemeral node ids to their prompt node', async () => {
    const h = harness()
    h.submit('p2', { prompt: GRAPH })
    h.frame('execution_start', { prompt_id: 'p2' })
    h.ps('p2', { '2.0.0.1': ['running', 0, 1, { real: '2', display: '2', parent: '2' }] })
    h.frame('executing', { node: '2.0.0.1', display_node: '2', prompt_id: 'p2' })
    h.ps('p2', { '2.0.0.1': ['finished', 1, 1, { real: '2', display: '2', parent: '2' }] })
    h.frame('execution_success', { prompt_id: 'p2' })
    await h.capture.flush()
    const run = nodeRuns(h.events, 'p2').get('2.0.0.1')
    expect(run).toMatchObject({
      node_type: 'ForLoop',
      real_node_id: '2',
      display_node: '2',
      parent_node_id: '2',
      status: 'success',
      inputs: {},
    })
  })

  it('reports ExecutionBlocked without failing the run', async () => {
    const h = harness()
    h.submit('p3', { prompt: GRAPH })
    h.frame('execution_start', { prompt_id: 'p3' })
    h.frame('execution_error', {
      prompt_id: 'p3',
      node_id: '3',
      node_type: 'SaveImage',
      executed: [],
      exception_message: 'blocked by 2',
      exception_type: 'ExecutionBlocked',
      traceback: [],
      current_inputs: [],
      current_outputs: [],
    })
    h.frame('execution_success', { prompt_id: 'p3' })
    await h.capture.flush()
    expect(h.events.find((e) => e.kind === 'node.error_blocked')?.payload).toMatchObject({
      node_id: '3',
      exception_message: 'blocked by 2',
    })
    expect(session(h.events, 'p3').status).toBe('success')
  })

  it('closes a node that failed without ever being seen running', async () => {
    const h = harness()
    h.submit('p4', { prompt: GRAPH })
    h.frame('execution_start', { prompt_id: 'p4' })
    h.frame('execution_error', {
      prompt_id: 'p4',
      node_id: '1',
      node_type: 'LoadImage',
      executed: [],
      exception_message: 'boom',
      exception_type: 'RuntimeError',
      traceback: ['t'],
      current_inputs: {},
      current_outputs: [],
      timestamp: 1,
    })
    await h.capture.flush()
    expect(nodeRuns(h.events, 'p4').get('1')).toMatchObject({
      status: 'error',
      error_message: 'boom',
      duration_ms: null,
    })
    expect(session(h.events, 'p4').status).toBe('error')
  })

  it('records an unparseable body as text, redacted, and rejects it when ComfyUI refuses', async () => {
    const h = harness()
    const raw =
      '{"prompt": {"1": }, "extra_data": {"api_key_comfy_org": "sk-live-123", "auth_token_comfy_org": "tok-secret-xyz'
    h.capture.promptSubmitted({
      promptId: 'p5',
      upstreamClientId: 'gw:x',
      clientId: null,
      body: Buffer.from(raw),
      forwardedBody: Buffer.from(raw),
      submitter: SUBMITTER,
      timeMs: h.at(1),
    })
    h.answer('p5', 500, '500 Internal Server Error')
    await h.capture.flush()
    const submitted = h.events.find((e) => e.kind === 'prompt.submitted')
    expect(submitted?.payload.parse_error).toEqual(expect.any(String))
    expect(submitted?.payload.body_text).toContain(`"api_key_comfy_org": "${REDACTED}"`)
    expect(allJson(h.events)).not.toContain('sk-live-123')
    expect(allJson(h.events)).not.toContain('tok-secret')
    expect(session(h.events, 'p5')).toMatchObject({ status: 'rejected', http_status: 500, prompt: null })
  })

  it('records the submitter and the downstream client id', async () => {
    const h = harness()
    h.submit('p6', { prompt: GRAPH, client_id: 'tab-1' })
    await h.capture.flush()
    expect(session(h.events, 'p6').submitter).toEqual({ ...SUBMITTER, client_id: 'tab-1' })
    expect(session(h.events, 'p6').status).toBe('queued')
  })

  it('cancels queued sessions on a queue clear, not the running one', async () => {
    const h = harness()
    for (const id of ['q1', 'q2', 'q3']) {
      h.submit(id, { prompt: GRAPH })
      h.answer(id, 200, { prompt_id: id, number: 1, node_errors: {} })
    }
    h.frame('execution_start', { prompt_id: 'q1' })
    h.capture.action({
      kind: 'queue',
      method: 'POST',
      path: '/api/queue',
      body: Buffer.from('{"clear":true}'),
      status: 200,
      responseBody: null,
      submitter: SUBMITTER,
      timeMs: h.at(1),
    })
    await h.capture.flush()
    expect(['q1', 'q2', 'q3'].map((id) => session(h.events, id).status)).toEqual([
      'running',
      'cancelled',
      'cancelled',
    ])
    expect(h.events.filter((e) => e.kind === 'action.queue_clear')).toHaveLength(1)
  })

  it('records history deletions and clears, and frees', async () => {
    const h = harness()
    const act = (kind: 'history' | 'free', body: string) =>
      h.capture.action({
        kind,
        method: 'POST',
        path: `/${kind}`,
        body: Buffer.from(body),
        status: 200,
        responseBody: null,
        submitter: SUBMITTER,
        timeMs: h.at(1),
      })
    act('history', '{"delete":["a","b"]}')
    act('history', '{"clear":true}')
    act('free', '{"unload_models":true,"free_memory":false}')
    await h.capture.flush()
    expect(h.events.map((e) => e.kind)).toEqual([
      'action.history_delete',
      'action.history_clear',
      'action.free',
    ])
    expect(h.events[0]?.payload.prompt_ids).toEqual(['a', 'b'])
    expect(h.events[2]?.payload).toMatchObject({
      unload_models: true,
      free_memory: false,
      submitter: { user: 'alice' },
    })
  })

  it('hashes the bytes of an uploaded file', async () => {
    const h = harness()
    const file = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 1, 2, 3])
    const boundary = '----formdata-test-42'
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="cat.png"\r\nContent-Type: image/png\r\n\r\n`,
      ),
      file,
      Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n`),
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="subfolder"\r\n\r\nrefs\r\n--${boundary}--\r\n`,
      ),
    ])
    h.capture.action({
      kind: 'upload',
      method: 'POST',
      path: '/upload/image',
      body,
      status: 200,
      responseBody: Buffer.from('{"name": "cat (1).png", "subfolder": "refs", "type": "input"}'),
      submitter: SUBMITTER,
      timeMs: h.at(1),
    })
    await h.capture.flush()
    expect(h.events[0]?.payload).toMatchObject({
      name: 'cat (1).png',
      subfolder: 'refs',
      type: 'input',
      original_filename: 'cat.png',
      sha256: sha256Hex(file),
      bytes: file.length,
    })
  })

  it('never throws into the gateway, and reports what it could not handle', async () => {
    const h = harness({
      emit: () => {
        throw new Error('sink down')
      },
    })
    expect(() => {
      h.capture.frame({
        upstreamClientId: 'x',
        frame: parseUpstreamFrame('{"type":"executing","data":{"node":7}}', false),
        timeMs: 1,
      })
      h.capture.frame({
        upstreamClientId: 'x',
        frame: parseUpstreamFrame(Buffer.from([0, 0, 0, 1]), true),
        timeMs: 1,
      })
      h.capture.frame({ upstreamClientId: 'x', frame: parseUpstreamFrame('not json', false), timeMs: 1 })
      h.capture.promptAnswered({ promptId: 'ghost', status: 200, body: Buffer.from('garbage'), timeMs: 1 })
      h.capture.action({
        kind: 'queue',
        method: 'POST',
        path: '/queue',
        body: Buffer.from('{{'),
        status: 200,
        responseBody: null,
        submitter: SUBMITTER,
        timeMs: 1,
      })
    }).not.toThrow()
    await h.capture.flush()
    const messages = h.errors.map((e) => (e instanceof Error ? e.message : String(e)))
    expect(messages).toContain('sink down')
    expect(messages.some((m) => m.includes('unexpected executing frame'))).toBe(true)
    expect(messages.some((m) => m.includes('unknown prompt ghost'))).toBe(true)
  })

  it('samples GPU memory on a timer while a node runs, never overlapping', async () => {
    vi.useFakeTimers()
    let used = 1000
    let calls = 0
    let inFlight = 0
    let maxInFlight = 0
    const h = harness({
      now: () => Date.now(),
      gpuSampleIntervalMillis: 100,
      sampleGpu: async () => {
        calls++
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        await new Promise((r) => setTimeout(r, 150))
        inFlight--
        return { vram_total: 10_000 * 2 ** 20, vram_free: (10_000 - used) * 2 ** 20, torch_vram_total: 0 }
      },
    })
    h.submit('g1', { prompt: GRAPH })
    h.frame('execution_start', { prompt_id: 'g1' })
    h.ps('g1', { 1: ['running', 0, 1] })
    await vi.advanceTimersByTimeAsync(200)
    used = 3000 // allocated mid-run, released before the node ends
    await vi.advanceTimersByTimeAsync(400)
    used = 1000
    await vi.advanceTimersByTimeAsync(400)
    h.ps('g1', { 1: ['finished', 1, 1] })
    h.frame('execution_success', { prompt_id: 'g1' })
    await vi.advanceTimersByTimeAsync(400)
    await h.capture.flush()
    expect(nodeRuns(h.events, 'g1').get('1')?.gpu_memory_used).toBe(3000)
    expect(maxInFlight).toBe(1)
    // About one poll per 150 ms over the run: rate-limited, not one per tick.
    expect(calls).toBeGreaterThan(3)
    expect(calls).toBeLessThan(12)
    const callsAfterEnd = calls
    await vi.advanceTimersByTimeAsync(1000)
    expect(calls).toBe(callsAfterEnd)
    h.capture.close()
  })
})

describe('issue 15 item 3: previews counted per node', () => {
  it('attributes a type 1 preview (no node named) to the node running for its client', async () => {
    const clock = { now: 0 }
    const events: AuditEventInput[] = []
    const errors: unknown[] = []
    const capture = newCapture(clock, events, errors)
    const steps: ReplayStep[] = []
    let progressFrames = 0
    // ComfyUI without metadata support sends each preview right after the node's `progress`.
    const jpeg = Buffer.concat([
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 1]),
      Buffer.from('\xff\xd8preview-bytes', 'latin1'),
    ])
    for (const step of replaySteps(ROWS, {
      clients: CLIENTS,
      injectedClientId: 'gw:injected',
      scenarios: ['sd15_model_workflow'],
    })) {
      steps.push(step)
      if (step.kind !== 'frame' || step.call.frame.isBinary) continue
      const text = String(step.call.frame.raw)
      if (!/"type":\s*"progress"/.test(text)) continue
      if (text.includes(promptIdOf('sd15_model_workflow'))) progressFrames++
      steps.push({ ...step, call: { ...step.call, frame: parseUpstreamFrame(jpeg, true) } })
    }
    await feed(capture, clock, steps)
    expect(errors).toEqual([])
    expect(progressFrames).toBeGreaterThan(0)
    const runs = nodeRuns(events, promptIdOf('sd15_model_workflow'))
    const counts = Object.fromEntries(
      [...runs.values()].map((r) => [r.node_type as string, r.previews ?? null]),
    )
    expect(counts.KSampler).toBe(progressFrames)
    expect(Object.values(counts).reduce((a, b) => (a as number) + (b as number), 0)).toBe(progressFrames)
    expect(allJson(events)).not.toContain('preview-bytes')
  })
})

describe('issue 10 item 5: every string of every event goes through the redaction policy', () => {
  const KEY = 'sk-proj-0123456789abcdefghijABCDEFGHIJ'
  const PASSWORD = 'hunter2hunter2pw'
  const TOKEN = 'q7Rk2LmN9pXw4TzY6vBc'
  const policy = createRedactor(zRedactionConfig.parse({}))

  it('redacts error messages, traceback lines, home paths, output names, UI outputs and request details', async () => {
    const renamed: unknown[] = []
    const h = harness({ redact: policy, redactText: policy.text, onRedactedFile: (f) => renamed.push(f) })
    const ua = `tool/1.0 (${KEY})`
    h.capture.promptSubmitted({
      promptId: 'r1',
      upstreamClientId: 'gw:x',
      clientId: 'tab-1',
      body: Buffer.from(stringifyJson({ prompt: GRAPH })),
      forwardedBody: Buffer.from(stringifyJson({ prompt: GRAPH })),
      submitter: { ...SUBMITTER, user: 'alice@studio.example', user_agent: ua },
      timeMs: h.at(1),
    })
    h.answer('r1', 200, { prompt_id: 'r1', number: 1, node_errors: {} })
    h.frame('execution_start', { prompt_id: 'r1' })
    h.ps('r1', { '1': ['running', 0, 1] })
    h.frame('executed', {
      prompt_id: 'r1',
      node: '1',
      output: {
        images: [{ filename: `${KEY}_00001_.png`, subfolder: 'ada@studio.example', type: 'output' }],
        api_key: ['value-under-a-secret-key'],
      },
    })
    h.ps('r1', { '1': ['finished', 1, 1], '2': ['running', 0, 1] })
    h.frame('execution_error', {
      prompt_id: 'r1',
      node_id: '2',
      node_type: 'ForLoop',
      executed: ['1'],
      exception_message: `cannot reach https://svc:${PASSWORD}@models.example.com (Bearer ${TOKEN})`,
      exception_type: 'ValueError',
      traceback: [
        '  File "/home/alice/ComfyUI/custom_nodes/pack/__init__.py", line 3, in run\n',
        `    fetch("https://api.example.com/x?api_key=${PASSWORD}")\n`,
      ],
      current_inputs: {},
      current_outputs: [],
    })
    h.capture.action({
      kind: 'interrupt',
      method: 'POST',
      path: '/interrupt',
      body: Buffer.from(stringifyJson({ prompt_id: KEY })),
      status: 200,
      responseBody: null,
      submitter: { ...SUBMITTER, user_agent: ua },
      timeMs: h.at(1),
    })
    await h.capture.flush()
    expect(h.errors).toEqual([])
    const text = allJson(h.events)
    for (const secret of [KEY, PASSWORD, TOKEN, 'value-under-a-secret-key', '/home/alice', 'ada@studio']) {
      expect([secret, text.includes(secret)]).toEqual([secret, false])
    }
    const failed = nodeRuns(h.events, 'r1').get('2')
    expect(failed?.error_message).toContain(REDACTED)
    expect(failed?.traceback).toEqual([
      '  File "/home/<redacted>/ComfyUI/custom_nodes/pack/__init__.py", line 3, in run\n',
      `    fetch("https://api.example.com/x?api_key=${REDACTED}")\n`,
    ])
    const row = session(h.events, 'r1')
    expect(row.outputs).toEqual([
      { filename: `${REDACTED}.png`, subfolder: REDACTED, type: 'output', node_id: '1' },
    ])
    // The hasher is told the real name of the file the log holds under a redacted one.
    expect(renamed).toEqual([
      {
        sessionId: 'r1',
        nodeId: '1',
        recorded: { filename: `${REDACTED}.png`, subfolder: REDACTED, type: 'output', node_id: '1' },
        real: {
          filename: `${KEY}_00001_.png`,
          subfolder: 'ada@studio.example',
          type: 'output',
          node_id: '1',
        },
      },
    ])
    // Who did it stays readable, even an e-mail-shaped name.
    expect((row.submitter as JsonObject).user).toBe('alice@studio.example')
    // An interrupt naming no known prompt is tied to no session: an event's session id is never redacted.
    const interrupt = h.events.find((e) => e.kind === 'action.interrupt')
    expect(interrupt?.session_id).toBeNull()
    expect(interrupt?.payload.prompt_id).toBe(REDACTED)
  })
})

describe('issue 10 item 13: the environment per session', () => {
  // Longer than a recorded run takes from submission to start (tens of ms), shorter than the ~700 ms from the
  // start of image_pipeline to the start of image_pipeline_fully_cached: the second run finds it expired.
  const RUN_GAP_TTL_MS = 300
  /** Replays two runs on one capture, each scenario alone; `between` runs after the first. */
  async function twoRuns(
    extra: Partial<CaptureOptions>,
    between: (capture: Capture) => void = () => {},
  ): Promise<{ events: AuditEventInput[]; versions: (JsonValue | undefined)[]; errors: unknown[] }> {
    const clock = { now: 0 }
    const events: AuditEventInput[] = []
    const errors: unknown[] = []
    const capture = newCapture(clock, events, errors, extra)
    const opts = { clients: CLIENTS, injectedClientId: 'gw:injected' }
    await feed(capture, clock, replaySteps(ROWS, { ...opts, scenarios: ['image_pipeline'] }))
    between(capture)
    await feed(capture, clock, replaySteps(ROWS, { ...opts, scenarios: ['image_pipeline_fully_cached'] }))
    const versions = [promptIdOf('image_pipeline'), promptIdOf('image_pipeline_fully_cached')].map((id) => {
      const env = session(events, id).environment
      return isJsonObject(env) ? env.comfyui_version : undefined
    })
    return { events, versions, errors }
  }

  /** An environment source that answers `0.8.<n>` on its n-th call (from 0), or fails once `failing` is set. */
  function counting(): {
    environment: () => Promise<EnvironmentSnapshot | null>
    calls: () => number
    failing: { on: boolean }
  } {
    let n = 0
    const failing = { on: false }
    return {
      environment: async () => {
        if (failing.on) throw new Error('ComfyUI is restarting')
        return { ...ENVIRONMENT, comfyui_version: `0.8.${n++}` }
      },
      calls: () => n,
      failing,
    }
  }

  it('gives the second session the first snapshot while it is younger than the TTL', async () => {
    const source = counting()
    const { versions, events } = await twoRuns({
      environment: source.environment,
      environmentTtlMillis: 3_600_000,
    })
    expect(versions).toEqual(['0.8.0', '0.8.0'])
    expect(source.calls()).toBe(1)
    expect(events.filter((e) => e.kind === 'environment.snapshot')).toHaveLength(1)
  })

  it('takes a new snapshot once the TTL has passed, and logs the changed environment once', async () => {
    const source = counting()
    const { versions, events } = await twoRuns({
      environment: source.environment,
      environmentTtlMillis: RUN_GAP_TTL_MS,
    })
    expect(versions).toEqual(['0.8.0', '0.8.1'])
    const logged = events.filter((e) => e.kind === 'environment.snapshot')
    expect(logged.map((e) => (e.payload.environment as JsonObject).comfyui_version)).toEqual([
      '0.8.0',
      '0.8.1',
    ])
  })

  it('takes a new snapshot after refreshEnvironment (ComfyUI restarted), whatever the TTL', async () => {
    const source = counting()
    const { versions } = await twoRuns(
      { environment: source.environment, environmentTtlMillis: 3_600_000 },
      (capture) => capture.refreshEnvironment(),
    )
    expect(versions).toEqual(['0.8.0', '0.8.1'])
  })

  it('records no environment rather than the old one when ComfyUI does not answer after a restart', async () => {
    const source = counting()
    const { versions, errors } = await twoRuns(
      { environment: source.environment, environmentTtlMillis: 3_600_000 },
      (capture) => {
        capture.refreshEnvironment()
        source.failing.on = true
      },
    )
    expect(versions).toEqual(['0.8.0', undefined])
    expect(errors.map(String)).toContain('Error: ComfyUI is restarting')
  })

  it('keeps the expired snapshot when ComfyUI does not answer and no restart was seen', async () => {
    const source = counting()
    const { versions } = await twoRuns(
      { environment: source.environment, environmentTtlMillis: RUN_GAP_TTL_MS },
      () => {
        source.failing.on = true
      },
    )
    expect(versions).toEqual(['0.8.0', '0.8.0'])
  })
})

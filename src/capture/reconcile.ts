/**
 * Reconciliation after a gap (gateway restart, dropped upstream socket, ComfyUI restart): pure functions that
 * turn ComfyUI's `/history` entries and `/queue` into the events that close open sessions
 * (`session.reconciled`, `session.lost`) and record runs that never passed the gateway (`session.bypass`).
 * See comfyui-protocol.md §7.9. Per-node timing is lost for the gap; sessions closed this way carry the
 * `reconciled` flag, and nodes that were running when the gap began get no end time.
 */
import type {
  AuditEventInput,
  FileRef,
  JsonObject,
  JsonValue,
  NodeRunRecord,
  SessionStatus,
} from '../audit/types.js'
import {
  nodeFinishedEvent,
  sessionBypassEvent,
  sessionLostEvent,
  sessionReconciledEvent,
} from '../audit/audit-events.js'
import { DEFAULT_MAX_INPUT_LENGTH } from '../config/defaults.js'
import { isoTime } from './json-value.js'
import {
  analyzePrompt,
  nodeInputs,
  outputFiles,
  stripSensitive,
  truncateLongStrings,
  type Redactor,
} from './prompt-analysis.js'
import {
  isJsonObject,
  type History,
  type HistoryEntry,
  type PromptGraph,
  type Queue,
} from '../comfyui/schemas.js'

/** A node run that has started and not ended; its status is decided when it closes. */
export type OpenNodeRun = Omit<NodeRunRecord, 'status'>

/** What capture knows about a session that has no final status yet. */
export interface OpenSession {
  readonly session_id: string
  readonly status: 'queued' | 'running'
  /** ComfyUI answered the POST /prompt with 200 (a session still waiting for its answer is not reconciled). */
  readonly accepted: boolean
  /** Upstream (namespaced) client id. */
  readonly client_id: string | null
  readonly number: number | null
  readonly queued_at: string | null
  readonly started_at: string | null
  /** Nodes running when the gap began. */
  readonly running_nodes: readonly OpenNodeRun[]
  /** Node ids that already have a record. */
  readonly recorded_nodes: readonly string[]
  /** The end marker (`executing` with `node: null`) arrived without a final status. */
  readonly ended: boolean
  /**
   * Taken over from a gateway process that died before ComfyUI's answer was recorded: no answer can come any
   * more, so it may be called lost although not `accepted` by what the log holds.
   */
  readonly orphaned?: boolean
}

/** Final state of a prompt as ComfyUI's history tells it. */
interface HistoryOutcome {
  readonly status: 'success' | 'error' | 'interrupted'
  readonly number: number
  readonly started_ms: number | null
  readonly ended_ms: number | null
  readonly cached_nodes: string[]
  readonly cached_ms: number | null
  /** `execution_error` data (for `error`). */
  readonly error: JsonObject | null
  /** `execution_interrupted` data (for `interrupted`). */
  readonly interrupted: JsonObject | null
  readonly outputs: (FileRef & { node_id: string })[]
}

function timestampOf(data: JsonValue): number | null {
  return isJsonObject(data) && typeof data.timestamp === 'number' ? data.timestamp : null
}

/**
 * Reads the outcome of a history entry: `status_str` plus the `messages` (`execution_start`,
 * `execution_cached`, then `execution_success` / `execution_error` / `execution_interrupted`). ComfyUI
 * stores an interrupt as `status_str: "error"`; the `execution_interrupted` message tells them apart.
 */
export function historyOutcome(entry: HistoryEntry): HistoryOutcome {
  let startedMs: number | null = null
  let endedMs: number | null = null
  let cachedMs: number | null = null
  let cachedNodes: string[] = []
  let error: JsonObject | null = null
  let interrupted: JsonObject | null = null
  let success = false
  for (const [name, data] of entry.status?.messages ?? []) {
    switch (name) {
      case 'execution_start':
        startedMs = timestampOf(data)
        break
      case 'execution_cached':
        cachedMs = timestampOf(data)
        if (isJsonObject(data) && Array.isArray(data.nodes)) {
          cachedNodes = data.nodes.filter((n): n is string => typeof n === 'string')
        }
        break
      case 'execution_success':
        success = true
        endedMs = timestampOf(data)
        break
      case 'execution_error':
        error = isJsonObject(data) ? data : {}
        endedMs = timestampOf(data)
        break
      case 'execution_interrupted':
        interrupted = isJsonObject(data) ? data : {}
        endedMs = timestampOf(data)
        break
    }
  }
  const status: HistoryOutcome['status'] = interrupted
    ? 'interrupted'
    : error
      ? 'error'
      : success || entry.status?.status_str === 'success'
        ? 'success'
        : 'error'
  const outputs: (FileRef & { node_id: string })[] = []
  for (const [nodeId, ui] of Object.entries(entry.outputs ?? {})) outputs.push(...outputFiles(nodeId, ui))
  return {
    status,
    number: entry.prompt[0],
    started_ms: startedMs,
    ended_ms: endedMs,
    cached_nodes: cachedNodes,
    cached_ms: cachedMs,
    error,
    interrupted,
    outputs,
  }
}

/** Options shared by the reconciliation functions. */
interface ReconcileOptions {
  /** Redaction hook for stored values (see capture). */
  readonly redact?: Redactor
  /** Longest string kept in node inputs (default {@link DEFAULT_MAX_INPUT_LENGTH}). */
  readonly maxInputStringLength?: number
}

/** Error data as it is stored: secrets stripped, redaction hook applied, long strings summarised. */
export function storedError(data: JsonObject, redact: Redactor | undefined, maxLength: number): JsonValue {
  const clean = stripSensitive(data)
  return truncateLongStrings(redact ? redact(clean, ['error']) : clean, maxLength)
}

function graphOf(entry: HistoryEntry): PromptGraph | null {
  return analyzePrompt(entry.prompt[2], undefined).graph
}

function stringField(data: JsonObject | null, key: string): string | null {
  const v = data?.[key]
  return typeof v === 'string' ? v : null
}

/**
 * Node runs the history lets us state for a gap: nodes running when it began (closed without an end time),
 * the failing or interrupted node, and cached nodes (start = end = the `execution_cached` time).
 */
function gapNodeRuns(
  sessionId: string,
  outcome: HistoryOutcome,
  graph: PromptGraph | null,
  open: OpenSession | null,
  options: ReconcileOptions,
): NodeRunRecord[] {
  const maxLength = options.maxInputStringLength ?? DEFAULT_MAX_INPUT_LENGTH
  const runs: NodeRunRecord[] = []
  const recorded = new Set(open?.recorded_nodes ?? [])
  const failedNode = stringField(outcome.error ?? outcome.interrupted, 'node_id')
  const errorFields = (data: JsonObject | null) => ({
    error_message: stringField(data, 'exception_message'),
    exception_type: stringField(data, 'exception_type'),
    traceback: Array.isArray(data?.traceback)
      ? data.traceback.filter((t): t is string => typeof t === 'string')
      : null,
  })
  const hitsFailed = (run: OpenNodeRun) =>
    failedNode !== null && (run.node_id === failedNode || run.real_node_id === failedNode)

  let failedSeen = false
  for (const run of open?.running_nodes ?? []) {
    const failed = hitsFailed(run)
    failedSeen ||= failed
    if (failed && outcome.error) {
      runs.push({ ...run, status: 'error', ...errorFields(outcome.error) })
    } else if (failed && outcome.interrupted) {
      runs.push({ ...run, status: 'interrupted' })
    } else {
      // It was running when the gap began and the prompt went on past it.
      runs.push({ ...run, status: 'success' })
    }
  }
  const blank = (nodeId: string, timeMs: number | null): Omit<NodeRunRecord, 'status'> | null => {
    if (timeMs === null) return null
    const at = isoTime(timeMs)
    return {
      session_id: sessionId,
      node_id: nodeId,
      node_type: graph?.[nodeId]?.class_type ?? null,
      timestamp_start: at,
      timestamp_end: at,
      duration_ms: null,
      inputs: nodeInputs(graph?.[nodeId], maxLength),
      outputs: null,
      error_message: null,
      exception_type: null,
      traceback: null,
      gpu_memory_used: null,
      gpu_memory_torch: null,
      display_node: nodeId,
      real_node_id: nodeId,
      parent_node_id: null,
      progress: null,
      previews: null,
    }
  }
  if (failedNode !== null && !failedSeen && !recorded.has(failedNode)) {
    const data = outcome.error ?? outcome.interrupted
    const base = blank(failedNode, timestampOf(data) ?? outcome.ended_ms)
    if (base) {
      runs.push({
        ...base,
        node_type: stringField(data, 'node_type') ?? base.node_type,
        ...(outcome.error ? { status: 'error', ...errorFields(outcome.error) } : { status: 'interrupted' }),
      })
    }
  }
  const running = new Set((open?.running_nodes ?? []).map((r) => r.node_id))
  for (const nodeId of outcome.cached_nodes) {
    if (recorded.has(nodeId) || running.has(nodeId)) continue
    const base = blank(nodeId, outcome.cached_ms)
    if (base) runs.push({ ...base, status: 'cached', duration_ms: 0 })
  }
  return runs
}

/** Input of {@link reconcileSessions}. */
interface ReconcileInput extends ReconcileOptions {
  readonly open: readonly OpenSession[]
  /** History entries by prompt id (from `/history/{id}` per session and/or `/history?max_items=N`). */
  readonly history: History
  /** `/queue` as ComfyUI answered it, or null when not known (then nothing is declared lost). */
  readonly queue: Queue | null
  /** When the answers were received (epoch ms). */
  readonly timeMs: number
  /** ComfyUI restarted (socket dropped, queue reset): changes the wording of the lost reason. */
  readonly comfyRestarted?: boolean
}

/** Result of {@link reconcileSessions}. */
interface ReconcileResult {
  readonly events: AuditEventInput[]
  /** Sessions these events close. */
  readonly closed: string[]
}

/**
 * Closes what can be closed: a session found in history becomes `session.reconciled` with the history's
 * outcome (and node runs for the gap); an accepted session that is neither in history nor queued becomes
 * `session.lost`. Sessions still queued or running upstream, and sessions not yet accepted, stay open.
 */
export function reconcileSessions(input: ReconcileInput): ReconcileResult {
  const time = isoTime(input.timeMs)
  const events: AuditEventInput[] = []
  const closed: string[] = []
  const queued = new Set<string>()
  for (const item of [...(input.queue?.queue_running ?? []), ...(input.queue?.queue_pending ?? [])])
    queued.add(item[1])
  const maxLength = input.maxInputStringLength ?? DEFAULT_MAX_INPUT_LENGTH

  for (const session of input.open) {
    const entry = input.history[session.session_id]
    if (entry) {
      const outcome = historyOutcome(entry)
      for (const run of gapNodeRuns(session.session_id, outcome, graphOf(entry), session, input))
        events.push(nodeFinishedEvent(time, run))
      const startedAt =
        session.started_at ?? (outcome.started_ms === null ? null : isoTime(outcome.started_ms))
      const endedAt = outcome.ended_ms === null ? null : isoTime(outcome.ended_ms)
      const status: SessionStatus = outcome.status
      events.push(
        sessionReconciledEvent(
          time,
          session.session_id,
          {
            status,
            number: outcome.number,
            started_at: startedAt,
            ended_at: endedAt,
            duration_ms:
              startedAt !== null && endedAt !== null ? Date.parse(endedAt) - Date.parse(startedAt) : null,
            error: outcome.error ? storedError(outcome.error, input.redact, maxLength) : null,
            outputs: outcome.outputs,
            status_reason: 'completed from ComfyUI history after a gap; no per-node timing for the gap',
            flags: ['reconciled'],
          },
          { outputs: outcome.outputs, interrupted: outcome.interrupted },
        ),
      )
      closed.push(session.session_id)
      continue
    }
    if (!session.accepted || input.queue === null || queued.has(session.session_id)) continue
    const reason = session.orphaned
      ? 'the gateway stopped before ComfyUI answered, and ComfyUI has the prompt neither queued nor in history'
      : input.comfyRestarted
        ? 'ComfyUI restarted: the prompt is neither queued nor in history'
        : 'ComfyUI no longer knows the prompt: neither queued nor in history'
    for (const run of session.running_nodes)
      events.push(nodeFinishedEvent(time, { ...run, status: 'interrupted', error_message: reason }))
    events.push(
      sessionLostEvent(
        time,
        session.session_id,
        { status: 'lost', ended_at: time, status_reason: reason },
        {
          reason,
          evidence: {
            queue_running: input.queue.queue_running.length,
            queue_pending: input.queue.queue_pending.length,
            history_entries: Object.keys(input.history).length,
            in_queue: false,
            in_history: false,
            accepted: session.orphaned !== true,
            ...(session.orphaned ? { orphaned: true } : {}),
            comfy_restarted: input.comfyRestarted === true,
            decided_at: time,
          },
        },
      ),
    )
    closed.push(session.session_id)
  }
  return { events, closed }
}

/** Input of {@link bypassSessions}. */
interface BypassInput extends ReconcileOptions {
  readonly history: History
  /** Whether a prompt id already has a session (in this gateway's store, open or closed). */
  readonly isKnown: (promptId: string) => boolean
  readonly timeMs: number
  /**
   * Why the entry's `extra_data.comfy_audit` seal did not open (a forged, copied or re-queued seal), or null:
   * such a run claims to come from the gateway and did not; it is flagged `seal_rejected` too.
   */
  readonly sealRejected?: (promptId: string) => string | null
}

/**
 * `session.bypass` events (plus the node runs history allows) for history entries that never passed the
 * gateway: someone reached ComfyUI directly. They are flagged `bypass` and have no submitter.
 */
export function bypassSessions(input: BypassInput): AuditEventInput[] {
  const time = isoTime(input.timeMs)
  const maxLength = input.maxInputStringLength ?? DEFAULT_MAX_INPUT_LENGTH
  const events: AuditEventInput[] = []
  for (const [promptId, entry] of Object.entries(input.history)) {
    if (input.isKnown(promptId)) continue
    const outcome = historyOutcome(entry)
    const analysis = analyzePrompt(entry.prompt[2], entry.prompt[3], input.redact)
    const extra = entry.prompt[3]
    const createTime = isJsonObject(extra) && typeof extra.create_time === 'number' ? extra.create_time : null
    const clientId = isJsonObject(extra) && typeof extra.client_id === 'string' ? extra.client_id : null
    const rejected = input.sealRejected?.(promptId) ?? null
    for (const run of gapNodeRuns(promptId, outcome, analysis.graph, null, input))
      events.push(nodeFinishedEvent(time, run))
    events.push(
      sessionBypassEvent(
        time,
        promptId,
        {
          status: outcome.status,
          http_status: null,
          number: outcome.number,
          client_id: clientId,
          submitter: null,
          prompt: analysis.prompt,
          workflow: analysis.workflow,
          prompt_sha256: analysis.prompt_sha256,
          workflow_sha256: analysis.workflow_sha256,
          extra_data: analysis.extra_data,
          validation: null,
          queued_at: createTime === null ? null : isoTime(createTime),
          started_at: outcome.started_ms === null ? null : isoTime(outcome.started_ms),
          ended_at: outcome.ended_ms === null ? null : isoTime(outcome.ended_ms),
          duration_ms:
            outcome.started_ms !== null && outcome.ended_ms !== null
              ? outcome.ended_ms - outcome.started_ms
              : null,
          environment: null,
          models: analysis.models,
          seeds: analysis.seeds,
          outputs: outcome.outputs,
          error: outcome.error ? storedError(outcome.error, input.redact, maxLength) : null,
          status_reason:
            rejected === null
              ? 'seen in ComfyUI history without having passed the gateway'
              : `seen in ComfyUI history without having passed the gateway; its gateway seal was rejected: ${rejected}`,
          flags: rejected === null ? ['bypass'] : ['bypass', 'seal_rejected'],
        },
        { outputs: outcome.outputs, sealRejected: rejected },
      ),
    )
  }
  return events
}

/**
 * Capture: turns the traffic the gateway proxies into audit events, one per-prompt state machine per
 * session. Tap calls only enqueue; a single serial worker parses, folds and emits, so events keep the order
 * in which the gateway saw the bytes, and nothing here ever blocks or throws into the proxy.
 *
 * Timing follows comfyui-protocol.md §7.7: a node starts at its first `progress_state` "running" or
 * `executing`, and ends at `progress_state` "finished"; the failing node never reaches "finished" and is
 * closed by `execution_error`. `progress_state` frames repeat every node seen so far, so they are diffed
 * per prompt and folded into node records; no event is emitted per frame.
 */
import { canonicalJson, parseJson, sha256Hex } from '../audit/json.js'
import { reportError } from '../audit/report-error.js'
import type {
  AuditEventInput,
  AuditEventKind,
  EnvironmentSnapshot,
  FileRef,
  JsonObject,
  JsonValue,
  NodeRunRecord,
  NodeRunStatus,
  SessionRecord,
  Submitter,
} from '../audit/types.js'
import { createGpuSampler, torchMiB, usedMiB, type GpuSample, type GpuSampler } from './gpu-sampler.js'
import { isoTime, toJsonObject, toJsonValue } from './json-value.js'
import type { PreviewTarget } from '../comfyui/frames.js'
import { parseMultipart } from '../comfyui/multipart.js'
import { redactEvent, redactString, type TextRedactor } from './redact-event.js'
import {
  DEFAULT_MAX_INPUT_STRING_LENGTH,
  analyzePrompt,
  analyzePromptBody,
  nodeInputs,
  outputFiles,
  stripSensitive,
  truncateLongStrings,
  type PromptBodyAnalysis,
  type Redactor,
} from './prompt-analysis.js'
import { SUBMISSION_SEAL_KEY, promptDigest, withoutSeal, type SubmissionSeal } from './submission-seal.js'
import {
  bypassSessions,
  historyOutcome,
  reconcileSessions,
  storedError,
  type OpenNodeRun,
  type OpenSession,
} from './reconcile.js'
import {
  checkWith,
  isJsonObject,
  parseWith,
  zFreeRequest,
  zHistory,
  zInterruptRequest,
  zPromptAccepted,
  zPromptGraph,
  zQueue,
  zQueueOrHistoryAction,
  zUploadResponse,
  type ExecutionErrorData,
  type History,
  type HistoryEntry,
  type PromptGraph,
  type PromptTuple,
  type Queue,
  type WsMessage,
} from '../comfyui/schemas.js'
import type { CaptureTap } from './tap.js'

export type { GpuSample } from './gpu-sampler.js'
export type { OpenSession } from './reconcile.js'

/** Options of {@link createCapture}. */
export interface CaptureOptions {
  /** This gateway's log origin (informational here; the log stamps it). */
  readonly origin?: string
  /** Clock in epoch ms for things the tap gives no time for (rate limits, reconciliation). Default `Date.now`. */
  readonly now?: () => number
  /** Receives events in order, in small batches. Must not throw (if it does, onError gets it). */
  readonly emit: (events: AuditEventInput[]) => void
  /** One `/system_stats` reading; called at node transitions and on a timer while nodes run. */
  readonly sampleGpu?: () => Promise<GpuSample | null>
  /**
   * Environment snapshot (see `environmentFromSystemStats`), asked when a prompt is submitted and kept for at
   * most {@link environmentTtlMs}, or until {@link Capture.refreshEnvironment} says ComfyUI may have changed.
   */
  readonly environment?: () => Promise<EnvironmentSnapshot | null>
  /** Longest time one environment snapshot is used for new sessions, ms (default 60 s). */
  readonly environmentTtlMs?: number
  /** Redaction hook applied to stored prompt, extra_data, validation, error and node output values. */
  readonly redact?: Redactor
  /**
   * Text rules of the same policy, applied to every string of every event as it leaves capture (error
   * messages, tracebacks, file names, request details). Default: `redact` applied to the string alone.
   */
  readonly redactText?: TextRedactor
  /**
   * Told of every output file whose name or subfolder redaction changed: the log keeps only `recorded`, so
   * whoever hashes outputs needs `real` to find the file. Called before the file's event is emitted; must
   * not keep `real` anywhere durable.
   */
  readonly onRedactedFile?: (file: RedactedFile) => void
  /** Receives every error capture swallows. Default: `reportError`. */
  readonly onError?: (err: unknown) => void
  /** GPU polling period while a node runs, ms (default 100; 0 turns the timer off). Never above ~10/s. */
  readonly gpuSampleIntervalMs?: number
  /** Longest string kept in node inputs/outputs before it becomes `{truncated, length, sha256}` (default 2048). */
  readonly maxInputStringLength?: number
  /** Longest unparseable POST /prompt body recorded as text, bytes (default 1 MiB). */
  readonly maxBodyTextBytes?: number
  /**
   * Parses and redacts a `POST /prompt` body somewhere else (a worker thread: a large prompt's redaction
   * would stall the proxy; issue 9 class 5). It must apply the same policy as `redact`. Default: inline.
   */
  readonly analyzePromptBody?: (
    body: Buffer,
    options: { maxTextBytes?: number },
  ) => Promise<PromptBodyAnalysis>
  /** How long frames naming an unknown prompt are kept for a submission that may follow, ms (default 60 s). */
  readonly pendingFrameTtlMs?: number
  /** How long a transition waits for the environment snapshot, ms (default 5000). */
  readonly environmentTimeoutMs?: number
  /**
   * Opens the gateway's sealed attributions (`extra_data.comfy_audit`, submission-seal.ts). With it,
   * reconciliation rebuilds the `prompt.submitted` of a prompt ComfyUI holds but the log lacks (a crash
   * between the 200 and the commit), marked `recovered`, instead of calling it a bypass.
   */
  readonly submissionSeal?: Pick<SubmissionSeal, 'open'>
}

/** An output file as the log records it (redacted) and as ComfyUI named it. */
export interface RedactedFile {
  readonly sessionId: string
  readonly nodeId: string
  readonly recorded: FileRef
  readonly real: FileRef
}

/** Input of {@link Capture.reconcile}: ComfyUI's answers, as JSON values. */
export interface CaptureReconcileInput {
  /** `/history` or merged `/history/{id}` answers (`{prompt_id: entry}`). */
  readonly history: JsonValue
  /** `/queue`, or null when it could not be read. */
  readonly queue: JsonValue | null
  /** ComfyUI restarted (affects the wording of lost reasons). */
  readonly comfyRestarted?: boolean
  /**
   * Only these sessions may be closed. Pass the sessions that were open BEFORE `queue` was read: a prompt
   * accepted after that is missing from the snapshot without being lost.
   */
  readonly sessionIds?: ReadonlySet<string>
  /**
   * Only these may be closed as lost (the ones ComfyUI had accepted before `queue` was read, and ones taken
   * over from a dead process that never recorded an answer); default: the accepted ones.
   */
  readonly mayBeLost?: ReadonlySet<string>
  /**
   * Record history entries whose prompt id capture does not know (see {@link Capture.isPromptIdKnown}) as
   * bypass sessions. Default false.
   */
  readonly detectBypass?: boolean
  /** Extra ids to treat as known (besides capture's own index); setting it also turns bypass detection on. */
  readonly isKnown?: (promptId: string) => boolean
}

/** A session left open by a previous process, as the store holds it. */
export interface ResumedSession {
  readonly session: SessionRecord
  /** Node records already stored for it. */
  readonly nodeRuns: readonly NodeRunRecord[]
  /** Start times (epoch ms) of nodes that started but have no record yet (from `node.started` events). */
  readonly startedNodes: ReadonlyMap<string, number>
}

/** The capture: the tap the gateway calls, plus lifecycle and reconciliation. */
export interface Capture extends CaptureTap {
  /** Resolves when everything enqueued so far has been processed and emitted. */
  flush(): Promise<void>
  /** Sessions without a final status, as reconciliation needs them. */
  openSessions(): OpenSession[]
  /** Closes open sessions from ComfyUI's history and queue (enqueued like tap calls). */
  reconcile(input: CaptureReconcileInput): void
  /**
   * Takes back sessions a previous gateway process left open (read from the store after a restart), so their
   * remaining frames attach to them and reconciliation can close them. Enqueued like tap calls.
   */
  resume(sessions: readonly ResumedSession[]): void
  /**
   * Adds ids to the index of known prompt ids: at start, every session id the log ever held (pruned,
   * retention-removed and erased ones too, see `RuntimeStore.sessionIds`).
   */
  loadKnownPromptIds(ids: Iterable<string>): void
  /**
   * Session ids the log holds as `lost` (at start): if ComfyUI's history later shows one of them finished,
   * reconciliation records a `session.corrected`, never a silent change.
   */
  loadLostSessionIds(ids: Iterable<string>): void
  /**
   * Whether a prompt id is known: held by the log, or submitted to this capture (even if not yet processed
   * or committed), reserved by {@link claimPromptId}, or recorded as a bypass. Synchronous: the proxy path and
   * the bypass sweep ask it without waiting on the store. This is the one place that answers the question.
   */
  isPromptIdKnown(promptId: string): boolean
  /** Reserves a prompt id: false when it is already known, true when it was free (and is known from now on). */
  claimPromptId(promptId: string): boolean
  /**
   * Forgets the environment snapshot: the next session takes a new one. Call it when ComfyUI may have
   * restarted (its socket came back, or `/system_stats` answered differently): versions, devices and custom
   * node packs change only across a restart. A snapshot asked before this call is not used after it.
   */
  refreshEnvironment(): void
  /** Stops timers and drops further input. Idempotent. */
  close(): void
}

type SessionPatch = Partial<Omit<SessionRecord, 'origin' | 'session_id'>>
type OutputFile = FileRef & { node_id: string }

interface NodeState {
  readonly id: string
  realId: string | null
  displayId: string | null
  parentId: string | null
  startMs: number
  endMs: number | null
  /** `running` until closed. */
  status: NodeRunStatus | 'running'
  /** Start time unknown (it finished without our seeing it start). */
  startUnknown: boolean
  outputs: JsonObject | null
  files: OutputFile[]
  errorMessage: string | null
  exceptionType: string | null
  traceback: string[] | null
  gpuUsed: number | null
  gpuTorch: number | null
  progress: { value: number; max: number } | null
  /** Preview frames seen for the node (counted only: no image byte is kept). */
  previews: number
  emitted: boolean
  blocked: string | null
}

interface SessionState {
  readonly id: string
  upstreamClientId: string | null
  phase: 'queued' | 'running' | 'closed'
  finalStatus: string | null
  answered: boolean
  httpStatus: number | null
  number: number | null
  queuedAtMs: number | null
  startedAtMs: number | null
  graph: PromptGraph | null
  readonly nodes: Map<string, NodeState>
  readonly progressState: Map<string, string>
  files: OutputFile[]
  ended: boolean
  /** The node of the latest `executing` / `progress`: where a type 1 preview (which names none) belongs. */
  currentNode: string | null
}

interface PendingFrames {
  firstMs: number
  frames: { msg: WsMessage; timeMs: number }[]
}

const MAX_RECENT_SESSIONS = 1024
const MAX_PENDING_PROMPTS = 256
const MAX_PENDING_FRAMES = 4096

/** A small JSON request body; empty means `{}` (ComfyUI treats a missing body so), unparseable means null. */
function bodyJson(body: Buffer): JsonValue | null {
  if (body.length === 0) return {}
  const parsed = parseJson(body)
  return parsed.ok ? parsed.value : null
}

/** Creates a capture. See {@link CaptureOptions}. */
export function createCapture(options: CaptureOptions): Capture {
  const now = options.now ?? Date.now
  const onError = (err: unknown): void => {
    try {
      if (options.onError) options.onError(err)
      else reportError(err, 'capture')
    } catch {
      // An error handler that throws must not reach the gateway.
    }
  }
  const maxLen = options.maxInputStringLength ?? DEFAULT_MAX_INPUT_STRING_LENGTH
  const interval = options.gpuSampleIntervalMs ?? 100
  const ttl = options.pendingFrameTtlMs ?? 60_000
  const envTimeout = options.environmentTimeoutMs ?? 5000
  const envTtl = options.environmentTtlMs ?? 60_000
  const sampler: GpuSampler | null = options.sampleGpu
    ? createGpuSampler({ sample: options.sampleGpu, now, minIntervalMs: Math.max(100, interval), onError })
    : null

  const redactText: TextRedactor | null =
    options.redactText ??
    (options.redact
      ? (text) => {
          const clean = options.redact!(text, ['text'])
          // A policy that summarises long values returns an object: its text form holds no secret either.
          return typeof clean === 'string' ? clean : JSON.stringify(clean)
        }
      : null)

  const sessions = new Map<string, SessionState>()
  const recent = new Map<string, SessionState>()
  // Every prompt id ever known, never forgotten while the process lives: a second session for one id would
  // overwrite the first one's record (item 1 of issue 10), and a bypass for a pruned id would resurrect it.
  // ~100 bytes an id: a million sessions cost ~100 MB, the price of never taking a record over.
  const knownIds = new Set<string>()
  const pending = new Map<string, PendingFrames>()
  // Closed as lost and not corrected since: the ones a later history entry corrects.
  const lostIds = new Set<string>()
  let chain: Promise<void> = Promise.resolve()
  let closed = false
  let timer: NodeJS.Timeout | null = null

  // The snapshot and when it was taken; a generation number tells answers asked before a refresh apart.
  let envCache: { readonly env: EnvironmentSnapshot; readonly atMs: number } | null = null
  let envInFlight: Promise<EnvironmentSnapshot | null> | null = null
  let envGeneration = 0
  let envEmittedJson: string | null = null

  // ------------------------------------------------------------------------------------------------------
  // plumbing

  const enqueue = (task: (out: AuditEventInput[]) => void | Promise<void>): void => {
    if (closed) return
    chain = chain.then(async () => {
      const out: AuditEventInput[] = []
      try {
        await task(out)
      } catch (err) {
        onError(err)
      }
      if (out.length > 0) {
        try {
          // One place every event passes: whatever field it has, its strings are redacted before the store
          // (and through it the ledger and every sink) sees them.
          options.emit(redactText ? out.map((e) => redactEvent(e, redactText)) : out)
        } catch (err) {
          onError(err)
        }
      }
      updateTimer()
    })
  }

  const push = (
    out: AuditEventInput[],
    kind: AuditEventKind,
    timeMs: number,
    sessionId: string | null,
    payload: JsonObject,
  ): void => {
    out.push({ kind, time: isoTime(timeMs), session_id: sessionId, payload })
  }

  const redactValue = (value: JsonValue, path: string[]): JsonValue => {
    const clean = stripSensitive(value)
    return options.redact ? options.redact(clean, path) : clean
  }

  const withTimeout = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> => {
    let t: NodeJS.Timeout | undefined
    const timeout = new Promise<T>((resolve) => {
      t = setTimeout(() => resolve(fallback), ms)
      t.unref()
    })
    return Promise.race([p, timeout]).finally(() => clearTimeout(t))
  }

  // ------------------------------------------------------------------------------------------------------
  // environment and GPU

  const envFresh = (): boolean => envCache !== null && now() - envCache.atMs < envTtl

  const prefetchEnvironment = (): void => {
    if (!options.environment || envFresh() || envInFlight) return
    const generation = envGeneration
    const askedAtMs = now()
    let call: Promise<EnvironmentSnapshot | null>
    try {
      call = options.environment()
    } catch (err) {
      call = Promise.reject(err)
    }
    const settled = call.then(
      (env) => {
        if (generation !== envGeneration) return null
        if (env) envCache = { env, atMs: askedAtMs }
        return env
      },
      (err: unknown) => {
        onError(err)
        return null
      },
    )
    envInFlight = settled
    void settled.finally(() => {
      if (envInFlight === settled) envInFlight = null
    })
  }

  const getEnvironment = async (): Promise<EnvironmentSnapshot | null> => {
    if (envFresh()) return envCache!.env
    prefetchEnvironment()
    const asked = envInFlight ? await withTimeout(envInFlight, envTimeout, null) : null
    // ComfyUI did not answer in time: the expired snapshot is still the best guess, unless a restart was
    // signalled since (refreshEnvironment dropped it), when no snapshot beats a wrong one.
    return asked ?? envCache?.env ?? null
  }

  const runningNodes = function* (): Generator<NodeState> {
    for (const s of sessions.values()) {
      for (const n of s.nodes.values()) if (n.status === 'running') yield n
    }
  }

  const applySample = (sample: GpuSample, nodes: Iterable<NodeState>): void => {
    const used = usedMiB(sample)
    const torch = torchMiB(sample)
    for (const n of nodes) {
      n.gpuUsed = n.gpuUsed === null ? used : Math.max(n.gpuUsed, used)
      n.gpuTorch = n.gpuTorch === null ? torch : Math.max(n.gpuTorch, torch)
    }
  }

  const sampleNow = async (): Promise<GpuSample | null> => (sampler ? sampler.sample() : null)

  const updateTimer = (): void => {
    if (!sampler || interval <= 0 || closed) return
    const anyRunning = !runningNodes().next().done
    if (anyRunning && !timer) {
      timer = setInterval(() => {
        void sampler.sample().then((s) => {
          if (s) applySample(s, [...runningNodes()])
        })
      }, interval)
      timer.unref()
    } else if (!anyRunning && timer) {
      clearInterval(timer)
      timer = null
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // sessions and node records

  const newSession = (id: string): SessionState => ({
    id,
    upstreamClientId: null,
    phase: 'queued',
    finalStatus: null,
    answered: false,
    httpStatus: null,
    number: null,
    queuedAtMs: null,
    startedAtMs: null,
    graph: null,
    nodes: new Map(),
    progressState: new Map(),
    files: [],
    ended: false,
    currentNode: null,
  })

  const retire = (s: SessionState, status: string): void => {
    s.phase = 'closed'
    s.finalStatus = status
    if (status === 'lost') lostIds.add(s.id)
    if (status !== 'cancelled') {
      // Only a late answer can still concern it: drop what only a running session needs.
      s.graph = null
      s.nodes.clear()
      s.progressState.clear()
    }
    sessions.delete(s.id)
    recent.delete(s.id)
    recent.set(s.id, s)
    if (recent.size > MAX_RECENT_SESSIONS) {
      const oldest = recent.keys().next().value
      if (oldest !== undefined) recent.delete(oldest)
    }
  }

  const newNode = (id: string, startMs: number, status: NodeState['status']): NodeState => ({
    id,
    realId: null,
    displayId: null,
    parentId: null,
    startMs,
    endMs: status === 'cached' ? startMs : null,
    status,
    startUnknown: false,
    outputs: null,
    files: [],
    errorMessage: null,
    exceptionType: null,
    traceback: null,
    gpuUsed: null,
    gpuTorch: null,
    progress: null,
    previews: 0,
    emitted: false,
    blocked: null,
  })

  const nodeRun = (s: SessionState, n: NodeState): OpenNodeRun => {
    const realId = n.realId ?? (s.graph?.[n.id] ? n.id : null)
    return {
      session_id: s.id,
      node_id: n.id,
      // Ephemeral (expanded) nodes are in no prompt: their type is that of the prompt node they came from.
      node_type: s.graph?.[realId ?? n.id]?.class_type ?? null,
      timestamp_start: isoTime(n.startMs),
      timestamp_end: n.endMs === null ? null : isoTime(n.endMs),
      duration_ms:
        n.status === 'cached'
          ? 0
          : n.endMs === null || n.startUnknown
            ? null
            : Math.trunc(n.endMs) - Math.trunc(n.startMs),
      inputs: nodeInputs(s.graph?.[n.id], maxLen),
      outputs: n.outputs,
      error_message: n.errorMessage,
      exception_type: n.exceptionType,
      traceback: n.traceback,
      gpu_memory_used: n.gpuUsed,
      gpu_memory_torch: n.gpuTorch,
      display_node: n.displayId ?? n.id,
      real_node_id: realId,
      parent_node_id: n.parentId,
      progress: n.progress,
      previews: n.previews,
    }
  }

  const emitNode = (out: AuditEventInput[], s: SessionState, n: NodeState, timeMs: number): void => {
    if (n.status === 'running') return
    const record: NodeRunRecord = { ...nodeRun(s, n), status: n.status }
    n.emitted = true
    push(out, 'node.finished', timeMs, s.id, {
      node_run: toJsonObject(record),
      outputs: toJsonValue(n.files),
    })
  }

  const closeNode = (
    out: AuditEventInput[],
    s: SessionState,
    n: NodeState,
    status: NodeRunStatus,
    timeMs: number,
  ): void => {
    n.status = status
    n.endMs = timeMs
    emitNode(out, s, n, timeMs)
  }

  const startSession = async (out: AuditEventInput[], s: SessionState, timeMs: number): Promise<void> => {
    if (s.phase !== 'queued') return
    s.phase = 'running'
    s.startedAtMs = timeMs
    const environment = await getEnvironment()
    // One log event each time the environment changes (each session carries its own copy in its start patch).
    const envJson = environment ? canonicalJson(toJsonObject(environment)) : null
    if (environment && envJson !== envEmittedJson) {
      envEmittedJson = envJson
      push(out, 'environment.snapshot', timeMs, null, { environment: toJsonObject(environment) })
    }
    const patch: SessionPatch = { status: 'running', started_at: isoTime(timeMs), environment }
    push(out, 'execution.started', timeMs, s.id, { session: toJsonObject(patch) })
  }

  interface Change {
    readonly id: string
    readonly kind: 'start' | 'finish' | 'touch'
    readonly realId?: string | null
    readonly displayId?: string | null
    readonly parentId?: string | null
    readonly progress?: { value: number; max: number }
  }

  /** Applies node changes of one frame; takes one GPU sample first when a node really starts or ends. */
  const applyChanges = async (
    out: AuditEventInput[],
    s: SessionState,
    changes: readonly Change[],
    timeMs: number,
  ): Promise<void> => {
    const isTransition = (c: Change): boolean => {
      const n = s.nodes.get(c.id)
      if (c.kind === 'start') return !n || (n.status === 'cached' && !n.emitted)
      if (c.kind === 'finish') return !n || n.status === 'running'
      return !n
    }
    if (!changes.some(isTransition)) {
      for (const c of changes) applyChange(out, s, c, timeMs, null)
      return
    }
    const sample = await sampleNow()
    if (sample) applySample(sample, runningNodes())
    for (const c of changes) applyChange(out, s, c, timeMs, sample)
  }

  const applyChange = (
    out: AuditEventInput[],
    s: SessionState,
    c: Change,
    timeMs: number,
    sample: GpuSample | null,
  ): void => {
    let n = s.nodes.get(c.id)
    if (!n || (c.kind === 'start' && n.status === 'cached' && !n.emitted)) {
      if (c.kind === 'finish' && !n) {
        // Finished without our seeing it start (frames lost in a reconnect): no duration.
        n = newNode(c.id, timeMs, 'running')
        n.startUnknown = true
      } else {
        n = newNode(c.id, timeMs, 'running')
      }
      s.nodes.set(c.id, n)
      if (sample) applySample(sample, [n])
      if (!n.startUnknown) {
        push(out, 'node.started', timeMs, s.id, {
          node_id: c.id,
          node_type: s.graph?.[c.realId ?? c.id]?.class_type ?? null,
          display_node: c.displayId ?? null,
          real_node_id: c.realId ?? null,
          parent_node_id: c.parentId ?? null,
        })
      }
    }
    if (c.realId !== undefined && c.realId !== null) n.realId = c.realId
    if (c.displayId !== undefined && c.displayId !== null) n.displayId = c.displayId
    if (c.parentId !== undefined && c.parentId !== null) n.parentId = c.parentId
    if (c.progress && n.status === 'running') n.progress = c.progress
    if (c.kind === 'finish') {
      if (n.status === 'running') closeNode(out, s, n, 'success', timeMs)
      // A cached output node replays its UI and reports "finished": its record is complete now.
      else if (n.status === 'cached' && !n.emitted) emitNode(out, s, n, timeMs)
    }
  }

  const addFiles = (s: SessionState, n: NodeState, files: OutputFile[]): void => {
    const key = (f: OutputFile) => `${f.node_id}\u0000${f.type}\u0000${f.subfolder}\u0000${f.filename}`
    const seenNode = new Set(n.files.map(key))
    const seenSession = new Set(s.files.map(key))
    for (const f of files) {
      if (!seenNode.has(key(f))) n.files.push(f)
      if (!seenSession.has(key(f))) s.files.push(f)
    }
  }

  const finishSession = async (
    out: AuditEventInput[],
    s: SessionState,
    status: 'success' | 'error' | 'interrupted',
    timeMs: number,
    failedNodeId: string | null,
    extra: JsonObject,
    error: JsonValue,
    errorData: ExecutionErrorData | null,
  ): Promise<void> => {
    await startSession(out, s, timeMs)
    const open = [...s.nodes.values()].filter((n) => n.status === 'running')
    if (open.length > 0) {
      const sample = await sampleNow()
      if (sample) applySample(sample, open)
    }
    let failedSeen = false
    for (const n of open) {
      const failed = failedNodeId !== null && (n.id === failedNodeId || n.realId === failedNodeId)
      failedSeen ||= failed
      if (failed && status === 'error' && errorData) {
        n.errorMessage = errorData.exception_message ?? null
        n.exceptionType = errorData.exception_type ?? null
        n.traceback = errorData.traceback ?? null
        closeNode(out, s, n, 'error', timeMs)
      } else if (failed || status !== 'success') {
        closeNode(out, s, n, 'interrupted', timeMs)
      } else if (n.blocked !== null) {
        n.errorMessage = n.blocked
        n.exceptionType = 'ExecutionBlocked'
        closeNode(out, s, n, 'error', timeMs)
      } else {
        closeNode(out, s, n, 'success', timeMs)
      }
    }
    if (failedNodeId !== null && !failedSeen && !s.nodes.get(failedNodeId)?.emitted) {
      // The failing node was never seen running (it failed at once, or its frames were lost).
      const n = s.nodes.get(failedNodeId) ?? newNode(failedNodeId, timeMs, 'running')
      s.nodes.set(failedNodeId, n)
      n.startUnknown = true
      if (status === 'error' && errorData) {
        n.errorMessage = errorData.exception_message ?? null
        n.exceptionType = errorData.exception_type ?? null
        n.traceback = errorData.traceback ?? null
        closeNode(out, s, n, 'error', timeMs)
      } else {
        closeNode(out, s, n, 'interrupted', timeMs)
      }
    }
    for (const n of s.nodes.values()) {
      if (n.status === 'cached' && !n.emitted) emitNode(out, s, n, timeMs)
    }
    const startedAt = s.startedAtMs
    const patch: SessionPatch = {
      status,
      started_at: startedAt === null ? null : isoTime(startedAt),
      ended_at: isoTime(timeMs),
      duration_ms: startedAt === null ? null : Math.trunc(timeMs) - Math.trunc(startedAt),
      error,
      outputs: s.files,
    }
    push(out, 'execution.finished', timeMs, s.id, { ...extra, session: toJsonObject(patch) })
    retire(s, status)
  }

  // ------------------------------------------------------------------------------------------------------
  // frames

  const startsExecution = (msg: WsMessage): boolean =>
    msg.type === 'execution_start' ||
    msg.type === 'execution_cached' ||
    (msg.type === 'executing' && msg.data.node !== null)

  const isEnd = (msg: WsMessage): boolean =>
    msg.type === 'execution_success' ||
    (msg.type === 'execution_error' && msg.data.exception_type !== 'ExecutionBlocked') ||
    msg.type === 'execution_interrupted'

  const bufferFrame = (promptId: string, msg: WsMessage, timeMs: number): void => {
    for (const [id, p] of pending) {
      if (p.firstMs < timeMs - ttl) pending.delete(id)
      else break
    }
    let p = pending.get(promptId)
    if (!p) {
      p = { firstMs: timeMs, frames: [] }
      pending.set(promptId, p)
      if (pending.size > MAX_PENDING_PROMPTS) {
        const oldest = pending.keys().next().value
        if (oldest !== undefined) pending.delete(oldest)
      }
    }
    if (p.frames.length < MAX_PENDING_FRAMES) p.frames.push({ msg, timeMs })
  }

  const handleMessage = async (out: AuditEventInput[], msg: WsMessage, timeMs: number): Promise<void> => {
    if (msg.type === 'status' || msg.type === 'feature_flags' || msg.type === 'logs') return
    const promptId = msg.data.prompt_id
    // The reconnect form of `executing` names no prompt; nothing to attribute.
    if (promptId === undefined) return
    let s = sessions.get(promptId)
    if (!s) {
      const old = recent.get(promptId)
      if (old && old.finalStatus === 'cancelled' && startsExecution(msg)) {
        // The queue deletion lost the race against the worker: the prompt runs after all.
        recent.delete(promptId)
        old.phase = 'queued'
        old.finalStatus = null
        sessions.set(promptId, old)
        s = old
      } else if (old && old.finalStatus === 'lost' && isEnd(msg)) {
        // Reconciliation called it lost, yet ComfyUI finished it: say so with a new event, never silently.
        const status =
          msg.type === 'execution_success'
            ? 'success'
            : msg.type === 'execution_error'
              ? 'error'
              : 'interrupted'
        old.finalStatus = status
        lostIds.delete(promptId)
        push(out, 'session.corrected', timeMs, promptId, {
          session: {
            status,
            ended_at: isoTime(timeMs),
            status_reason: `closed as lost by reconciliation, then ComfyUI reported ${msg.type} on the socket`,
          },
          from: 'lost',
          to: status,
          source: 'socket',
        })
        return
      } else if (old) {
        return
      } else {
        bufferFrame(promptId, msg, timeMs)
        return
      }
    }
    await dispatch(out, s, msg, timeMs)
  }

  const dispatch = async (
    out: AuditEventInput[],
    s: SessionState,
    msg: WsMessage,
    timeMs: number,
  ): Promise<void> => {
    switch (msg.type) {
      case 'execution_start':
        await startSession(out, s, timeMs)
        return
      case 'execution_cached': {
        await startSession(out, s, timeMs)
        for (const id of msg.data.nodes) {
          if (!s.nodes.has(id)) s.nodes.set(id, newNode(id, timeMs, 'cached'))
        }
        push(out, 'execution.cached', timeMs, s.id, { nodes: msg.data.nodes })
        return
      }
      case 'executing': {
        const node = msg.data.node
        if (node === null) {
          // End marker: ComfyUI wrote its history entry. A session still open here ended unseen.
          s.ended = true
          s.currentNode = null
          return
        }
        s.currentNode = node
        await startSession(out, s, timeMs)
        await applyChanges(
          out,
          s,
          [{ id: node, kind: 'start', displayId: msg.data.display_node ?? null }],
          timeMs,
        )
        return
      }
      case 'progress': {
        const node = msg.data.node
        if (node === null || node === undefined) return
        s.currentNode = node
        await startSession(out, s, timeMs)
        await applyChanges(
          out,
          s,
          [
            {
              id: node,
              kind: s.nodes.has(node) ? 'touch' : 'start',
              progress: { value: msg.data.value, max: msg.data.max },
            },
          ],
          timeMs,
        )
        return
      }
      case 'progress_state': {
        const changes: Change[] = []
        for (const [id, entry] of Object.entries(msg.data.nodes)) {
          const fingerprint = `${entry.state}\u0000${entry.value}\u0000${entry.max}`
          if (s.progressState.get(id) === fingerprint) continue
          s.progressState.set(id, fingerprint)
          changes.push({
            id,
            kind: entry.state === 'finished' ? 'finish' : entry.state === 'running' ? 'start' : 'touch',
            realId: entry.real_node_id ?? null,
            displayId: entry.display_node_id ?? null,
            parentId: entry.parent_node_id ?? null,
            progress: { value: entry.value, max: entry.max },
          })
        }
        if (changes.length === 0) return
        if (changes.some((c) => c.kind === 'start')) await startSession(out, s, timeMs)
        await applyChanges(out, s, changes, timeMs)
        return
      }
      case 'executed': {
        await applyChanges(
          out,
          s,
          [{ id: msg.data.node, kind: 'touch', displayId: msg.data.display_node ?? null }],
          timeMs,
        )
        const n = s.nodes.get(msg.data.node)
        if (!n) return
        const ui = msg.data.output ?? null
        // A custom node's UI output may hold anything, secret-named keys too: the whole policy applies.
        const stored = ui === null ? null : truncateLongStrings(redactValue(ui, ['output', n.id]), maxLen)
        n.outputs = isJsonObject(stored) ? stored : null
        const files = outputFiles(msg.data.node, ui)
        if (redactText && options.onRedactedFile) {
          for (const f of files) {
            // The same function the emitted event goes through, so `recorded` is the name the log will hold.
            const recorded = {
              ...f,
              filename: redactString(f.filename, redactText),
              subfolder: redactString(f.subfolder, redactText),
            }
            if (recorded.filename === f.filename && recorded.subfolder === f.subfolder) continue
            try {
              options.onRedactedFile({ sessionId: s.id, nodeId: f.node_id, recorded, real: f })
            } catch (err) {
              onError(err)
            }
          }
        }
        addFiles(s, n, files)
        return
      }
      case 'execution_success':
        await finishSession(out, s, 'success', timeMs, null, {}, null, null)
        return
      case 'execution_error': {
        const data = msg.data
        const nodeId = data.node_id ?? null
        if (data.exception_type === 'ExecutionBlocked') {
          // Not fatal: the run goes on and may still succeed (§1.3).
          const n = nodeId === null ? undefined : s.nodes.get(nodeId)
          if (n && n.status === 'running') n.blocked = data.exception_message ?? 'ExecutionBlocked'
          push(out, 'node.error_blocked', timeMs, s.id, {
            node_id: nodeId,
            node_type: data.node_type ?? null,
            exception_message: truncateLongStrings(data.exception_message ?? null, maxLen),
          })
          return
        }
        const error = storedError(toJsonObject(data), options.redact, maxLen)
        await finishSession(out, s, 'error', timeMs, nodeId, { error_node: nodeId }, error, data)
        return
      }
      case 'execution_interrupted': {
        const nodeId = msg.data.node_id ?? null
        await finishSession(
          out,
          s,
          'interrupted',
          timeMs,
          nodeId,
          {
            interrupted: toJsonObject({
              node_id: nodeId,
              node_type: msg.data.node_type ?? null,
              executed: msg.data.executed ?? [],
            }),
          },
          null,
          null,
        )
        return
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // HTTP exchanges

  const submitterJson = (submitter: Submitter, clientId: string | null): JsonObject =>
    toJsonObject({ ...submitter, client_id: submitter.client_id ?? clientId })

  const handleSubmitted = async (
    out: AuditEventInput[],
    e: Parameters<CaptureTap['promptSubmitted']>[0],
  ): Promise<void> => {
    prefetchEnvironment()
    const raw = e.forwardedBody.length > 0 ? e.forwardedBody : e.body
    const analysis = options.analyzePromptBody
      ? await options.analyzePromptBody(raw, {
          ...(options.maxBodyTextBytes !== undefined ? { maxTextBytes: options.maxBodyTextBytes } : {}),
        })
      : analyzePromptBody(raw, {
          redact: options.redact,
          maxTextBytes: options.maxBodyTextBytes,
        })
    if (sessions.has(e.promptId)) onError(new Error(`capture: prompt_id ${e.promptId} submitted twice`))
    const s = newSession(e.promptId)
    s.upstreamClientId = e.upstreamClientId
    s.queuedAtMs = e.timeMs
    const patch: SessionPatch = {
      status: 'queued',
      http_status: null,
      number: null,
      client_id: e.upstreamClientId,
      prompt: analysis.ok ? analysis.prompt : null,
      workflow: analysis.ok ? analysis.workflow : null,
      prompt_sha256: analysis.ok ? analysis.prompt_sha256 : null,
      workflow_sha256: analysis.ok ? analysis.workflow_sha256 : null,
      // The seal is the gateway's copy of what this event says; the event itself is the record.
      extra_data: analysis.ok ? withoutSeal(analysis.extra_data) : null,
      validation: null,
      queued_at: isoTime(e.timeMs),
      started_at: null,
      ended_at: null,
      duration_ms: null,
      environment: null,
      models: analysis.ok ? analysis.models : [],
      seeds: analysis.ok ? analysis.seeds : [],
      outputs: [],
      error: null,
      status_reason: null,
      flags: [],
    }
    const payload: JsonObject = {
      session: { ...toJsonObject(patch), submitter: submitterJson(e.submitter, e.clientId) },
      downstream_client_id: e.clientId,
      body_bytes: raw.length,
    }
    if (analysis.ok) {
      s.graph = analysis.graph
    } else {
      payload.body_text = analysis.text
      payload.body_truncated = analysis.truncated
      payload.parse_error = analysis.reason
    }
    sessions.set(e.promptId, s)
    recent.delete(e.promptId)
    push(out, 'prompt.submitted', e.timeMs, e.promptId, payload)
    const early = pending.get(e.promptId)
    if (early) {
      pending.delete(e.promptId)
      for (const f of early.frames) {
        const current = sessions.get(e.promptId)
        if (!current) break
        await dispatch(out, current, f.msg, f.timeMs)
      }
    }
  }

  const handleAnswered = (out: AuditEventInput[], e: Parameters<CaptureTap['promptAnswered']>[0]): void => {
    const s = sessions.get(e.promptId) ?? recent.get(e.promptId)
    if (!s) onError(new Error(`capture: answer for unknown prompt ${e.promptId}`))
    if (e.status === 200 && !e.refusedBy && !e.error) {
      const parsed = parseWith(zPromptAccepted, e.body)
      const number = parsed.ok ? parsed.value.number : null
      const nodeErrors = parsed.ok ? (parsed.value.node_errors ?? {}) : {}
      const hasErrors = Object.keys(nodeErrors).length > 0
      const storedErrors: JsonValue = hasErrors
        ? redactValue(toJsonObject(nodeErrors), ['validation', 'node_errors'])
        : {}
      const validation = hasErrors ? { node_errors: storedErrors } : null
      if (s) {
        s.answered = true
        s.httpStatus = 200
        s.number = number
      }
      const patch: SessionPatch = { http_status: 200, number, validation }
      push(out, 'prompt.accepted', e.timeMs, e.promptId, {
        session: toJsonObject(patch),
        node_errors: storedErrors,
        ...(parsed.ok ? {} : { parse_error: parsed.reason }),
      })
      return
    }
    const body = parseJson(e.body)
    const validation: JsonValue = body.ok
      ? truncateLongStrings(redactValue(body.value, ['validation']), maxLen)
      : e.body.subarray(0, 65536).toString('utf8')
    const reason =
      e.refusedBy === 'gateway'
        ? 'refused by the gateway'
        : e.error
          ? `ComfyUI could not be reached: ${e.error}`
          : `ComfyUI refused the prompt (HTTP ${e.status})`
    const patch: SessionPatch = {
      status: 'rejected',
      http_status: e.status,
      validation,
      ended_at: isoTime(e.timeMs),
      status_reason: reason,
    }
    push(out, 'prompt.rejected', e.timeMs, e.promptId, {
      session: toJsonObject(patch),
      refused_by: e.refusedBy ?? 'comfyui',
      ...(e.error ? { error: e.error } : {}),
    })
    if (s) {
      s.answered = true
      s.httpStatus = e.status
      if (s.phase !== 'closed') retire(s, 'rejected')
    }
  }

  const cancelQueued = (
    out: AuditEventInput[],
    ids: Iterable<string>,
    timeMs: number,
    submitter: Submitter,
  ): void => {
    for (const id of ids) {
      const s = sessions.get(id)
      if (!s || s.phase !== 'queued' || s.httpStatus !== 200) continue
      const reason = `deleted from the queue by ${submitter.user}`
      const patch: SessionPatch = { status: 'cancelled', ended_at: isoTime(timeMs), status_reason: reason }
      push(out, 'session.cancelled', timeMs, id, {
        session: toJsonObject(patch),
        by: submitterJson(submitter, null),
      })
      retire(s, 'cancelled')
    }
  }

  const handleAction = (out: AuditEventInput[], e: Parameters<CaptureTap['action']>[0]): void => {
    const base: JsonObject = {
      method: e.method,
      path: e.path,
      http_status: e.status,
      submitter: submitterJson(e.submitter, null),
    }
    const ok = e.status >= 200 && e.status < 300
    const parsedBody = e.kind === 'upload' ? null : bodyJson(e.body)
    switch (e.kind) {
      case 'interrupt': {
        const req = parsedBody === null ? null : checkWith(zInterruptRequest, parsedBody)
        const promptId = req?.ok ? (req.value.prompt_id ?? null) : null
        const running = [...sessions.values()].filter((s) => s.phase === 'running').map((s) => s.id)
        // The body's prompt_id is any string a client sends: it names a session only when it is one. (The
        // payload keeps it, redacted like every payload string; an event's session id is never redacted.)
        const known =
          promptId !== null && (knownIds.has(promptId) || sessions.has(promptId) || recent.has(promptId))
        push(
          out,
          'action.interrupt',
          e.timeMs,
          known ? promptId : promptId === null && running.length === 1 ? (running[0] as string) : null,
          {
            ...base,
            prompt_id: promptId,
            scope: promptId === null ? 'global' : 'prompt',
            running_prompt_ids: running,
          },
        )
        return
      }
      case 'queue':
      case 'history': {
        const req = parsedBody === null ? null : checkWith(zQueueOrHistoryAction, parsedBody)
        const del = req?.ok ? (req.value.delete ?? []) : []
        const clear = req?.ok ? req.value.clear === true : false
        if (del.length > 0) {
          push(out, e.kind === 'queue' ? 'action.queue_delete' : 'action.history_delete', e.timeMs, null, {
            ...base,
            prompt_ids: del,
          })
          if (e.kind === 'queue' && ok) cancelQueued(out, del, e.timeMs, e.submitter)
        }
        if (clear) {
          push(out, e.kind === 'queue' ? 'action.queue_clear' : 'action.history_clear', e.timeMs, null, base)
          if (e.kind === 'queue' && ok) cancelQueued(out, [...sessions.keys()], e.timeMs, e.submitter)
        }
        if (del.length === 0 && !clear) {
          // A request that changes nothing is still someone's action on the queue or history.
          push(out, e.kind === 'queue' ? 'action.queue_delete' : 'action.history_delete', e.timeMs, null, {
            ...base,
            prompt_ids: [],
            request_unparsed: req === null || !req.ok,
          })
        }
        return
      }
      case 'upload': {
        const multipart = parseMultipart(e.body)
        const file = multipart.ok ? multipart.parts.find((p) => p.filename !== null) : undefined
        const field = (name: string): string | null => {
          const part = multipart.ok
            ? multipart.parts.find((p) => p.name === name && p.filename === null)
            : undefined
          return part ? part.data.toString('utf8') : null
        }
        const answer = e.responseBody ? parseWith(zUploadResponse, e.responseBody) : null
        push(out, 'action.upload', e.timeMs, null, {
          ...base,
          name: answer?.ok ? answer.value.name : (file?.filename ?? null),
          subfolder: answer?.ok ? answer.value.subfolder : (field('subfolder') ?? ''),
          type: answer?.ok ? answer.value.type : (field('type') ?? 'input'),
          original_filename: file?.filename ?? null,
          field: file?.name ?? null,
          sha256: file ? sha256Hex(file.data) : null,
          bytes: file ? file.data.length : null,
          overwrite: field('overwrite'),
          ...(multipart.ok ? {} : { parse_error: multipart.reason }),
        })
        return
      }
      case 'free': {
        const req = parsedBody === null ? null : checkWith(zFreeRequest, parsedBody)
        push(out, 'action.free', e.timeMs, null, {
          ...base,
          unload_models: req?.ok ? (req.value.unload_models ?? null) : null,
          free_memory: req?.ok ? (req.value.free_memory ?? null) : null,
        })
        return
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // reconciliation

  const openSessions = (): OpenSession[] =>
    [...sessions.values()].map((s) => ({
      session_id: s.id,
      status: s.phase === 'running' ? 'running' : 'queued',
      accepted: s.httpStatus === 200,
      client_id: s.upstreamClientId,
      number: s.number,
      queued_at: s.queuedAtMs === null ? null : isoTime(s.queuedAtMs),
      started_at: s.startedAtMs === null ? null : isoTime(s.startedAtMs),
      running_nodes: [...s.nodes.values()].filter((n) => n.status === 'running').map((n) => nodeRun(s, n)),
      // A node seen only finishing may have been a cached output node: let history say so.
      recorded_nodes: [...s.nodes.values()]
        .filter((n) => n.status !== 'running' && !n.startUnknown)
        .map((n) => n.id),
      ended: s.ended,
    }))

  /**
   * Rebuilds the `prompt.submitted` (and `prompt.accepted`) of a prompt ComfyUI holds whose id the log does
   * not know, from the gateway's own seal in its `extra_data`: the previous process forwarded it and died
   * before the event was committed. Recorded as recovered, with what it rests on. Returns why not otherwise.
   */
  const recoverSubmission = async (
    out: AuditEventInput[],
    tuple: PromptTuple,
    source: 'queue_running' | 'queue_pending' | 'history',
    timeMs: number,
  ): Promise<{ ok: true } | { ok: false; reason: string | null }> => {
    if (!options.submissionSeal) return { ok: false, reason: null }
    const [number, promptId, prompt, extra] = tuple
    const opened = options.submissionSeal.open(
      isJsonObject(extra) ? extra[SUBMISSION_SEAL_KEY] : undefined,
      promptId,
    )
    if (!opened.ok) return { ok: false, reason: opened.kind === 'invalid' ? opened.reason : null }
    const claim = opened.claim
    const digest = promptDigest(prompt)
    // A null digest: the graph was too large to digest on the proxy path; the seal binds the prompt id only.
    if (claim.prompt_digest !== null && claim.prompt_digest !== digest) {
      // The id was queued again, directly, with another graph: the seal speaks for the first one only.
      return {
        ok: false,
        reason: `sealed for another graph (sealed ${claim.prompt_digest}, found ${digest})`,
      }
    }
    const analysis = analyzePrompt(prompt, withoutSeal(extra ?? null) ?? undefined, options.redact)
    const s = newSession(promptId)
    s.upstreamClientId = claim.upstream_client_id
    s.queuedAtMs = claim.submitted_at_ms
    s.graph = analysis.graph
    s.answered = true
    s.httpStatus = 200
    s.number = number
    knownIds.add(promptId)
    sessions.set(promptId, s)
    const createTime = isJsonObject(extra) && typeof extra.create_time === 'number' ? extra.create_time : null
    const evidence: JsonObject = {
      source: source === 'history' ? 'comfyui_history' : 'comfyui_queue',
      queue_position: source === 'history' ? null : source,
      seal: "opened and authenticated with this gateway's key",
      prompt_digest_matches: claim.prompt_digest === null ? null : true,
      comfyui_number: number,
      comfyui_create_time: createTime,
      recovered_at: isoTime(timeMs),
      why: 'the gateway stopped after forwarding the prompt and before its prompt.submitted was committed',
    }
    const patch: SessionPatch = {
      status: 'queued',
      http_status: null,
      number: null,
      client_id: claim.upstream_client_id,
      prompt: analysis.prompt,
      workflow: analysis.workflow,
      prompt_sha256: analysis.prompt_sha256,
      workflow_sha256: analysis.workflow_sha256,
      extra_data: analysis.extra_data,
      validation: null,
      queued_at: isoTime(claim.submitted_at_ms),
      started_at: null,
      ended_at: null,
      duration_ms: null,
      environment: null,
      models: analysis.models,
      seeds: analysis.seeds,
      outputs: [],
      error: null,
      status_reason: "prompt.submitted rebuilt from the gateway's seal in ComfyUI's copy of the prompt",
      flags: ['recovered'],
    }
    push(out, 'prompt.submitted', claim.submitted_at_ms, promptId, {
      session: { ...toJsonObject(patch), submitter: submitterJson(claim.submitter, null) },
      downstream_client_id: claim.submitter.client_id,
      recovered: true,
      evidence,
    })
    // ComfyUI queues a prompt only when it answers 200 (protocol §2.1): that it holds it is the answer.
    const accepted: SessionPatch = { http_status: 200, number, validation: null }
    push(out, 'prompt.accepted', createTime ?? timeMs, promptId, {
      session: toJsonObject(accepted),
      node_errors: {},
      recovered: true,
      evidence: { source: evidence.source, comfyui_number: number },
    })
    const early = pending.get(promptId)
    if (early) {
      pending.delete(promptId)
      for (const f of early.frames) {
        const current = sessions.get(promptId)
        if (!current) break
        await dispatch(out, current, f.msg, f.timeMs)
      }
    }
    return { ok: true }
  }

  /** A session closed as lost that ComfyUI's history shows finished: a new event says so. */
  const correctFromHistory = (
    out: AuditEventInput[],
    id: string,
    entry: HistoryEntry,
    timeMs: number,
  ): void => {
    const outcome = historyOutcome(entry)
    const endedAt = outcome.ended_ms === null ? null : isoTime(outcome.ended_ms)
    lostIds.delete(id)
    const old = recent.get(id)
    if (old) old.finalStatus = outcome.status
    push(out, 'session.corrected', timeMs, id, {
      session: toJsonObject({
        status: outcome.status,
        ended_at: endedAt,
        error: outcome.error ? storedError(outcome.error, options.redact, maxLen) : null,
        outputs: outcome.outputs,
        status_reason: `closed as lost by reconciliation, then ComfyUI's history showed it ended: ${outcome.status}`,
      }),
      outputs: toJsonValue(outcome.outputs),
      from: 'lost',
      to: outcome.status,
      source: 'history',
      evidence: {
        comfyui_number: outcome.number,
        started_at: outcome.started_ms === null ? null : isoTime(outcome.started_ms),
        ended_at: endedAt,
        decided_at: isoTime(timeMs),
      },
    })
  }

  const handleReconcile = async (out: AuditEventInput[], input: CaptureReconcileInput): Promise<void> => {
    const timeMs = now()
    let history: History = {}
    if (isJsonObject(input.history)) {
      // Entry by entry, so one odd entry does not hide the others.
      for (const [id, entry] of Object.entries(input.history)) {
        const checked = checkWith(zHistory, { [id]: entry })
        if (checked.ok) Object.assign(history, checked.value)
        else onError(new Error(`capture: history entry ${id} skipped: ${checked.reason}`))
      }
    } else {
      history = {}
    }
    let queue: Queue | null = null
    if (input.queue !== null) {
      const checked = checkWith(zQueue, input.queue)
      if (checked.ok) queue = checked.value
      else onError(new Error(`capture: /queue answer not understood: ${checked.reason}`))
    }
    const known = (id: string): boolean =>
      knownIds.has(id) || sessions.has(id) || recent.has(id) || (input.isKnown?.(id) ?? false)
    // Prompts of this gateway whose prompt.submitted a crash lost: rebuilt before anything else about them.
    const recovered = new Set<string>()
    const sealRejected = new Map<string, string>()
    const candidates: [PromptTuple, 'queue_running' | 'queue_pending' | 'history'][] = [
      ...(queue?.queue_running ?? []).map((t) => [t, 'queue_running'] as [PromptTuple, 'queue_running']),
      ...(queue?.queue_pending ?? []).map((t) => [t, 'queue_pending'] as [PromptTuple, 'queue_pending']),
      ...Object.values(history).map((e) => [e.prompt, 'history'] as [PromptTuple, 'history']),
    ]
    for (const [tuple, source] of candidates) {
      const id = tuple[1]
      if (recovered.has(id) || known(id)) continue
      const result = await recoverSubmission(out, tuple, source, timeMs)
      if (result.ok) recovered.add(id)
      else if (result.reason !== null) sealRejected.set(id, result.reason)
    }
    // Lost, yet ComfyUI's history shows it ended (it was queued or running after all).
    for (const [id, entry] of Object.entries(history)) {
      if (lostIds.has(id) && !sessions.has(id)) correctFromHistory(out, id, entry, timeMs)
    }
    const result = reconcileSessions({
      open: (input.sessionIds
        ? openSessions().filter((o) => input.sessionIds!.has(o.session_id) || recovered.has(o.session_id))
        : openSessions()
      ).map((o) => {
        if (!input.mayBeLost) return o
        const may = input.mayBeLost.has(o.session_id)
        return { ...o, accepted: may, ...(may && !o.accepted ? { orphaned: true } : {}) }
      }),
      history,
      queue,
      timeMs,
      comfyRestarted: input.comfyRestarted,
      redact: options.redact,
      maxInputStringLength: maxLen,
    })
    for (const id of result.closed) {
      const s = sessions.get(id)
      if (!s) continue
      for (const n of s.nodes.values()) if (n.status === 'cached' && !n.emitted) emitNode(out, s, n, timeMs)
    }
    for (const e of result.events) {
      // A recovered session keeps saying so when history closes it.
      const session = e.payload.session
      if (
        e.kind === 'session.reconciled' &&
        e.session_id !== null &&
        recovered.has(e.session_id) &&
        isJsonObject(session)
      )
        out.push({
          ...e,
          payload: { ...e.payload, session: { ...session, flags: ['recovered', 'reconciled'] } },
        })
      else out.push(e)
    }
    const lost = new Set(result.events.filter((e) => e.kind === 'session.lost').map((e) => e.session_id))
    for (const id of result.closed) {
      const s = sessions.get(id)
      // Remember a lost one as lost: if ComfyUI later reports its end, that becomes a session.corrected.
      if (s) retire(s, lost.has(id) ? 'lost' : 'reconciled')
    }
    if (input.detectBypass || input.isKnown) {
      const bypass = bypassSessions({
        history,
        isKnown: known,
        timeMs,
        redact: options.redact,
        maxInputStringLength: maxLen,
        sealRejected: (id) => sealRejected.get(id) ?? null,
      })
      for (const e of bypass) if (e.session_id !== null) knownIds.add(e.session_id)
      out.push(...bypass)
    }
  }

  // ------------------------------------------------------------------------------------------------------

  const handleRefused = (out: AuditEventInput[], e: Parameters<CaptureTap['promptRefused']>[0]): void => {
    const answer = parseJson(e.answer)
    // No session id: the id belongs to an existing session, which this refusal must leave untouched.
    push(out, 'prompt.refused', e.timeMs, null, {
      prompt_id: e.promptId,
      reason: e.reason,
      http_status: e.status,
      submitter: submitterJson(e.submitter, e.clientId),
      downstream_client_id: e.clientId,
      body_bytes: e.body.length,
      body_sha256: sha256Hex(e.body),
      answer: answer.ok ? truncateLongStrings(answer.value, maxLen) : null,
    })
  }

  /**
   * Counts a preview on its node: type 4 names prompt and node; type 1 names neither and belongs to the
   * node running for the socket's client (ComfyUI sends it right after that node's `progress`). A preview
   * of a prompt or node this capture does not know (a prompt from elsewhere) has nowhere to be counted.
   */
  const handlePreview = (p: PreviewTarget, upstreamClientId: string): void => {
    let s: SessionState | undefined
    let nodeId: string | null = p.nodeId
    if (p.promptId !== null) s = sessions.get(p.promptId)
    else {
      for (const c of sessions.values())
        if (c.upstreamClientId === upstreamClientId && c.phase === 'running' && c.currentNode !== null) s = c
      nodeId = s?.currentNode ?? null
    }
    const n = nodeId === null ? undefined : s?.nodes.get(nodeId)
    if (n && n.status === 'running') n.previews++
  }

  return {
    promptSubmitted(e) {
      knownIds.add(e.promptId)
      enqueue((out) => handleSubmitted(out, e))
    },
    promptRefused(e) {
      enqueue((out) => handleRefused(out, e))
    },
    loadKnownPromptIds(ids) {
      for (const id of ids) knownIds.add(id)
    },
    loadLostSessionIds(ids) {
      for (const id of ids) lostIds.add(id)
    },
    isPromptIdKnown: (id) => knownIds.has(id) || sessions.has(id) || recent.has(id),
    claimPromptId(id) {
      if (knownIds.has(id) || sessions.has(id) || recent.has(id)) return false
      knownIds.add(id)
      return true
    },
    promptAnswered(e) {
      enqueue((out) => handleAnswered(out, e))
    },
    frame(e) {
      const { frame } = e
      if (frame.isBinary) {
        // Only the count of previews is recorded: the hub read the few header bytes, so the queued work
        // holds no image.
        const preview = frame.preview
        if (preview) enqueue(() => handlePreview(preview, e.upstreamClientId))
        return
      }
      enqueue(async (out) => {
        const checked = frame.checked()
        if (checked.ok) await handleMessage(out, checked.message, e.timeMs)
        else if (checked.invalid !== null) onError(new Error(`capture: ${checked.invalid}`))
      })
    },
    action(e) {
      enqueue((out) => handleAction(out, e))
    },
    async flush() {
      let current: Promise<void>
      do {
        current = chain
        await current
      } while (current !== chain)
    },
    openSessions,
    reconcile(input) {
      enqueue((out) => handleReconcile(out, input))
    },
    resume(list) {
      enqueue(() => {
        for (const r of list) {
          const rec = r.session
          if (sessions.has(rec.session_id)) continue
          knownIds.add(rec.session_id)
          const s = newSession(rec.session_id)
          s.upstreamClientId = rec.client_id
          s.phase = rec.status === 'running' ? 'running' : 'queued'
          s.answered = rec.http_status !== null
          s.httpStatus = rec.http_status
          s.number = rec.number
          s.queuedAtMs = rec.queued_at ? Date.parse(rec.queued_at) : null
          s.startedAtMs = rec.started_at ? Date.parse(rec.started_at) : null
          const graph = rec.prompt === null ? null : checkWith(zPromptGraph, rec.prompt)
          s.graph = graph && graph.ok ? graph.value : null
          for (const run of r.nodeRuns) {
            const n = newNode(run.node_id, Date.parse(run.timestamp_start), run.status)
            n.endMs = run.timestamp_end ? Date.parse(run.timestamp_end) : n.startMs
            n.emitted = true
            n.realId = run.real_node_id
            n.displayId = run.display_node
            n.parentId = run.parent_node_id
            n.previews = run.previews ?? 0
            s.nodes.set(n.id, n)
          }
          for (const [id, startMs] of r.startedNodes) {
            if (!s.nodes.has(id)) s.nodes.set(id, newNode(id, startMs, 'running'))
          }
          sessions.set(s.id, s)
        }
      })
    },
    refreshEnvironment() {
      envGeneration++
      envCache = null
      envInFlight = null
    },
    close() {
      closed = true
      if (timer) clearInterval(timer)
      timer = null
      pending.clear()
    },
  }
}

/**
 * The state capture keeps per prompt, and the context every part of capture shares: options with their
 * defaults, the maps of sessions (open, recently closed, frames waiting for their submission) and the one
 * `push` that words events. The parts in session-fold.ts, message-fold.ts, prompt-exchange.ts and
 * capture-recovery.ts operate on it; only the serial queue runs them, one at a time.
 */
import { parseJson } from '../audit/json.js'
import { reportError } from '../audit/report-error.js'
import type {
  AuditEventInput,
  AuditEventKind,
  FileRef,
  JsonObject,
  JsonValue,
  NodeRunStatus,
  SessionRecord,
} from '../audit/types.js'
import { createGpuSampler, type GpuSampler } from './gpu-sampler.js'
import { isoTime } from './json-value.js'
import { type TextRedactor } from './redact-event.js'
import { DEFAULT_MAX_INPUT_STRING_LENGTH, stripSensitive } from './prompt-analysis.js'
import { type PromptGraph, type WsMessage } from '../comfyui/schemas.js'
import type { CaptureOptions } from './capture.js'

export type SessionPatch = Partial<Omit<SessionRecord, 'origin' | 'session_id'>>
export type OutputFile = FileRef & { node_id: string }

export interface NodeState {
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

export interface SessionState {
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

/** One node change a frame brings: a start, a finish, or new details (progress, ids). */
export interface Change {
  readonly id: string
  readonly kind: 'start' | 'finish' | 'touch'
  readonly realId?: string | null
  readonly displayId?: string | null
  readonly parentId?: string | null
  readonly progress?: { value: number; max: number }
}

export const MAX_RECENT_SESSIONS = 1024
export const MAX_PENDING_PROMPTS = 256
export const MAX_PENDING_FRAMES = 4096

/** A small JSON request body; empty means `{}` (ComfyUI treats a missing body so), unparseable means null. */
export function bodyJson(body: Buffer): JsonValue | null {
  if (body.length === 0) return {}
  const parsed = parseJson(body)
  return parsed.ok ? parsed.value : null
}

export function newSession(id: string): SessionState {
  return {
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
  }
}

export function newNode(id: string, startMs: number, status: NodeState['status']): NodeState {
  return {
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
  }
}

/** What every part of capture shares. Built once by {@link createCore}. */
export type CaptureCore = ReturnType<typeof createCore>

/** The shared context of one capture. */
export function createCore(options: CaptureOptions) {
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
  // Set by close(): queued work and timers stop.
  const flags = { closed: false }
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

  /** Whether a prompt id is known (see Capture.isPromptIdKnown): the one place that answers it. */
  const isKnown = (id: string): boolean => knownIds.has(id) || sessions.has(id) || recent.has(id)

  return {
    options,
    now,
    onError,
    maxLen,
    interval,
    ttl,
    envTimeout,
    envTtl,
    sampler,
    redactText,
    sessions,
    recent,
    knownIds,
    pending,
    lostIds,
    flags,
    push,
    redactValue,
    isKnown,
  }
}

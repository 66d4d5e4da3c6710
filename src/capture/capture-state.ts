/**
 * The state of the session machine (session-machine.ts): the maps of sessions (open, recently closed, frames
 * waiting for their submission), the index of known ids, and its configuration. The parts in session-fold.ts,
 * message-fold.ts, prompt-exchange.ts, capture-actions.ts and capture-recovery.ts operate on it; only a
 * machine step runs them.
 */
import { parseJson } from '../audit/json.js'
import type { FileRef, JsonObject, JsonValue, NodeRunStatus } from '../audit/types.js'
import { torchMiB, usedMiB, type GpuSample } from './gpu-sampler.js'
import { type TextRedactor } from './redact-event.js'
import { stripSensitive, type Redactor } from './prompt-analysis.js'
import type { SubmissionSeal } from './submission-seal.js'
import { type PromptGraph, type WsMessage } from '../comfyui/schemas.js'

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

/** A frame that arrived before its prompt's submission. */
export interface PendingFrame {
  readonly msg: WsMessage
  readonly timeMs: number
}

interface PendingFrames {
  firstMs: number
  frames: PendingFrame[]
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

/** What the session machine is configured with: pure functions and limits, nothing that does I/O. */
export interface MachineConfig {
  /** Redaction hook of stored prompt, extra_data, validation, error and node output values. */
  readonly redact?: Redactor
  /** Text rules applied to every string of every event (the serial queue applies them; recorded files too). */
  readonly redactText: TextRedactor | null
  /** Whether someone wants to hear of output files whose name redaction changed (`onRedactedFile`). */
  readonly reportRedactedFiles: boolean
  readonly maxInputStringLength: number
  readonly pendingFrameTtlMillis: number
  /** Opens sealed attributions (an HMAC check: synchronous, no I/O). */
  readonly submissionSeal?: Pick<SubmissionSeal, 'open'>
}

/** An output file as the log records it (redacted) and as ComfyUI named it. */
export interface RedactedFile {
  readonly sessionId: string
  readonly nodeId: string
  readonly recorded: FileRef
  readonly real: FileRef
}

/** What every part of the machine shares. Built once by {@link createCore}. */
export type CaptureCore = ReturnType<typeof createCore>

/**
 * The state of one session machine and the helpers its parts share. What a step reports besides events
 * (errors, redacted file names) is collected in `notes` and handed out by the step (session-machine.ts).
 */
export function createCore(config: MachineConfig) {
  const notes = { errors: [] as unknown[], redactedFiles: [] as RedactedFile[] }
  const onError = (err: unknown): void => {
    notes.errors.push(err)
  }
  const { redactText } = config
  const maxLen = config.maxInputStringLength
  const ttl = config.pendingFrameTtlMillis

  const sessions = new Map<string, SessionState>()
  const recent = new Map<string, SessionState>()
  // Every prompt id ever known, never forgotten while the process lives: a second session for one id would
  // overwrite the first one's record (item 1 of issue 10), and a bypass for a pruned id would resurrect it.
  // ~100 bytes an id: a million sessions cost ~100 MB, the price of never taking a record over.
  const knownIds = new Set<string>()
  const pending = new Map<string, PendingFrames>()
  // Closed as lost and not corrected since: the ones a later history entry corrects.
  const lostIds = new Set<string>()
  // The environment last written to the log: a snapshot event only when it changes.
  const envLog = { emittedJson: null as string | null }

  const redactValue = (value: JsonValue, path: string[]): JsonValue => {
    const clean = stripSensitive(value)
    return config.redact ? config.redact(clean, path) : clean
  }

  /** Whether a prompt id is known (see Capture.isPromptIdKnown): the one place that answers it. */
  const isKnown = (id: string): boolean => knownIds.has(id) || sessions.has(id) || recent.has(id)

  return {
    config,
    notes,
    onError,
    maxLen,
    ttl,
    redactText,
    sessions,
    recent,
    knownIds,
    pending,
    lostIds,
    envLog,
    redactValue,
    isKnown,
  }
}

/** The nodes still running, in every open session (a GPU sample belongs to all of them). */
export function* runningNodes(sessions: ReadonlyMap<string, SessionState>): Generator<NodeState> {
  for (const s of sessions.values()) {
    for (const n of s.nodes.values()) if (n.status === 'running') yield n
  }
}

/** Folds one GPU sample into nodes: each keeps the highest reading seen while it ran. */
export function applySample(sample: GpuSample, nodes: Iterable<NodeState>): void {
  const used = usedMiB(sample)
  const torch = torchMiB(sample)
  for (const n of nodes) {
    n.gpuUsed = n.gpuUsed === null ? used : Math.max(n.gpuUsed, used)
    n.gpuTorch = n.gpuTorch === null ? torch : Math.max(n.gpuTorch, torch)
  }
}

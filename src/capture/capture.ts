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
import type {
  AuditEventInput,
  EnvironmentSnapshot,
  FileRef,
  JsonValue,
  NodeRunRecord,
  SessionRecord,
} from '../audit/types.js'
import { type GpuSample } from './gpu-sampler.js'
import type { PreviewTarget } from '../comfyui/frames.js'
import { type TextRedactor } from './redact-event.js'
import { type PromptBodyAnalysis, type Redactor } from './prompt-analysis.js'
import { type SubmissionSeal } from './submission-seal.js'
import { type OpenSession } from './reconcile.js'
import { checkWith, zPromptGraph } from '../comfyui/schemas.js'
import type { CaptureTap } from './tap.js'
import { createCore, newNode, newSession, type CaptureCore, type SessionState } from './capture-state.js'
import { captureEnvironment } from './capture-environment.js'
import { nodeChanges, nodeRecords, sessionEnd } from './session-fold.js'
import { messageDispatch, messageIntake, outputsAndErrors, type FoldContext } from './message-fold.js'
import { promptExchange } from './prompt-exchange.js'
import { captureActions } from './capture-actions.js'
import { reconciliation, submissionRecovery } from './capture-recovery.js'
import { serialQueue } from './serial-queue.js'

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
interface RedactedFile {
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
   * or committed), reserved by {@link claimPromptId}, recorded as a bypass, or held by ComfyUI under one of
   * the gateway's client ids ({@link notePromptIdHeld}). Synchronous: the proxy path and the bypass sweep ask
   * it without waiting on the store. This is the one place that answers the question.
   */
  isPromptIdKnown(promptId: string): boolean
  /** Reserves a prompt id: false when it is already known, true when it was free (and is known from now on). */
  claimPromptId(promptId: string): boolean
  /**
   * ComfyUI holds this prompt under one of the gateway's client ids (the socket hub saw it queued or
   * starting): it is known from now on, so no client reuses its id. Reconciliation still treats it as
   * unrecorded until the log holds it, so a submission a crash lost is still rebuilt from its seal.
   */
  notePromptIdHeld(promptId: string): void
  /**
   * Whether `sessionId` was taken back by {@link resume}: a session a previous gateway process left open, whose
   * answer from ComfyUI went with that process (reconciliation may call it lost before any answer).
   */
  isInheritedSession(sessionId: string): boolean
  /**
   * Forgets the environment snapshot: the next session takes a new one. Call it when ComfyUI may have
   * restarted (its socket came back, or `/system_stats` answered differently): versions, devices and custom
   * node packs change only across a restart. A snapshot asked before this call is not used after it.
   */
  refreshEnvironment(): void
  /** Stops timers and drops further input. Idempotent. */
  close(): void
}

/** Creates a capture. See {@link CaptureOptions}. */
export function createCapture(options: CaptureOptions): Capture {
  const core = createCore(options)
  const env = captureEnvironment(core)
  const records = nodeRecords(core)
  const changes = nodeChanges({ ...core, ...env, ...records })
  const fold: FoldContext = {
    ...core,
    ...env,
    ...records,
    ...changes,
    ...sessionEnd({ ...core, ...env, ...records, ...changes }),
  }
  const dispatch = messageDispatch({ ...fold, ...outputsAndErrors(fold) })
  const intake = messageIntake({ ...fold, ...dispatch })
  const exchange = promptExchange({ ...fold, ...intake })
  const actions = captureActions({ ...core, ...records })
  const recon = reconciliation({ ...core, ...records, ...submissionRecovery({ ...core, ...intake }) })
  const queue = serialQueue(core, env.updateTimer)
  const { enqueue } = queue
  const { sessions, knownIds, lostIds, pending, flags, isKnown, onError } = core
  // Apart from knownIds: reconciliation's recovery and bypass checks must still see these as unrecorded.
  const heldUpstream = new Set<string>()
  const inherited = new Set<string>()
  const known = (id: string): boolean => isKnown(id) || heldUpstream.has(id)

  return {
    promptSubmitted(e) {
      knownIds.add(e.promptId)
      enqueue((out) => exchange.handleSubmitted(out, e))
    },
    promptRefused(e) {
      enqueue((out) => exchange.handleRefused(out, e))
    },
    loadKnownPromptIds(ids) {
      for (const id of ids) knownIds.add(id)
    },
    loadLostSessionIds(ids) {
      for (const id of ids) lostIds.add(id)
    },
    isPromptIdKnown: known,
    claimPromptId(id) {
      if (known(id)) return false
      knownIds.add(id)
      return true
    },
    notePromptIdHeld(id) {
      if (!isKnown(id)) heldUpstream.add(id)
    },
    isInheritedSession: (id) => inherited.has(id),
    promptAnswered(e) {
      enqueue((out) => exchange.handleAnswered(out, e))
    },
    frame(e) {
      const { frame } = e
      if (frame.isBinary) {
        // Only the count of previews is recorded: the hub read the few header bytes, so the queued work
        // holds no image.
        const preview = frame.preview
        if (preview) enqueue(() => countPreview(sessions, preview, e.upstreamClientId))
        return
      }
      enqueue(async (out) => {
        const checked = frame.checked()
        if (checked.ok) await intake.handleMessage(out, checked.message, e.timeMs)
        else if (checked.invalid !== null) onError(new Error(`capture: ${checked.invalid}`))
      })
    },
    action(e) {
      enqueue((out) => actions.handleAction(out, e))
    },
    flush: queue.flush,
    openSessions: recon.openSessions,
    reconcile(input) {
      enqueue((out) => recon.handleReconcile(out, input))
    },
    resume(list) {
      for (const r of list) inherited.add(r.session.session_id)
      enqueue(() => resumeSessions(core, list))
    },
    refreshEnvironment: env.refresh,
    close() {
      flags.closed = true
      env.stopTimer()
      pending.clear()
    },
  }
}

/**
 * Counts a preview on its node: type 4 names prompt and node; type 1 names neither and belongs to the
 * node running for the socket's client (ComfyUI sends it right after that node's `progress`). A preview
 * of a prompt or node this capture does not know (a prompt from elsewhere) has nowhere to be counted.
 */
function countPreview(
  sessions: ReadonlyMap<string, SessionState>,
  p: PreviewTarget,
  upstreamClientId: string,
): void {
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

/** Takes back sessions a previous process left open, with the node runs it had recorded. */
function resumeSessions(c: CaptureCore, list: readonly ResumedSession[]): void {
  const { sessions, knownIds } = c
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
}

/**
 * Capture: turns the traffic the gateway proxies into audit events. Tap calls only enqueue; a single serial
 * worker (serial-queue.ts) does the I/O a step needs (a prompt body's analysis, the environment snapshot, a
 * GPU sample), then steps the pure session machine (session-machine.ts) and emits its events, so events keep
 * the order in which the gateway saw the bytes, and nothing here ever blocks or throws into the proxy.
 *
 * Timing follows comfyui-protocol.md §7.7: a node starts at its first `progress_state` "running" or
 * `executing`, and ends at `progress_state` "finished"; the failing node never reaches "finished" and is
 * closed by `execution_error`. `progress_state` frames repeat every node seen so far, so they are diffed
 * per prompt and folded into node records; no event is emitted per frame.
 */
import { reportError } from '../audit/report-error.js'
import { DEFAULT_MAX_INPUT_LENGTH } from '../config/defaults.js'
import type {
  AuditEventInput,
  EnvironmentSnapshot,
  JsonValue,
  NodeRunRecord,
  SessionRecord,
} from '../audit/types.js'
import { type GpuSample } from './gpu-sampler.js'
import { type TextRedactor } from './redact-event.js'
import { analyzePromptBody, type PromptBodyAnalysis, type Redactor } from './prompt-analysis.js'
import { type SubmissionSeal } from './submission-seal.js'
import { type OpenSession } from './reconcile.js'
import type { CaptureTap } from './tap.js'
import type { PendingFrame, RedactedFile } from './capture-state.js'
import { captureEnvironment } from './capture-environment.js'
import type { Resources } from './session-fold.js'
import type { Needs } from './message-fold.js'
import { submittedBody } from './prompt-exchange.js'
import { serialQueue } from './serial-queue.js'
import { createSessionMachine, type MachineInput, type StepResult } from './session-machine.js'

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
   * most {@link environmentTtlMillis}, or until {@link Capture.refreshEnvironment} says ComfyUI may have changed.
   */
  readonly environment?: () => Promise<EnvironmentSnapshot | null>
  /** Longest time one environment snapshot is used for new sessions, ms (default 60 s). */
  readonly environmentTtlMillis?: number
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
  readonly gpuSampleIntervalMillis?: number
  /** Longest string kept in node inputs/outputs before it becomes `{truncated, length, sha256}` (default 4096, as the config). */
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
  readonly pendingFrameTtlMillis?: number
  /** How long a transition waits for the environment snapshot, ms (default 5000). */
  readonly environmentTimeoutMillis?: number
  /**
   * Opens the gateway's sealed attributions (`extra_data.comfy_audit`, submission-seal.ts). With it,
   * reconciliation rebuilds the `prompt.submitted` of a prompt ComfyUI holds but the log lacks (a crash
   * between the 200 and the commit), marked `recovered`, instead of calling it a bypass.
   */
  readonly submissionSeal?: Pick<SubmissionSeal, 'open'>
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

/** Creates a capture: the session machine (session-machine.ts) behind the serial queue. */
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
  const redactText: TextRedactor | null =
    options.redactText ??
    (options.redact
      ? (text) => {
          const clean = options.redact!(text, ['text'])
          // A policy that summarises long values returns an object: its text form holds no secret either.
          return typeof clean === 'string' ? clean : JSON.stringify(clean)
        }
      : null)
  const machine = createSessionMachine({
    redact: options.redact,
    redactText,
    reportRedactedFiles: options.onRedactedFile !== undefined,
    maxInputStringLength: options.maxInputStringLength ?? DEFAULT_MAX_INPUT_LENGTH,
    pendingFrameTtlMillis: options.pendingFrameTtlMillis ?? 60_000,
    submissionSeal: options.submissionSeal,
  })
  // Set by close(): queued work and timers stop.
  const flags = { closed: false }
  const env = captureEnvironment(options, { now, onError, machine, flags })
  const queue = serialQueue({ emit: options.emit, onError, redactText, flags }, env.updateTimer)
  const { enqueue } = queue
  // Apart from the machine's known ids: reconciliation's recovery and bypass checks must still see these
  // as unrecorded.
  const heldUpstream = new Set<string>()
  const inherited = new Set<string>()
  const known = (id: string): boolean => machine.isKnown(id) || heldUpstream.has(id)

  /** One step; what it produced besides events goes where the options say. */
  const run = (out: AuditEventInput[], input: MachineInput): StepResult => {
    const result = machine.step(input)
    for (const err of result.errors) onError(err)
    for (const file of result.redactedFiles) {
      try {
        options.onRedactedFile?.(file)
      } catch (err) {
        onError(err)
      }
    }
    out.push(...result.events)
    return result
  }
  /** Fetches what the machine says a message needs: the environment first, then one GPU sample. */
  const fetch = async (needs: Needs): Promise<Resources> => {
    const environment = needs.environment ? await env.getEnvironment() : null
    const sample = needs.sample ? await env.sampleNow() : null
    return { environment, sample }
  }
  const replay = async (out: AuditEventInput[], frames: readonly PendingFrame[]): Promise<void> => {
    for (const frame of frames)
      run(out, { type: 'replayed', frame, ...(await fetch(machine.needs({ frame }))) })
  }
  const reconcile = async (out: AuditEventInput[], input: CaptureReconcileInput): Promise<void> => {
    const { plan } = run(out, { type: 'reconcile-begin', input, timeMs: now() })
    if (!plan) return
    for (let index = 0; index < plan.candidates.length; index++)
      await replay(out, run(out, { type: 'reconcile-recover', plan, index }).replay)
    run(out, { type: 'reconcile-finish', plan })
  }

  return {
    promptSubmitted(e) {
      machine.addKnown([e.promptId])
      enqueue(async (out) => {
        env.prefetchEnvironment()
        const raw = submittedBody(e)
        const analysis = options.analyzePromptBody
          ? await options.analyzePromptBody(raw, {
              ...(options.maxBodyTextBytes !== undefined ? { maxTextBytes: options.maxBodyTextBytes } : {}),
            })
          : analyzePromptBody(raw, { redact: options.redact, maxTextBytes: options.maxBodyTextBytes })
        await replay(out, run(out, { type: 'submitted', call: e, analysis }).replay)
      })
    },
    promptRefused(call) {
      enqueue((out) => void run(out, { type: 'refused', call }))
    },
    loadKnownPromptIds: (ids) => machine.addKnown(ids),
    loadLostSessionIds: (ids) => machine.addLost(ids),
    isPromptIdKnown: known,
    claimPromptId(id) {
      if (known(id)) return false
      machine.addKnown([id])
      return true
    },
    notePromptIdHeld(id) {
      if (!machine.isKnown(id)) heldUpstream.add(id)
    },
    isInheritedSession: (id) => inherited.has(id),
    promptAnswered(call) {
      enqueue((out) => void run(out, { type: 'answered', call }))
    },
    frame(e) {
      const { frame } = e
      if (frame.isBinary) {
        // Only the count of previews is recorded: the hub read the few header bytes, so the queued work
        // holds no image.
        const preview = frame.preview
        if (preview)
          enqueue((out) => void run(out, { type: 'preview', preview, upstreamClientId: e.upstreamClientId }))
        return
      }
      enqueue(async (out) => {
        const checked = frame.checked()
        if (checked.ok) {
          const msg = checked.message
          run(out, { type: 'message', msg, timeMs: e.timeMs, ...(await fetch(machine.needs({ msg }))) })
        } else if (checked.invalid !== null) onError(new Error(`capture: ${checked.invalid}`))
      })
    },
    action(call) {
      enqueue((out) => void run(out, { type: 'action', call }))
    },
    flush: queue.flush,
    openSessions: () => machine.openSessions(),
    reconcile(input) {
      enqueue((out) => reconcile(out, input))
    },
    resume(sessions) {
      for (const r of sessions) inherited.add(r.session.session_id)
      enqueue((out) => void run(out, { type: 'resume', sessions }))
    },
    refreshEnvironment: env.refresh,
    close() {
      flags.closed = true
      env.stopTimer()
      machine.clearPending()
    },
  }
}

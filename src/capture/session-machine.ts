/**
 * Capture's session state machine: one input in (a typed upstream message, a prompt submitted, answered or
 * refused, an action, a GPU sample, a reconciliation phase), the events it causes out. `step` is synchronous
 * and does no I/O and reads no clock: time comes in the input, and so does whatever used to be awaited in
 * the middle of the fold. The shell (capture.ts) asks {@link SessionMachine.needs} what a message will use
 * (the environment snapshot when it starts a queued session, one GPU sample when it starts or ends a node),
 * fetches that, and then steps; it analyses a prompt body (maybe in a worker) before stepping its
 * submission, and replays the frames a step hands back.
 *
 * The state is mutable, owned by the machine and changed only by `step`: a capture holds thousands of
 * sessions with their node maps, and copying them per frame would cost more than the fold itself. Tests
 * drive a machine directly (session-machine.test.ts) with no socket, store or timer.
 */
import type { AuditEventInput } from '../audit/types.js'
import type { GpuSample } from './gpu-sampler.js'
import type { PreviewTarget } from '../comfyui/frames.js'
import { checkWith, zPromptGraph, type WsMessage } from '../comfyui/schemas.js'
import type { PromptBodyAnalysis } from './prompt-analysis.js'
import type { CaptureTap } from './tap.js'
import {
  applySample,
  createCore,
  newNode,
  newSession,
  runningNodes,
  type CaptureCore,
  type MachineConfig,
  type PendingFrame,
  type RedactedFile,
  type SessionState,
} from './capture-state.js'
import { nodeChanges, nodeRecords, sessionEnd, type Resources } from './session-fold.js'
import {
  messageDispatch,
  messageIntake,
  outputsAndErrors,
  type FoldContext,
  type Needs,
} from './message-fold.js'
import { promptExchange } from './prompt-exchange.js'
import { captureActions } from './capture-actions.js'
import { reconciliation, submissionRecovery, type ReconcilePlan } from './capture-recovery.js'
import type { CaptureReconcileInput, ResumedSession } from './capture.js'
import type { OpenSession } from './reconcile.js'

type Tap<K extends keyof CaptureTap> = Parameters<CaptureTap[K]>[0]

/** One input of {@link SessionMachine.step}. */
export type MachineInput =
  /** A typed upstream message, with what the shell fetched for it (see {@link SessionMachine.needs}). */
  | ({ readonly type: 'message'; readonly msg: WsMessage; readonly timeMs: number } & Resources)
  /** A frame a step handed back (it arrived before its prompt's submission), with what it needs. */
  | ({ readonly type: 'replayed'; readonly frame: PendingFrame } & Resources)
  /** A preview frame (binary): counted on its node, no image kept. */
  | { readonly type: 'preview'; readonly preview: PreviewTarget; readonly upstreamClientId: string }
  /** A POST /prompt forwarded, with its body's analysis. */
  | {
      readonly type: 'submitted'
      readonly call: Tap<'promptSubmitted'>
      readonly analysis: PromptBodyAnalysis
    }
  | { readonly type: 'answered'; readonly call: Tap<'promptAnswered'> }
  | { readonly type: 'refused'; readonly call: Tap<'promptRefused'> }
  | { readonly type: 'action'; readonly call: Tap<'action'> }
  /** A GPU sample taken on the timer while nodes run: it goes to every running node. */
  | { readonly type: 'sample'; readonly sample: GpuSample }
  /** Sessions a previous process left open. */
  | { readonly type: 'resume'; readonly sessions: readonly ResumedSession[] }
  /** Reconciliation, phase 1: ComfyUI's answers checked, at `timeMs` (the shell's clock). */
  | { readonly type: 'reconcile-begin'; readonly input: CaptureReconcileInput; readonly timeMs: number }
  /** Phase 2, once per candidate: rebuild a submission a crash lost (its early frames are handed back). */
  | { readonly type: 'reconcile-recover'; readonly plan: ReconcilePlan; readonly index: number }
  /** Phase 3: corrections, closures, bypasses. */
  | { readonly type: 'reconcile-finish'; readonly plan: ReconcilePlan }

/** What one step produced. */
export interface StepResult {
  /** Events in log order (not yet text-redacted: the serial queue does that for every event). */
  readonly events: AuditEventInput[]
  /** Errors the step swallowed (the shell reports them). */
  readonly errors: unknown[]
  /** Output files whose recorded name redaction changed (the shell tells `onRedactedFile`). */
  readonly redactedFiles: RedactedFile[]
  /** Frames to feed back, in order, as `replayed` inputs. */
  readonly replay: PendingFrame[]
  /** The plan a `reconcile-begin` made. */
  readonly plan: ReconcilePlan | null
}

/** A session machine. See the module comment. */
export interface SessionMachine {
  step(input: MachineInput): StepResult
  /** What a `message` (or `replayed`) input will use; the shell fetches exactly that before stepping it. */
  needs(input: { readonly msg: WsMessage } | { readonly frame: PendingFrame }): Needs
  /** Whether a prompt id is known (see Capture.isPromptIdKnown). */
  isKnown(promptId: string): boolean
  /** Adds ids to the index of known prompt ids (they never leave it). */
  addKnown(ids: Iterable<string>): void
  /** Ids the log holds as lost (a later end of one becomes a `session.corrected`). */
  addLost(ids: Iterable<string>): void
  /** Sessions without a final status, as reconciliation needs them. */
  openSessions(): OpenSession[]
  /** Whether any node runs (the shell's GPU timer runs only then). */
  anyRunning(): boolean
  /** Drops frames waiting for their submission (on close). */
  clearPending(): void
}

/** Creates a machine with empty state. */
export function createSessionMachine(config: MachineConfig): SessionMachine {
  const core = createCore(config)
  const records = nodeRecords(core)
  const changes = nodeChanges({ ...core, ...records })
  const fold: FoldContext = {
    ...core,
    ...records,
    ...changes,
    ...sessionEnd({ ...core, ...records, ...changes }),
  }
  const dispatch = messageDispatch({ ...fold, ...outputsAndErrors(fold) })
  const intake = messageIntake({ ...fold, ...dispatch })
  const exchange = promptExchange({ ...fold, ...intake })
  const actions = captureActions({ ...core, ...records })
  const recon = reconciliation({ ...core, ...records, ...submissionRecovery({ ...core, ...intake }) })
  const { sessions, knownIds, lostIds, pending, notes } = core

  const apply = (out: AuditEventInput[], input: MachineInput): Pick<StepResult, 'replay' | 'plan'> => {
    const none = { replay: [], plan: null }
    switch (input.type) {
      case 'message':
        intake.handleMessage(out, input.msg, input.timeMs, input)
        return none
      case 'replayed':
        intake.replayMessage(out, input.frame, input)
        return none
      case 'preview':
        countPreview(sessions, input.preview, input.upstreamClientId)
        return none
      case 'submitted':
        knownIds.add(input.call.promptId)
        return { replay: exchange.handleSubmitted(out, input.call, input.analysis), plan: null }
      case 'answered':
        exchange.handleAnswered(out, input.call)
        return none
      case 'refused':
        exchange.handleRefused(out, input.call)
        return none
      case 'action':
        actions.handleAction(out, input.call)
        return none
      case 'sample':
        applySample(input.sample, [...runningNodes(sessions)])
        return none
      case 'resume':
        resumeSessions(core, input.sessions)
        return none
      case 'reconcile-begin':
        return { replay: [], plan: recon.beginReconcile(input.input, input.timeMs) }
      case 'reconcile-recover':
        return { replay: recon.recoverCandidate(out, input.plan, input.index), plan: null }
      case 'reconcile-finish':
        recon.finishReconcile(out, input.plan)
        return none
    }
  }

  return {
    step(input) {
      const events: AuditEventInput[] = []
      let rest: Pick<StepResult, 'replay' | 'plan'> = { replay: [], plan: null }
      try {
        rest = apply(events, input)
      } catch (err) {
        // A bug in the fold must not lose what came before it in this step, nor stop the next one.
        notes.errors.push(err)
      }
      const errors = notes.errors.splice(0)
      const redactedFiles = notes.redactedFiles.splice(0)
      return { events, errors, redactedFiles, ...rest }
    },
    needs(input) {
      return 'msg' in input ? intake.needs(input.msg) : intake.replayNeeds(input.frame)
    },
    isKnown: core.isKnown,
    addKnown(ids) {
      for (const id of ids) knownIds.add(id)
    },
    addLost(ids) {
      for (const id of ids) lostIds.add(id)
    },
    openSessions: recon.openSessions,
    anyRunning: () => !runningNodes(sessions).next().done,
    clearPending: () => pending.clear(),
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

/**
 * What capture does when the gateway asks ComfyUI what it holds (after a restart, a reconnect, or on the
 * sweep): rebuild a submission a crash lost from the gateway's seal, correct a session closed as lost that
 * history shows finished, close open sessions from history and queue, and record prompts that bypassed the
 * gateway. The decisions themselves are in reconcile.ts; this applies them to capture's state.
 */
import {
  promptAcceptedEvent,
  promptSubmittedEvent,
  sessionCorrectedEvent,
  type SessionPatch,
} from '../audit/audit-events.js'
import type { AuditEventInput, JsonObject } from '../audit/types.js'
import { isoTime } from './json-value.js'
import { analyzePrompt } from './prompt-analysis.js'
import { SUBMISSION_SEAL_KEY, promptDigest, withoutSeal } from './submission-seal.js'
import {
  bypassSessions,
  historyOutcome,
  reconcileSessions,
  storedError,
  type OpenSession,
} from './reconcile.js'
import {
  checkWith,
  isJsonObject,
  zHistory,
  zQueue,
  type History,
  type HistoryEntry,
  type PromptTuple,
  type Queue,
} from '../comfyui/schemas.js'
import { newSession, type CaptureCore, type PendingFrame } from './capture-state.js'
import type { MessageIntake } from './message-fold.js'
import type { NodeRecords } from './session-fold.js'
import { submitterJson } from './prompt-exchange.js'
import type { CaptureReconcileInput } from './capture.js'

/** Submissions rebuilt from the seal, and lost sessions corrected from history. */
type SubmissionRecovery = ReturnType<typeof submissionRecovery>

export function submissionRecovery(c: CaptureCore & MessageIntake) {
  const { config, maxLen, sessions, recent, knownIds, lostIds, takePending } = c
  /**
   * Rebuilds the `prompt.submitted` (and `prompt.accepted`) of a prompt ComfyUI holds whose id the log does
   * not know, from the gateway's own seal in its `extra_data`: the previous process forwarded it and died
   * before the event was committed. Recorded as recovered, with what it rests on (and the frames that waited
   * for it, for the shell to replay). Returns why not otherwise.
   */
  const recoverSubmission = (
    out: AuditEventInput[],
    tuple: PromptTuple,
    source: CandidateSource,
    timeMs: number,
  ): { ok: true; replay: PendingFrame[] } | { ok: false; reason: string | null } => {
    if (!config.submissionSeal) return { ok: false, reason: null }
    const [number, promptId, prompt, extra] = tuple
    const opened = config.submissionSeal.open(
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
    const analysis = analyzePrompt(prompt, withoutSeal(extra ?? null) ?? undefined, config.redact)
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
    out.push(
      promptSubmittedEvent(
        isoTime(claim.submitted_at_ms),
        promptId,
        patch,
        submitterJson(claim.submitter, null),
        { downstream_client_id: claim.submitter.client_id, recovered: true, evidence },
      ),
    )
    // ComfyUI queues a prompt only when it answers 200 (protocol §2.1): that it holds it is the answer.
    const accepted: SessionPatch = { http_status: 200, number, validation: null }
    out.push(
      promptAcceptedEvent(isoTime(createTime ?? timeMs), promptId, accepted, {
        node_errors: {},
        recovered: true,
        evidence: { source: evidence.source, comfyui_number: number },
      }),
    )
    return { ok: true, replay: takePending(promptId) }
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
    const patch: SessionPatch = {
      status: outcome.status,
      ended_at: endedAt,
      error: outcome.error ? storedError(outcome.error, config.redact, maxLen) : null,
      outputs: outcome.outputs,
      status_reason: `closed as lost by reconciliation, then ComfyUI's history showed it ended: ${outcome.status}`,
    }
    out.push(
      sessionCorrectedEvent(isoTime(timeMs), id, patch, {
        outputs: outcome.outputs,
        from: 'lost',
        to: outcome.status,
        source: 'history',
        evidence: {
          comfyui_number: outcome.number,
          started_at: outcome.started_ms === null ? null : isoTime(outcome.started_ms),
          ended_at: endedAt,
          decided_at: isoTime(timeMs),
        },
      }),
    )
  }

  return { recoverSubmission, correctFromHistory }
}

/** Where reconciliation found a prompt the log may lack. */
type CandidateSource = 'queue_running' | 'queue_pending' | 'history'

/**
 * A reconciliation under way, from `beginReconcile` to
 * `finishReconcile`: ComfyUI's answers checked, the prompts a crash may have lost, and
 * what their recovery found. The shell replays each recovered prompt's early frames in between.
 */
export interface ReconcilePlan {
  readonly input: CaptureReconcileInput
  readonly timeMs: number
  readonly history: History
  readonly queue: Queue | null
  readonly candidates: readonly (readonly [PromptTuple, CandidateSource])[]
  readonly recovered: Set<string>
  readonly sealRejected: Map<string, string>
}

/** Reconciliation: the open sessions as reconcile.ts sees them, and the answer applied. */
export function reconciliation(c: CaptureCore & NodeRecords & SubmissionRecovery) {
  const { config, onError, maxLen, sessions, knownIds, lostIds, isKnown, nodeRun, emitNode, retire } = c
  const { recoverSubmission, correctFromHistory } = c
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

  /** ComfyUI's answers checked, entry by entry; `timeMs` is when the shell began (its clock). */
  const beginReconcile = (input: CaptureReconcileInput, timeMs: number): ReconcilePlan => {
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
    // Prompts of this gateway whose prompt.submitted a crash lost: rebuilt before anything else about them.
    const candidates: [PromptTuple, CandidateSource][] = [
      ...(queue?.queue_running ?? []).map((t) => [t, 'queue_running'] as [PromptTuple, 'queue_running']),
      ...(queue?.queue_pending ?? []).map((t) => [t, 'queue_pending'] as [PromptTuple, 'queue_pending']),
      ...Object.values(history).map((e) => [e.prompt, 'history'] as [PromptTuple, 'history']),
    ]
    return { input, timeMs, history, queue, candidates, recovered: new Set(), sealRejected: new Map() }
  }

  const knownTo = (plan: ReconcilePlan) => (id: string) => isKnown(id) || (plan.input.isKnown?.(id) ?? false)

  /** Recovers the plan's `index`-th candidate if it is one; returns its early frames for the shell to replay. */
  const recoverCandidate = (out: AuditEventInput[], plan: ReconcilePlan, index: number): PendingFrame[] => {
    const candidate = plan.candidates[index]
    if (!candidate) return []
    const [tuple, source] = candidate
    const id = tuple[1]
    if (plan.recovered.has(id) || knownTo(plan)(id)) return []
    const result = recoverSubmission(out, tuple, source, plan.timeMs)
    if (result.ok) {
      plan.recovered.add(id)
      return result.replay
    }
    if (result.reason !== null) plan.sealRejected.set(id, result.reason)
    return []
  }

  /** The rest: corrections from history, open sessions closed, bypasses recorded. */
  const finishReconcile = (out: AuditEventInput[], plan: ReconcilePlan): void => {
    const { input, timeMs, history, queue, recovered, sealRejected } = plan
    const known = knownTo(plan)
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
      redact: config.redact,
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
        redact: config.redact,
        maxInputStringLength: maxLen,
        sealRejected: (id) => sealRejected.get(id) ?? null,
      })
      for (const e of bypass) if (e.session_id !== null) knownIds.add(e.session_id)
      out.push(...bypass)
    }
  }

  return { openSessions, beginReconcile, recoverCandidate, finishReconcile }
}

/**
 * The prompt exchange: a POST /prompt the gateway forwarded (its session opens, queued), ComfyUI's answer
 * (accepted with a queue number, or rejected with its validation errors), and a prompt the gateway refused
 * itself because its id was taken (recorded on its own: the id belongs to another session).
 */
import { parseJson, sha256Hex } from '../audit/json.js'
import {
  promptAcceptedEvent,
  promptRefusedEvent,
  promptRejectedEvent,
  promptSubmittedEvent,
  type SessionPatch,
} from '../audit/audit-events.js'
import type { AuditEventInput, JsonObject, JsonValue, Submitter } from '../audit/types.js'
import { isoTime, toJsonObject } from './json-value.js'
import { truncateLongStrings, type PromptBodyAnalysis } from './prompt-analysis.js'
import { withoutSeal } from './submission-seal.js'
import { parseWith, zPromptAccepted } from '../comfyui/schemas.js'
import type { CaptureTap } from './tap.js'
import { newSession, type PendingFrame } from './capture-state.js'
import type { FoldContext, MessageIntake } from './message-fold.js'

/** The submitter as a session records it: the downstream client id filled in when the person gave none. */
export function submitterJson(submitter: Submitter, clientId: string | null): JsonObject {
  return toJsonObject({ ...submitter, client_id: submitter.client_id ?? clientId })
}

/** The body a submission's analysis reads: what went upstream, or what the client sent when nothing did. */
export function submittedBody(e: Parameters<CaptureTap['promptSubmitted']>[0]): Buffer {
  return e.forwardedBody.length > 0 ? e.forwardedBody : e.body
}

export function promptExchange(c: FoldContext & MessageIntake) {
  const { onError, maxLen, sessions, recent, redactValue, takePending, retire } = c
  /**
   * The session opens, queued. `analysis` is the body's analysis the shell made (it may run in a worker).
   * Returns the frames that arrived before the submission, for the shell to replay.
   */
  const handleSubmitted = (
    out: AuditEventInput[],
    e: Parameters<CaptureTap['promptSubmitted']>[0],
    analysis: PromptBodyAnalysis,
  ): PendingFrame[] => {
    const raw = submittedBody(e)
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
    const payload: JsonObject = { downstream_client_id: e.clientId, body_bytes: raw.length }
    if (analysis.ok) {
      s.graph = analysis.graph
    } else {
      payload.body_text = analysis.text
      payload.body_truncated = analysis.truncated
      payload.parse_error = analysis.reason
    }
    sessions.set(e.promptId, s)
    recent.delete(e.promptId)
    const submitter = submitterJson(e.submitter, e.clientId)
    out.push(promptSubmittedEvent(isoTime(e.timeMs), e.promptId, patch, submitter, payload))
    return takePending(e.promptId)
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
      out.push(
        promptAcceptedEvent(isoTime(e.timeMs), e.promptId, patch, {
          node_errors: storedErrors,
          ...(parsed.ok ? {} : { parse_error: parsed.reason }),
        }),
      )
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
    out.push(
      promptRejectedEvent(isoTime(e.timeMs), e.promptId, patch, {
        refused_by: e.refusedBy ?? 'comfyui',
        ...(e.error ? { error: e.error } : {}),
      }),
    )
    if (s) {
      s.answered = true
      s.httpStatus = e.status
      if (s.phase !== 'closed') retire(s, 'rejected')
    }
  }

  const handleRefused = (out: AuditEventInput[], e: Parameters<CaptureTap['promptRefused']>[0]): void => {
    const answer = parseJson(e.answer)
    // No session id: the id belongs to an existing session, which this refusal must leave untouched.
    out.push(
      promptRefusedEvent(isoTime(e.timeMs), {
        prompt_id: e.promptId,
        reason: e.reason,
        http_status: e.status,
        submitter: submitterJson(e.submitter, e.clientId),
        downstream_client_id: e.clientId,
        body_bytes: e.body.length,
        body_sha256: sha256Hex(e.body),
        answer: answer.ok ? truncateLongStrings(answer.value, maxLen) : null,
      }),
    )
  }

  return { handleSubmitted, handleAnswered, handleRefused }
}

/**
 * `POST /prompt`: the one route the gateway does more than forward. It reads the whole body, refuses what
 * ComfyUI might read differently (strict JSON) or what would go unrecorded, rewrites `client_id` (and sets
 * `prompt_id`, and the seal) without touching other bytes, registers the prompt's upstream socket before
 * ComfyUI can send its first event, and tells the tap of the submission and of ComfyUI's answer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Submitter } from '../audit/types.js'
import { comfyErrorBody, pyString } from '../comfyui/py-json.js'
import { sendJson } from '../comfyui/send-json.js'
import { namespacedClientId, noClientId } from './client-ids.js'
import type { GatewayContext } from './gateway-context.js'
import { BodyTooLarge, readBody } from './http-util.js'
import { preparePrompt, type PreparedPrompt } from './prompt-request.js'

/** The routes' paths (ComfyUI serves each with and without `/api`). */
export const PROMPT_PATHS: ReadonlySet<string> = new Set(['/prompt', '/api/prompt'])
/** Longest a prompt waits for its new upstream socket before it is forwarded anyway. */
const SOCKET_READY_WAIT_MS = 10_000
const EMPTY = Buffer.alloc(0)

/** Handles one POST /prompt by `submitter`; see the module comment. */
export type PromptRoute = (req: IncomingMessage, res: ServerResponse, submitter: Submitter) => Promise<void>

/**
 * A refusal by the gateway itself: the session opens (every POST /prompt gets one) and closes with the
 * gateway's answer, and no body reaches the tap (it could not be read, or not parsed so not redacted).
 */
function refuseOwnSession(
  ctx: GatewayContext,
  res: ServerResponse,
  e: { promptId: string; upstreamClientId: string; submitter: Submitter; status: number; answer: string },
  extra: Record<string, string> = {},
): void {
  const { tap, now } = ctx
  const submittedAt = now()
  ctx.safeTap('promptSubmitted', () =>
    tap.promptSubmitted({
      promptId: e.promptId,
      upstreamClientId: e.upstreamClientId,
      clientId: null,
      body: EMPTY,
      forwardedBody: EMPTY,
      submitter: e.submitter,
      timeMs: submittedAt,
    }),
  )
  sendJson(res, e.status, e.answer, extra)
  ctx.safeTap('promptAnswered', () =>
    tap.promptAnswered({
      promptId: e.promptId,
      status: e.status,
      body: Buffer.from(e.answer),
      timeMs: now(),
      refusedBy: 'gateway',
    }),
  )
}

/** The body, or null when it was too large (answered 413 and recorded here). */
async function readPromptBody(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  submitter: Submitter,
): Promise<Buffer | null> {
  try {
    return await readBody(req, ctx.options.maxPromptBytes ?? 256 * 1024 * 1024)
  } catch (error) {
    if (!(error instanceof BodyTooLarge)) throw error
    const promptId = ctx.newPromptId()
    const answer = comfyErrorBody('request_too_large', 'Prompt body too large', error.message)
    refuseOwnSession(
      ctx,
      res,
      { promptId, upstreamClientId: noClientId(submitter.user), submitter, status: 413, answer },
      { Connection: 'close' },
    )
    return null
  }
}

/** `body` made ready for ComfyUI under the submitter's namespace, sealed when the gateway seals. */
function prepare(
  ctx: GatewayContext,
  body: Buffer,
  submitter: Submitter,
  submittedAt: number,
): PreparedPrompt {
  const user = submitter.user
  // Asked twice per prompt (the rewrite, the seal) with the same id: hash the user once.
  let last: { cid: string | null; upstream: string } | null = null
  const upstreamOf = (cid: string | null): string => {
    if (last?.cid !== cid)
      last = { cid, upstream: cid === null ? noClientId(user) : namespacedClientId(user, cid) }
    return last.upstream
  }
  const sealSubmission = ctx.options.sealSubmission
  return preparePrompt(body, {
    upstreamClientId: upstreamOf,
    newPromptId: ctx.newPromptId,
    ...(sealSubmission
      ? {
          seal: ({ promptId: id, clientId, prompt }) =>
            sealSubmission({
              promptId: id,
              submitter: { ...submitter, client_id: clientId },
              upstreamClientId: upstreamOf(clientId),
              prompt,
              bodyBytes: body.length,
              timeMs: submittedAt,
            }),
        }
      : {}),
  })
}

/**
 * True (and answered 400) when the client chose a prompt id the registry (capture) already knows: refused
 * before ComfyUI sees it, since ComfyUI would run a second prompt under the first one's id.
 */
function refuseTakenId(
  ctx: GatewayContext,
  res: ServerResponse,
  prepared: PreparedPrompt,
  body: Buffer,
  submitter: Submitter,
): boolean {
  const { promptId } = prepared
  // The gateway's own ids are claimed too, so a registry without capture knows every id forwarded.
  if (ctx.promptIds.claimPromptId(promptId) || !prepared.promptIdFromClient) return false
  const answer = Buffer.from(
    comfyErrorBody(
      'invalid_prompt',
      'Prompt id already used',
      `prompt_id ${pyString(promptId)} was already submitted; send the prompt without prompt_id or with a new one`,
    ),
  )
  sendJson(res, 400, answer.toString())
  // Not promptSubmitted/promptAnswered: those are about the session of this id, which is someone else's.
  ctx.safeTap('promptRefused', () =>
    ctx.tap.promptRefused({
      promptId,
      clientId: prepared.clientId,
      body,
      submitter,
      status: 400,
      answer,
      reason: 'prompt_id_taken',
      timeMs: ctx.now(),
    }),
  )
  return true
}

/** Makes the POST /prompt route over `ctx`. */
export function createPromptRoute(ctx: GatewayContext): PromptRoute {
  const { tap, now, hub, logger } = ctx
  return async (req, res, submitter0) => {
    const refusal = ctx.options.refusePrompt?.() ?? null
    if (refusal !== null) {
      // Refused before it reaches ComfyUI, so no run exists that the audit trail would miss.
      req.resume()
      const answer = comfyErrorBody('audit_unavailable', 'The audit trail cannot record prompts now', refusal)
      sendJson(res, 503, answer, { 'Retry-After': '5' })
      return
    }
    const body = await readPromptBody(ctx, req, res, submitter0)
    if (body === null) return
    // One time for the seal and the session's queued_at, so a rebuilt prompt.submitted equals the original.
    const submittedAt = now()
    const prepared = prepare(ctx, body, submitter0, submittedAt)
    const { promptId, upstreamClientId } = prepared
    if (prepared.refused !== undefined) {
      // Not JSON by rules as strict as Python's: refused, never relayed unchecked (issue 9 class 2).
      const answer = comfyErrorBody('invalid_json', 'Prompt body is not valid JSON', prepared.refused)
      refuseOwnSession(ctx, res, { promptId, upstreamClientId, submitter: submitter0, status: 400, answer })
      return
    }
    const submitter: Submitter = { ...submitter0, client_id: prepared.clientId }
    if (refuseTakenId(ctx, res, prepared, body, submitter)) return
    if (prepared.parsed) {
      // The upstream socket must be registered before ComfyUI can send the prompt's first event.
      const ready = await hub.preparePrompt(
        upstreamClientId,
        promptId,
        Math.min(ctx.timeoutMs, SOCKET_READY_WAIT_MS),
      )
      if (!ready && hub.healthy)
        logger.warn('gateway: forwarding a prompt before its upstream socket is ready', { promptId })
    }
    ctx.safeTap('promptSubmitted', () =>
      tap.promptSubmitted({
        promptId,
        upstreamClientId,
        clientId: prepared.clientId,
        body,
        forwardedBody: prepared.forwardedBody,
        submitter,
        timeMs: submittedAt,
      }),
    )
    const result = await ctx.forward(req, res, {
      body: prepared.forwardedBody,
      collectResponseBytes: Infinity,
    })
    if (prepared.parsed)
      hub.promptAnswered(upstreamClientId, promptId, result.error !== undefined ? 0 : result.status)
    ctx.safeTap('promptAnswered', () =>
      tap.promptAnswered({
        promptId,
        status: result.status,
        body: result.responseBody ?? EMPTY,
        timeMs: now(),
        ...(result.error !== undefined ? { error: result.error } : {}),
      }),
    )
  }
}

/**
 * Every HTTP request: the request-target check, admission (the guard), then the route: the gateway's own
 * `/_audit/*`, POST /prompt, the client-view answers (`/history`, `/queue`, jobs), the logs subscription,
 * the tapped actions, and plain forwarding for everything else.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Submitter } from '../audit/types.js'
import { comfyErrorBody } from '../comfyui/py-json.js'
import { sendJson } from '../comfyui/send-json.js'
import { namespacedClientId } from './client-ids.js'
import { clientViewRoute } from './client-view.js'
import type { ClientViewRewriters } from './client-view-rewriters.js'
import { isAuditPath, type GatewayContext } from './gateway-context.js'
import { pathOf, readBody } from './http-util.js'
import { rewriteStringMember } from './prompt-request.js'
import { PROMPT_PATHS, type PromptRoute } from './prompt-route.js'
import type { Admission } from './request-guard.js'
import { canonicalTarget } from './request-target.js'
import { routeLabel } from './route-label.js'

const ACTION_ROUTES = new Map<string, 'interrupt' | 'queue' | 'history' | 'upload' | 'free'>([
  ['/interrupt', 'interrupt'],
  ['/queue', 'queue'],
  ['/history', 'history'],
  ['/free', 'free'],
  ['/upload/image', 'upload'],
  ['/upload/mask', 'upload'],
])
const MAX_TAPPED_RESPONSE_BYTES = 1 << 20
const EMPTY = Buffer.alloc(0)

/** Handles one HTTP request; rejects only on a bug or a body over a limit (the server answers those). */
export type RequestRoute = (req: IncomingMessage, res: ServerResponse) => Promise<void>

/** Reports each finished request to `onRequestDone` (metrics), which must never break one. */
function observeRequest(
  req: IncomingMessage,
  res: ServerResponse,
  done: NonNullable<GatewayContext['options']['onRequestDone']>,
): void {
  const started = process.hrtime.bigint()
  res.once('close', () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    try {
      done({
        method: req.method ?? 'GET',
        route: routeLabel(pathOf(req.url)),
        status: res.statusCode,
        seconds,
      })
    } catch {
      // Metrics must never break a request.
    }
  })
}

/** A POST of a tapped action: forwarded with its bytes collected, then told to the tap. */
async function forwardAction(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  e: { kind: 'interrupt' | 'queue' | 'history' | 'upload' | 'free'; pathname: string; submitter: Submitter },
  admission: Admission | undefined,
): Promise<void> {
  const r = await ctx.forward(req, res, {
    ...(admission?.body !== undefined
      ? { body: admission.body }
      : { collectRequestBytes: ctx.options.maxTapBodyBytes ?? 256 * 1024 * 1024 }),
    collectResponseBytes: MAX_TAPPED_RESPONSE_BYTES,
  })
  if (r.requestBody === null)
    ctx.logger.warn('gateway: action body too large for the tap', { path: e.pathname })
  ctx.safeTap('action', () =>
    ctx.tap.action({
      kind: e.kind,
      method: req.method ?? 'GET',
      path: e.pathname,
      body: r.requestBody ?? EMPTY,
      status: r.status,
      responseBody: r.responseBody,
      submitter: e.submitter,
      timeMs: ctx.now(),
    }),
  )
}

/** Makes the request handling over `ctx`, with the prompt route and the client-view rewriters. */
export function createRequestRoute(
  ctx: GatewayContext,
  prompt: PromptRoute,
  rewriters: ClientViewRewriters,
): RequestRoute {
  const { options } = ctx
  const maxRewriteBytes = options.maxRewriteBytes ?? 64 * 1024 * 1024
  return async (req, res) => {
    if (options.onRequestDone) observeRequest(req, res, options.onRequestDone)
    // One reading of the target for everything below, and the one forwarded (issue 9 class 1).
    const target = canonicalTarget(req.url)
    if (!target.ok) {
      ctx.refused(req, 'http', 400, `bad request target: ${target.reason}`)
      sendJson(res, 400, comfyErrorBody('invalid_request_target', 'Bad request target', target.reason), {
        Connection: 'close',
      })
      return
    }
    req.url = target.url
    const admission = options.guard ? await options.guard.admitRequest(req, res) : undefined
    if (admission === null) return
    ctx.admitted(req.socket)
    const who = async (): Promise<Submitter> => admission?.submitter ?? (await ctx.identify(req))
    const pathname = pathOf(req.url)
    if (isAuditPath(pathname)) {
      const handled = options.auditHandler ? await options.auditHandler(req, res) : false
      if (!handled && !res.headersSent) sendJson(res, 404, '{"error": "not found"}')
      return
    }
    if (ctx.closing) {
      const answer = comfyErrorBody('gateway_closing', 'The comfy-audit gateway is shutting down', '')
      sendJson(res, 503, answer, { Connection: 'close' })
      return
    }
    const method = req.method ?? 'GET'
    if (method === 'POST' && PROMPT_PATHS.has(pathname)) {
      await prompt(req, res, await who())
      return
    }
    const view = clientViewRoute(method, pathname)
    if (view !== null) {
      // ComfyUI shows the ids the gateway gave it: show the client what ComfyUI would have shown it.
      const filter = admission?.filterAnswer
      const apply = filter
        ? async (body: Buffer) => rewriters[view](await filter(view, body))
        : rewriters[view]
      await ctx.forward(req, res, { rewrite: { limit: maxRewriteBytes, apply } })
      return
    }
    if (method === 'PATCH' && pathname === '/internal/logs/subscribe') {
      // ComfyUI sends `logs` events to the id in the body: make it the namespaced id the client's socket has.
      const submitter = await who()
      const body = rewriteStringMember(admission?.body ?? (await readBody(req, 1 << 20)), 'clientId', (id) =>
        namespacedClientId(submitter.user, id),
      )
      await ctx.forward(req, res, { body })
      return
    }
    const kind =
      method === 'POST'
        ? ACTION_ROUTES.get(pathname.startsWith('/api/') ? pathname.slice(4) : pathname)
        : undefined
    if (kind === undefined) {
      await ctx.forward(req, res, admission?.body !== undefined ? { body: admission.body } : {})
      return
    }
    await forwardAction(ctx, req, res, { kind, pathname, submitter: await who() }, admission)
  }
}

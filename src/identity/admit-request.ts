/**
 * The guard's checks for one HTTP request, in the order they must run: what can be refused without knowing
 * the sender (Host, size, Origin), who sends it, the bodies the policy reads, the route-family rules (shared
 * user data, the policy, the prompt rate limit), and what changes on the way (a narrowed audit query, the
 * answer filter, credentials removed).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Submitter } from '../audit/types.js'
import { stringifyJson } from '../audit/json.js'
import type { Admission } from '../gateway/request-guard.js'
import { pathOf } from '../gateway/http-util.js'
import { ownAnswerFilter } from './answer-filter.js'
import { rememberAuditReader } from './audit-reader.js'
import { toSubmitter, type AuthFailure, type Identity } from './identity.js'
import { withoutTokenParam } from './credentials.js'
import type { GuardContext } from './guard-context.js'
import { readGuardedBody } from './guarded-body.js'
import { authorize, normalizeRoute, PUBLIC_AUDIT_PATHS, type PolicyRequest, type Route } from './policy.js'
import { header } from './request-origin.js'
import { scrubRequest } from './scrub-request.js'

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const USERDATA = /^\/(v2\/)?userdata(\/|$)/

/** Admits `req` (see the module comment), or answers the refusal itself and returns null. */
export async function admitRequest(
  ctx: GuardContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Admission | null> {
  const method = (req.method ?? 'GET').toUpperCase()
  const path = pathOf(req.url)
  const route = normalizeRoute(path)
  if (refusedBeforeAuthentication(ctx, req, res, method)) return null
  if (route.kind === 'audit' && (PUBLIC_AUDIT_PATHS.has(route.path) || ctx.publicPaths.has(route.path))) {
    return { submitter: anonymous(req) }
  }
  const who = await ctx.authenticator.identify(req)
  if (!who.ok) return notAuthenticated(ctx, req, res, method, who)
  const identity = who.identity
  const query = new URL(req.url ?? '/', 'http://gateway').searchParams
  const read = await readGuardedBody(req, method, route, ctx.limits)
  if (!read.ok) {
    if (read.status === 413) res.setHeader('connection', 'close')
    return ctx.refuse.request(req, res, read.status, read.reason, identity)
  }
  let body = read.body
  const policyRequest: PolicyRequest = {
    user: identity.user,
    role: identity.role,
    method,
    path,
    query,
    ...(read.parsed !== undefined ? { body: read.parsed } : {}),
  }
  const shared = sharedUserDataRefusal(ctx, identity, route)
  if (shared !== null) return ctx.refuse.request(req, res, 403, shared, identity)
  const decision = authorize(policyRequest, await ctx.lookUpFacts(policyRequest, identity.user), ctx.policy)
  if (decision.action === 'deny')
    return ctx.refuse.request(req, res, decision.status, decision.reason, identity)
  if (decision.action === 'rewrite') {
    ctx.logger.info('request rewritten by policy', { user: identity.user, path, reason: decision.reason })
    body = Buffer.from(stringifyJson(decision.body))
  }
  if (isPrompt(route, method) && !ctx.takePromptToken(identity.user)) {
    return ctx.refuse.request(req, res, 429, 'too many prompts: slow down', identity)
  }
  if (decision.action === 'allow' && decision.auditUser !== undefined) {
    const url = new URL(req.url ?? '/', 'http://gateway')
    url.searchParams.set('user', decision.auditUser)
    req.url = url.pathname + url.search
  }
  if (route.kind !== 'audit') scrubRequest(req, identity.user, ctx)
  else rememberAuditReader(req, toSubmitter(identity))
  return {
    submitter: toSubmitter(identity),
    ...(body !== undefined ? { body } : {}),
    ...(decision.action === 'allow' && decision.filter === 'own'
      ? { filterAnswer: ownAnswerFilter(identity.user, ctx.promptOwner) }
      : {}),
  }
}

/** Host, declared size and Origin: refused (and answered) before anyone is asked who they are. */
function refusedBeforeAuthentication(
  ctx: GuardContext,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
): boolean {
  if (!ctx.origin.hostAllowed(req)) {
    ctx.refuse.request(req, res, 403, 'Host not served by this gateway')
    return true
  }
  const length = Number(header(req, 'content-length') ?? '0')
  if (Number.isFinite(length) && length > ctx.limits.maxBodyBytes) {
    res.setHeader('connection', 'close')
    ctx.refuse.request(req, res, 413, `request body larger than ${ctx.limits.maxBodyBytes} bytes`)
    return true
  }
  if (STATE_CHANGING.has(method) && !ctx.origin.originAllowed(req)) {
    ctx.refuse.request(req, res, 403, 'cross-site request refused')
    return true
  }
  return false
}

/** A browser asking for a page goes to the login page; everyone else gets the 401 or 403. */
function notAuthenticated(
  ctx: GuardContext,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  failure: AuthFailure,
): null {
  const accept = header(req, 'accept') ?? ''
  if (failure.status === 401 && (method === 'GET' || method === 'HEAD') && accept.includes('text/html')) {
    res.writeHead(303, {
      // A token in the URL is no credential here: it must not travel on into the login page or history.
      location: `/_audit/login?next=${encodeURIComponent(withoutTokenParam(req.url ?? '/'))}`,
      'cache-control': 'no-store',
    })
    res.end()
    return null
  }
  return ctx.refuse.request(req, res, failure.status, failure.reason)
}

/**
 * Without --multi-user ComfyUI keeps one /userdata for everyone (workflows, settings): an artist would read
 * and overwrite the others' files. Admins keep access; artists need comfyui.multiUser (issue 9 class 3).
 */
function sharedUserDataRefusal(ctx: GuardContext, identity: Identity, route: Route): string | null {
  if (ctx.multiUser || identity.role !== 'artist' || route.kind !== 'comfy' || !USERDATA.test(route.path)) {
    return null
  }
  return 'user data is shared between people unless ComfyUI runs with --multi-user; set comfyui.multiUser: true'
}

function isPrompt(route: Route, method: string): boolean {
  return route.kind === 'comfy' && method === 'POST' && route.path === '/prompt'
}

function anonymous(req: IncomingMessage): Submitter {
  return {
    user: 'anonymous',
    auth_method: 'none',
    client_address: req.socket.remoteAddress ?? null,
    user_agent: header(req, 'user-agent') ?? null,
    client_id: null,
  }
}

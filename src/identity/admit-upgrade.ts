/**
 * The guard's checks for a WebSocket upgrade: Host and Origin (a cross-site page may open a socket, and
 * browsers send no preflight for it), who connects, and the policy for `GET <path>`. A socket carries no
 * body and names no prompt, so the policy decides without looking anything up.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { pathOf } from '../gateway/http-util.js'
import type { Admission } from '../gateway/request-guard.js'
import { toSubmitter } from './identity.js'
import type { GuardContext } from './guard-context.js'
import { authorize, type PolicyRequest } from './policy.js'
import { scrubRequest } from './scrub-request.js'

/** Admits the upgrade, or answers the refusal on the socket and returns null. */
export async function admitUpgrade(
  ctx: GuardContext,
  req: IncomingMessage,
  socket: Duplex,
): Promise<Admission | null> {
  const path = pathOf(req.url)
  if (!ctx.origin.hostAllowed(req))
    return ctx.refuse.upgrade(req, socket, 403, 'Host not served by this gateway')
  if (!ctx.origin.originAllowed(req))
    return ctx.refuse.upgrade(req, socket, 403, 'cross-site WebSocket refused')
  const who = await ctx.authenticator.identify(req)
  if (!who.ok) return ctx.refuse.upgrade(req, socket, who.status, who.reason)
  const query = new URL(req.url ?? '/', 'http://gateway').searchParams
  const policyRequest: PolicyRequest = {
    user: who.identity.user,
    role: who.identity.role,
    method: 'GET',
    path,
    query,
  }
  const decision = authorize(policyRequest, { owners: new Map(), running: [] }, ctx.policy)
  if (decision.action === 'deny') {
    return ctx.refuse.upgrade(req, socket, decision.status, decision.reason, who.identity)
  }
  scrubRequest(req, who.identity.user, ctx)
  return { submitter: toSubmitter(who.identity) }
}

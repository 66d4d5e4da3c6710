/**
 * How the access guard says no: a JSON answer (or a raw HTTP answer on an upgrade socket) and one report of
 * the refusal, to the refusal log when there is one, else to the logger.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../audit/report-error.js'
import { sendJson, sendJsonOnSocket } from '../comfyui/send-json.js'
import { pathOf } from '../gateway/http-util.js'
import type { Identity } from './identity.js'
import { withoutTokenParam } from './credentials.js'
import type { Refusal } from './refusal-log.js'
import { header } from './request-origin.js'

/** Refuses a request or an upgrade; both return null, the guard's "not admitted". */
export interface GuardRefusals {
  request(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    reason: string,
    identity?: Identity | null,
  ): null
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    status: number,
    reason: string,
    identity?: Identity | null,
  ): null
}

/** Options of {@link createGuardRefusals}. */
interface GuardRefusalsOptions {
  readonly logger: Logger
  /** Told of every refusal; when given, the guard does not log refusals itself (a flood would fill the log). */
  readonly onRefused?: (refusal: Refusal) => void
}

/** Builds the refusal answers over one reporter. */
export function createGuardRefusals(options: GuardRefusalsOptions): GuardRefusals {
  const report = (
    req: IncomingMessage,
    transport: Refusal['transport'],
    status: number,
    reason: string,
    identity: Identity | null,
  ): void => {
    const refusal: Refusal = {
      status,
      reason,
      method: (req.method ?? 'GET').toUpperCase(),
      path: pathOf(withoutTokenParam(req.url ?? '/')),
      transport,
      user: identity?.user ?? null,
      role: identity?.role ?? null,
      client_address: req.socket.remoteAddress ?? null,
      user_agent: header(req, 'user-agent') ?? null,
    }
    if (options.onRefused) {
      try {
        options.onRefused(refusal)
      } catch (err) {
        options.logger.warn('access refusal not recorded', { error: String(err) })
      }
    } else options.logger.warn('access refused', { ...refusal })
  }

  return {
    request(req, res, status, reason, identity = null) {
      report(req, 'http', status, reason, identity)
      const extra: Record<string, string> =
        status === 401 ? { 'www-authenticate': 'Bearer realm="comfy-audit"' } : {}
      sendJson(res, status, JSON.stringify({ error: reason }), extra)
      return null
    },

    upgrade(req, socket, status, reason, identity = null) {
      report(req, 'websocket', status, reason, identity)
      // No response object exists yet: the answer goes on the socket, which then closes.
      sendJsonOnSocket(socket, status, JSON.stringify({ error: reason }))
      return null
    },
  }
}

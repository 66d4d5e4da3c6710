import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Submitter } from '../audit/types.js'
import type { ClientViewRoute } from './client-view.js'

/** What a guard lets through: who sent the request, and what the gateway must change on its way. */
export interface Admission {
  readonly submitter: Submitter
  /** The request body, already read by the guard (and perhaps rewritten); forwarded instead of the stream. */
  readonly body?: Buffer
  /** Narrows a buffered `/history`, `/queue` or jobs answer (ComfyUI's ids, before the client view) for this person. */
  readonly filterAnswer?: (route: ClientViewRoute, body: Buffer) => Promise<Buffer>
}

/**
 * Admission control for every request and WebSocket upgrade, run before anything is forwarded or tapped
 * (authentication, roles, CSRF and Host checks, limits). A guard that refuses answers the client itself and
 * returns null. A guard removes credentials from the request before admitting it, so nothing the gateway
 * forwards carries them. The implementation lives in src/identity/access-guard.ts.
 */
export interface RequestGuard {
  admitRequest(req: IncomingMessage, res: ServerResponse): Promise<Admission | null>
  admitUpgrade(req: IncomingMessage, socket: Duplex): Promise<Admission | null>
}

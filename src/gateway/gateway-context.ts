import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../audit/report-error.js'
import type { Submitter } from '../audit/types.js'
import type { CaptureTap } from '../capture/tap.js'
import type { GatewayOptions, GatewayRefusal } from './gateway-options.js'
import type { PromptIdRegistry } from './prompt-ids.js'
import type { Forward, UpstreamTarget } from './proxy.js'
import type { SocketHub } from './socket-hub.js'

/**
 * What the gateway's routes share, made once by createGateway: the options with their defaults filled in,
 * the forwarder, the socket hub, and the few callbacks every route reports through.
 */
export interface GatewayContext {
  readonly options: GatewayOptions
  readonly upstream: UpstreamTarget
  readonly tap: CaptureTap
  readonly now: () => number
  readonly logger: Logger
  readonly identify: (req: IncomingMessage) => Submitter | Promise<Submitter>
  readonly newPromptId: () => string
  /** Upstream deadline (response headers, handshake), ms. */
  readonly timeoutMs: number
  readonly forward: Forward
  readonly hub: SocketHub
  /** `options.promptIds`, or the in-memory default: the one answer to "is this prompt id known?". */
  readonly promptIds: PromptIdRegistry
  /** True once close() began: new requests and upgrades get 503. */
  readonly closing: boolean
  /** Calls the tap, logging (never passing on) what it throws: a failing tap never fails a request. */
  safeTap(what: string, call: () => void): void
  /** Tells `options.onRefused` of a request the gateway itself refused. */
  refused(req: IncomingMessage, transport: GatewayRefusal['transport'], status: number, reason: string): void
  /** Marks a connection on which a request was admitted (its idleness is then keep-alive's business). */
  admitted(socket: Duplex): void
}

/** Reserved for the gateway's own routes (architecture: "The gateway's own routes"). */
export function isAuditPath(pathname: string): boolean {
  return pathname === '/_audit' || pathname.startsWith('/_audit/')
}

/** The submitter of a request when nothing identifies it: the local user, with the client's address. */
export function defaultIdentify(req: IncomingMessage): Submitter {
  return {
    user: 'local',
    auth_method: 'none',
    client_address: req.socket.remoteAddress ?? null,
    user_agent: req.headers['user-agent'] ?? null,
    client_id: null,
  }
}

/** Builds `refused` of {@link GatewayContext}. */
export function refusalReporter(
  onRefused: GatewayOptions['onRefused'],
  logger: Logger,
): GatewayContext['refused'] {
  return (req, transport, status, reason) => {
    if (!onRefused) return
    const raw = req.url ?? '/'
    const q = raw.indexOf('?')
    const ua = req.headers['user-agent']
    try {
      onRefused({
        status,
        reason,
        method: (req.method ?? 'GET').toUpperCase(),
        path: (q < 0 ? raw : raw.slice(0, q)).slice(0, 256),
        transport,
        client_address: req.socket.remoteAddress ?? null,
        user_agent: typeof ua === 'string' ? ua : null,
      })
    } catch (err) {
      logger.warn('gateway: refusal not recorded', { error: String(err) })
    }
  }
}

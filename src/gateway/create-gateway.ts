import { randomUUID } from 'node:crypto'
import http from 'node:http'
import type { ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { silentLogger } from '../audit/report-error.js'
import { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT } from '../config/defaults.js'
import { stripUrlCredentials } from '../capture/url-credentials.js'
import { createComfyClient } from '../comfyui/comfy-client.js'
import { comfyErrorBody } from '../comfyui/py-json.js'
import { sendJson } from '../comfyui/send-json.js'
import { createClientViewRewriters } from './client-view-rewriters.js'
import { defaultIdentify, refusalReporter, type GatewayContext } from './gateway-context.js'
import type { Gateway, GatewayOptions } from './gateway-options.js'
import { BodyTooLarge } from './http-util.js'
import { memoryPromptIds } from './prompt-ids.js'
import { createPromptRoute } from './prompt-route.js'
import { createForward, upstreamTarget } from './proxy.js'
import { createRequestRoute, type RequestRoute } from './request-route.js'
import { SocketHub } from './socket-hub.js'
import { createUpgradeRoute } from './upgrade-route.js'

export type { Gateway, GatewayOptions } from './gateway-options.js'
export type { ClientIdState } from './socket-hub.js'
export { routeLabel } from './route-label.js'

type Listener = (e: { healthy: boolean }) => void

/** The socket hub of a gateway: its upstream GETs go through one ComfyClient on the proxy's pool. */
function createHub(
  options: GatewayOptions,
  ctx: Omit<GatewayContext, 'hub'>,
  listeners: Set<Listener>,
): SocketHub {
  const { upstream, logger, timeoutMs } = ctx
  const comfy = createComfyClient({
    baseUrl: upstream.baseUrl,
    timeoutMillis: timeoutMs,
    agent: upstream.agent,
  })
  return new SocketHub({
    wsUrl: upstream.wsUrl,
    tap: ctx.tap,
    promptIds: ctx.promptIds,
    now: ctx.now,
    logger,
    random: options.random ?? Math.random,
    reconnect: options.reconnect ?? {},
    handshakeTimeoutMillis: timeoutMs,
    idleCloseMillis: options.idleCloseMillis ?? 10_000,
    highWaterMarkBytes: options.downstreamHighWaterMarkBytes ?? 16 * 1024 * 1024,
    fetchFeatures: async () => {
      const body = await comfy.get('/features')
      return body.ok ? body.value.toString('utf8').trim() : null
    },
    fetchQueue: async () => {
      const body = await comfy.get('/queue')
      return body.ok ? body.value : null
    },
    state: options.state,
    onHealth: (healthy) => {
      for (const l of listeners) {
        try {
          l({ healthy })
        } catch (error) {
          logger.error('gateway: upstream listener threw', { error: String(error) })
        }
      }
    },
  })
}

/**
 * The HTTP server: Node's own header and request deadlines, an idle limit for connections on which no
 * request was admitted (a slowloris client cannot hold them, issue 9 class 5), and the last-resort answers
 * (413, 500) for a request whose handling threw.
 */
function createServer(
  options: GatewayOptions,
  ctx: GatewayContext,
  trusted: WeakSet<Duplex>,
  route: RequestRoute,
  active: { readonly responses: Set<ServerResponse>; drained: (() => void) | null },
): http.Server {
  const headersTimeoutMillis = options.headersTimeoutMillis ?? 20_000
  const requestTimeoutMillis = options.requestTimeoutMillis ?? 300_000
  const unauthenticatedIdleMillis = options.unauthenticatedIdleMillis ?? 30_000
  if (requestTimeoutMillis > 0 && headersTimeoutMillis > requestTimeoutMillis) {
    throw new Error(
      `createGateway: headersTimeoutMillis (${headersTimeoutMillis}) must not exceed requestTimeoutMillis (${requestTimeoutMillis})`,
    )
  }
  const server = http.createServer(
    {
      // Both are enforced by Node's connection check, which runs every connectionsCheckingInterval: make it
      // fine enough for the timeout to mean what it says.
      headersTimeout: headersTimeoutMillis,
      requestTimeout: requestTimeoutMillis,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeoutMillis / 4))),
    },
    (req, res) => {
      active.responses.add(res)
      res.on('close', () => {
        active.responses.delete(res)
        if (active.responses.size === 0) active.drained?.()
      })
      route(req, res).catch((error: unknown) => {
        if (error instanceof BodyTooLarge) {
          sendJson(res, 413, comfyErrorBody('request_too_large', 'Request body too large', error.message), {
            Connection: 'close',
          })
          return
        }
        ctx.logger.error('gateway: request failed', {
          path: stripUrlCredentials(req.url ?? ''),
          error: String(error),
        })
        const answer = comfyErrorBody(
          'gateway_error',
          'The comfy-audit gateway failed on this request',
          String(error),
        )
        sendJson(res, 500, answer)
      })
    },
  )
  server.on('connection', (socket: Socket) => {
    // Until a request on it is admitted, an idle connection is closed: a client that opens connections and
    // sends nothing, or only refused requests, cannot hold them (issue 9 class 5).
    socket.setTimeout(unauthenticatedIdleMillis, () => {
      if (!trusted.has(socket)) socket.destroy()
    })
  })
  return server
}

/**
 * Starts the gateway: an HTTP + WebSocket reverse proxy in front of ComfyUI that forwards every route,
 * streams bodies both ways, and reports prompts, actions and every upstream WebSocket frame to `tap`.
 * The routes live beside it: prompt-route.ts, request-route.ts, upgrade-route.ts, over proxy.ts.
 *
 * @example
 * const gw = await createGateway({ upstreamUrl: 'http://127.0.0.1:8188', port: 8190, tap })
 * // point browsers and API clients at gw.url
 * await gw.close()
 */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const upstream = upstreamTarget(options.upstreamUrl)
  const logger = options.logger ?? silentLogger
  const timeoutMs = options.upstreamTimeoutMillis ?? 60_000
  const listeners = new Set<Listener>()
  let closing = false
  /** Sockets on which a request was admitted: their idleness is the keep-alive timeout's business. */
  const trusted = new WeakSet<Duplex>()
  const base = {
    options,
    upstream,
    tap: options.tap,
    now: options.now ?? Date.now,
    logger,
    identify: options.identify ?? defaultIdentify,
    newPromptId: options.newPromptId ?? randomUUID,
    timeoutMs,
    forward: createForward(upstream, timeoutMs, logger),
    promptIds: options.promptIds ?? memoryPromptIds(),
    get closing() {
      return closing
    },
    safeTap(what: string, call: () => void): void {
      try {
        call()
      } catch (error) {
        logger.error(`gateway: capture tap threw in ${what}`, { error: String(error) })
      }
    },
    refused: refusalReporter(options.onRefused, logger),
    admitted(socket: Duplex): void {
      if (trusted.has(socket)) return
      trusted.add(socket)
      ;(socket as Socket).setTimeout(0)
    },
  }
  const hub = createHub(options, base, listeners)
  const ctx: GatewayContext = Object.assign(base, { hub })
  const comfy = createComfyClient({
    baseUrl: upstream.baseUrl,
    timeoutMillis: timeoutMs,
    agent: upstream.agent,
  })
  const rewriters = createClientViewRewriters(comfy, options.maxRewriteBytes ?? 64 * 1024 * 1024, logger)
  const route = createRequestRoute(ctx, createPromptRoute(ctx), rewriters)
  const active = { responses: new Set<ServerResponse>(), drained: null as (() => void) | null }
  const server = createServer(options, ctx, trusted, route, active)
  const upgrades = createUpgradeRoute(ctx)
  server.on('upgrade', upgrades.handle)

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? DEFAULT_LISTEN_PORT, options.host ?? DEFAULT_LISTEN_HOST, () => {
      server.off('error', reject)
      resolve()
    })
  })
  await hub.restore()

  const address = server.address() as AddressInfo
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closePromise: Promise<void> | null = null

  return {
    url: `http://${hostForUrl}:${address.port}`,
    port: address.port,
    get upstreamHealthy() {
      return hub.healthy
    },
    get upstreamClientIds() {
      return hub.clientIds
    },
    get observerClientId() {
      return hub.observerClientId
    },
    on(_event: 'upstream', listener: Listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    close(opts?: { drainMillis?: number }) {
      closePromise ??= (async () => {
        closing = true
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        await hub.close()
        if (active.responses.size > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, opts?.drainMillis ?? 5000)
            timer.unref()
            active.drained = () => {
              clearTimeout(timer)
              resolve()
            }
          })
        }
        upgrades.close()
        server.closeAllConnections()
        upstream.agent.destroy()
        await serverClosed
      })()
      return closePromise
    },
  }
}

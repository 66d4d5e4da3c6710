/**
 * WebSocket upgrades: `/ws` (and `/api/ws`) join the socket hub, which answers the way ComfyUI would and
 * relays the id's upstream socket; any other upgrade (a custom node's own socket) is a byte tunnel to
 * ComfyUI. Both pass the request-target check and the guard first, as HTTP requests do.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { stripUrlCredentials } from '../capture/url-credentials.js'
import { generateSocketId } from './client-ids.js'
import {
  forwardRequestHeaders,
  forwardResponseHeaders,
  isLoopbackHost,
  originMatchesHost,
} from './forward-headers.js'
import { isAuditPath, type GatewayContext } from './gateway-context.js'
import { canonicalTarget } from './request-target.js'

const WS_PATHS = new Set(['/ws', '/api/ws'])

/** The upgrade handling of one gateway. */
interface UpgradeRoute {
  /** Handles one `upgrade` event of the HTTP server. Never rejects. */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Cuts every downstream WebSocket and tunnel (at the end of close, after the drain). */
  close(): void
}

function rejectUpgrade(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

/** Any other upgrade: a byte tunnel to ComfyUI, or ComfyUI's refusal passed on. */
function tunnel(
  ctx: GatewayContext,
  tunnels: Set<Duplex>,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const up = ctx.upstream
  const upReq = up.transport.request({
    host: up.hostname,
    port: up.port,
    method: req.method,
    path: up.prefix + (req.url ?? '/'),
    headers: forwardRequestHeaders(req, {
      upstreamHost: up.host,
      upstreamOrigin: up.origin,
      keepUpgrade: true,
    }),
  })
  upReq.setTimeout(ctx.timeoutMs, () => upReq.destroy(new Error('timeout')))
  upReq.on('upgrade', (upRes, upSocket, upHead) => {
    upReq.setTimeout(0)
    let head101 = `HTTP/1.1 ${upRes.statusCode ?? 101} ${upRes.statusMessage ?? 'Switching Protocols'}\r\n`
    for (let i = 0; i < upRes.rawHeaders.length; i += 2)
      head101 += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`
    socket.write(head101 + '\r\n')
    if (upHead.length > 0) socket.write(upHead)
    if (head.length > 0) upSocket.write(head)
    tunnels.add(socket)
    socket.on('close', () => tunnels.delete(socket))
    upSocket.on('error', () => socket.destroy())
    socket.on('error', () => upSocket.destroy())
    upSocket.pipe(socket).pipe(upSocket)
  })
  upReq.on('response', (upRes) => {
    // ComfyUI refused the upgrade: pass its answer on.
    let text = `HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}\r\n`
    const hs = forwardResponseHeaders(upRes.rawHeaders)
    for (let i = 0; i < hs.length; i += 2) text += `${hs[i]}: ${hs[i + 1]}\r\n`
    socket.write(text + 'Connection: close\r\n\r\n')
    upRes.pipe(socket)
  })
  upReq.on('error', () => rejectUpgrade(socket, 503, 'Service Unavailable'))
  upReq.end()
}

/** Makes the upgrade handling over `ctx`. */
export function createUpgradeRoute(ctx: GatewayContext): UpgradeRoute {
  const { options, logger, hub } = ctx
  const checkOrigin = options.checkWebSocketOrigin ?? true
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: options.maxClientFrameBytes ?? 100 * 1024 * 1024,
  })
  const tunnels = new Set<Duplex>()

  const handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const target = canonicalTarget(req.url)
    if (!target.ok) {
      ctx.refused(req, 'websocket', 400, `bad request target: ${target.reason}`)
      return rejectUpgrade(socket, 400, 'Bad Request')
    }
    req.url = target.url
    const pathname = target.path
    if (isAuditPath(pathname)) return rejectUpgrade(socket, 404, 'Not Found')
    if (ctx.closing) return rejectUpgrade(socket, 503, 'Service Unavailable')
    const admission = options.guard ? await options.guard.admitUpgrade(req, socket) : undefined
    if (admission === null) return
    ctx.admitted(socket)
    if (!WS_PATHS.has(pathname)) return tunnel(ctx, tunnels, req, socket, head)
    const host = req.headers.host
    const origin = req.headers.origin
    if (checkOrigin && host && origin && isLoopbackHost(host) && !originMatchesHost(host, origin)) {
      logger.warn('gateway: refused a WebSocket whose Origin does not match Host', {
        host,
        origin: stripUrlCredentials(origin),
      })
      ctx.refused(req, 'websocket', 403, 'cross-site WebSocket refused (Origin does not match Host)')
      return rejectUpgrade(socket, 403, 'Forbidden')
    }
    // A direct client cannot connect while ComfyUI is down either; it will retry.
    if (!hub.healthy) return rejectUpgrade(socket, 503, 'Service Unavailable')
    const submitter = admission?.submitter ?? (await ctx.identify(req))
    const clientId =
      new URL(req.url ?? '/', 'http://gateway').searchParams.get('clientId') || generateSocketId()
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (ctx.closing) {
        ws.close(1001, 'gateway shutting down')
        return
      }
      hub.attachDownstream(ws, clientId, submitter.user, socket)
    })
  }

  return {
    handle(req, socket, head) {
      socket.on('error', () => {})
      handleUpgrade(req, socket, head).catch((error: unknown) => {
        logger.error('gateway: upgrade failed', {
          path: stripUrlCredentials(req.url ?? ''),
          error: String(error),
        })
        rejectUpgrade(socket, 500, 'Internal Server Error')
      })
    },
    close() {
      for (const ws of wss.clients) ws.terminate()
      for (const s of tunnels) s.destroy()
      wss.close()
    },
  }
}

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../audit/report-error.js'
import type { JsonValue, Submitter } from '../audit/types.js'
import type { CaptureTap } from '../capture/tap.js'
import type { PromptIdRegistry } from './prompt-ids.js'
import type { RequestGuard } from './request-guard.js'
import type { ClientIdState } from './socket-hub.js'
import type { ReconnectOptions } from './upstream-socket.js'

/** A request the gateway refused by itself (see {@link GatewayOptions.onRefused}). */
export interface GatewayRefusal {
  readonly status: number
  readonly reason: string
  readonly method: string
  /** The path as sent (before any `?`, at most 256 characters): for a bad target it is the evidence. */
  readonly path: string
  readonly transport: 'http' | 'websocket'
  readonly client_address: string | null
  readonly user_agent: string | null
}

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  /** ComfyUI's base URL (`http://127.0.0.1:8188`); a path prefix is kept. */
  readonly upstreamUrl: string
  /** Address to listen on (default `127.0.0.1`). */
  readonly host?: string
  /** Port to listen on (default 8190, as the config; 0 picks a free one). */
  readonly port?: number
  /** Where proxied traffic is reported. Called synchronously; never awaited. */
  readonly tap: CaptureTap
  /** Who sent a request (default: user `local`, auth method `none`, the client address and user agent). */
  readonly identify?: (req: IncomingMessage) => Submitter | Promise<Submitter>
  /**
   * Admission control run first for every request and upgrade (authentication, roles, CSRF, limits); its
   * submitter replaces `identify`. See src/identity/access-guard.ts.
   */
  readonly guard?: RequestGuard
  /** Largest WebSocket message a downstream client may send, bytes (default 100 MiB, as `ws`). */
  readonly maxClientFrameBytes?: number
  /** Serves `/_audit/*`; returning false answers 404. */
  readonly auditHandler?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>
  /** Persisted namespaced client ids, re-attached at start. */
  readonly state?: ClientIdState
  /**
   * The one answer to "is this prompt id known?" (src/gateway/prompt-ids.ts): a client-chosen prompt_id it
   * does not free is answered 400 by the gateway itself. Default: an in-memory registry of every id this
   * gateway forwarded or saw ComfyUI hold under its client ids.
   */
  readonly promptIds?: PromptIdRegistry
  /**
   * Told of the requests the gateway itself refuses before (or without) the guard: a request target that
   * cannot be canonicalised (400), a WebSocket whose Origin does not match its loopback Host (403). The guard
   * reports its own refusals. Must not throw.
   */
  readonly onRefused?: (refusal: GatewayRefusal) => void
  /**
   * The gateway's sealed attribution of a prompt (JSON text, see capture/submission-seal.ts), forwarded as
   * `extra_data.comfy_audit` so a crash before `prompt.submitted` is committed loses nothing ComfyUI keeps.
   * Synchronous and CPU-only: the proxy path never waits for disk. Absent: prompts go unsealed.
   */
  readonly sealSubmission?: (e: {
    promptId: string
    submitter: Submitter
    upstreamClientId: string
    prompt: JsonValue | undefined
    /** Size of the request body (a large graph may go undigested: see the composition root). */
    bodyBytes: number
    timeMs: number
  }) => string | null
  /** Epoch ms clock (default `Date.now`). */
  readonly now?: () => number
  /** [0, 1) randomness for reconnect jitter (default `Math.random`). */
  readonly random?: () => number
  /** Makes prompt ids (default `crypto.randomUUID`, as ComfyUI does). */
  readonly newPromptId?: () => string
  readonly logger?: Logger
  /** Longest wait for ComfyUI's response headers or WebSocket handshake, ms (default 60 000). */
  readonly upstreamTimeoutMillis?: number
  /** Backoff of upstream socket reconnects (default 250 ms doubling to 10 s, 50 % jitter). */
  readonly reconnect?: ReconnectOptions
  /** How long an id with no prompt in flight and no downstream socket keeps its upstream socket (default 10 000 ms). */
  readonly idleCloseMillis?: number
  /** Bytes queued for one downstream socket beyond which it is dropped (default 16 MiB). */
  readonly downstreamHighWaterMarkBytes?: number
  /**
   * Fail-closed check of every POST /prompt, before anything is forwarded: a reason string refuses the prompt
   * with 503 (e.g. the audit store's spool is full, so the run would go unrecorded). Must answer synchronously:
   * the proxy path never waits for the store.
   */
  readonly refusePrompt?: () => string | null
  /** Largest POST /prompt body the gateway buffers (default 256 MiB); larger ones get 413. */
  readonly maxPromptBytes?: number
  /** Largest request body of a tapped action (uploads) handed to the tap (default 256 MiB); the stream is not limited. */
  readonly maxTapBodyBytes?: number
  /**
   * Largest `/history`, `/queue` or jobs answer the gateway buffers to show the client its own client id
   * (default 64 MiB); a larger one is streamed unchanged, with a warning.
   */
  readonly maxRewriteBytes?: number
  /** Called when a request's response is done (metrics): method, a low-cardinality route label, status, seconds. */
  readonly onRequestDone?: (e: { method: string; route: string; status: number; seconds: number }) => void
  /**
   * Longest a client may take to send a request's headers, ms (default 20 000): then 408 and the connection
   * is closed, so a slowloris client cannot hold connections open (issue 9 class 5).
   */
  readonly headersTimeoutMillis?: number
  /** Longest a client may take to send a whole request, body included, ms (default 300 000; 0 = no limit). */
  readonly requestTimeoutMillis?: number
  /**
   * How long a connection on which no request has been admitted may stay idle, ms (default 30 000): a
   * connection that sent nothing, or only requests the guard refused, is closed then.
   */
  readonly unauthenticatedIdleMillis?: number
  /** Refuse downstream `/ws` connects whose Origin does not match Host on a loopback Host, as ComfyUI does (default true). */
  readonly checkWebSocketOrigin?: boolean
}

/** A running gateway. */
export interface Gateway {
  /** `http://host:port` the gateway listens on. */
  readonly url: string
  readonly port: number
  /** Whether ComfyUI's WebSocket endpoint is reachable right now. */
  readonly upstreamHealthy: boolean
  /** The namespaced client ids the gateway holds upstream sockets for. */
  readonly upstreamClientIds: string[]
  /** The id of the gateway's observer socket (its frames reach the tap as well). */
  readonly observerClientId: string
  /** Listens for upstream health changes; returns a function that removes the listener. */
  on(event: 'upstream', listener: (e: { healthy: boolean }) => void): () => void
  /** Stops listening, closes sockets, waits up to `drainMillis` (default 5000) for requests in progress. */
  close(opts?: { drainMillis?: number }): Promise<void>
}

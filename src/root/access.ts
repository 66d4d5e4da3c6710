/**
 * Who may do what at the gateway: authentication, access control, the refusal log, and the `/_audit/` routes
 * that depend on them. The proxy itself is built by the composition root around what this returns.
 */
import type { Logger } from '../audit/report-error.js'
import type { Capture } from '../capture/capture.js'
import type { Config } from '../config/config.js'
import type { GatewayOptions } from '../gateway/create-gateway.js'
import { createAccessGuard } from '../identity/access-guard.js'
import { createAuthenticator, type Authenticator } from '../identity/authenticator.js'
import { createRefusalLog, type RefusalLog } from '../identity/refusal-log.js'
import { createAuditRoutes } from './audit-routes.js'
import { securityEventRecorder } from './gateway-events.js'
import type { Recording } from './recording.js'

/** What {@link createAccess} built. */
interface Access {
  readonly authenticator: Authenticator
  readonly refusals: RefusalLog
  /** The gateway's admission control (unused when tests identify requests themselves). */
  readonly guard: NonNullable<GatewayOptions['guard']>
  /** The gateway's `auditHandler`. */
  readonly auditHandler: NonNullable<GatewayOptions['auditHandler']>
  /** Health turns to draining and the dashboard's live streams end (shutdown begins). */
  startDraining(): void
}

/** What access needs of the rest of the gateway. */
interface AccessDeps {
  readonly recording: Recording
  readonly capture: Pick<Capture, 'openSessions' | 'isPromptIdKnown' | 'flush'>
  readonly logger: Logger
  /** ComfyUI's base URL. */
  readonly upstream: string
  /** The host the gateway listens on (auth mode `none` is refused beyond loopback). */
  readonly listenHost: string
  /** Whether ComfyUI answers now (health); asked only once the proxy exists. */
  readonly upstreamHealthy: () => boolean
  /** Epoch-ms clock (tests). */
  readonly now?: () => number
}

/** Throws (bad startup config) for auth.mode none beyond loopback without auth.allowInsecure, saying why. */
export function createAccess(config: Readonly<Config>, deps: AccessDeps): Access {
  const { recording, logger, now } = deps
  const { store, events } = recording
  let draining = false
  // Aborted when shutdown starts, so the dashboard's live-update streams end and do not hold the drain.
  const shuttingDown = new AbortController()
  const authenticator = createAuthenticator(config, store, {
    now,
    onEvent: securityEventRecorder(logger, events.record),
  })
  // Refusals are evidence (someone tried what they may not), rate-limited so that a flood cannot fill the disk.
  const refusals = createRefusalLog({
    ...config.limits.refusals,
    now,
    record: (kind, payload) => {
      logger.warn(kind === 'access.refused' ? 'access refused' : 'access refused (summary)', payload)
      events.record(kind, payload)
    },
  })
  const guard = createAccessGuard({
    authenticator,
    auth: config.auth,
    limits: config.limits,
    multiUser: config.comfyui.multiUser,
    listenHost: deps.listenHost,
    upstreamUrl: deps.upstream,
    promptOwner: async (id) => {
      const recorded = async (): Promise<string | null> => (await store.session(id))?.submitter?.user ?? null
      const owner = await recorded()
      // A prompt capture knows that the store does not hold yet is on its way (capture's queue, then a group
      // commit; its run may have ended already): wait for it rather than refuse its submitter.
      if (owner !== null || !deps.capture.isPromptIdKnown(id)) return owner
      await deps.capture.flush()
      await store.flush()
      return recorded()
    },
    // The metrics route checks metrics.token itself.
    publicPaths: ['/_audit/metrics'],
    now,
    logger,
    onRefused: (r) => refusals.refused(r),
  })
  const auditHandler = createAuditRoutes({
    config,
    store,
    metrics: recording.metrics,
    sinks: recording.sinks,
    authenticator,
    refusals,
    record: events.record,
    openSessions: () => deps.capture.openSessions().length,
    upstreamHealthy: deps.upstreamHealthy,
    draining: () => draining,
    signal: shuttingDown.signal,
    verifierKey: recording.key.verifierKey,
  })
  return {
    authenticator,
    refusals,
    guard,
    auditHandler,
    startDraining: () => {
      draining = true
      shuttingDown.abort()
    },
  }
}

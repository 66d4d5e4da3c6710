/**
 * The gateway's own routes under `/_audit/`: login, metrics, the dashboard, the People page and the audit
 * API, with health details, and every read of the audit trail itself recorded (who looked at what).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Config } from '../config/config.js'
import { auditReader } from '../identity/access-guard.js'
import type { Authenticator } from '../identity/authenticator.js'
import { stripUrlCredentials } from '../identity/redaction.js'
import type { RefusalLog } from '../identity/refusal-log.js'
import { createMetricsRoute } from '../metrics/metrics-route.js'
import type { Metrics } from '../metrics/metrics.js'
import { createAuditApi } from '../query/audit-api.js'
import { createDashboardRoute } from '../query/dashboard-route.js'
import { createPeopleApi } from '../query/people-api.js'
import { sinkHealthJson, type SinkPipeline } from '../sinks/sink-pipeline.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import type { GatewayEvents } from './gateway-events.js'

/** Version the health route reports. */
const GATEWAY_VERSION = '0.1.0'

/** What the routes read and whom they tell. */
interface AuditRoutesDeps {
  readonly config: Readonly<Config>
  readonly store: RuntimeStore
  readonly metrics: Metrics
  readonly sinks: Pick<SinkPipeline, 'health'>
  readonly authenticator: Authenticator
  readonly refusals: Pick<RefusalLog, 'refused'>
  readonly record: GatewayEvents['record']
  /** Sessions capture holds open (health). */
  readonly openSessions: () => number
  readonly upstreamHealthy: () => boolean
  readonly draining: () => boolean
  /** Aborted when shutdown starts, so the dashboard's live-update streams end and do not hold the drain. */
  readonly signal: AbortSignal
  readonly verifierKey: string
}

/** The gateway's `auditHandler`: true when it served the request. */
export function createAuditRoutes(
  deps: AuditRoutesDeps,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const { config, store, metrics, sinks, authenticator, refusals, record } = deps
  const dashboard = createDashboardRoute()
  const auditApi = createAuditApi({
    store,
    onCommitted: (listener) => store.onCommitted(listener),
    signal: deps.signal,
    upstreamHealthy: deps.upstreamHealthy,
    draining: deps.draining,
    version: GATEWAY_VERSION,
    verifierKey: deps.verifierKey,
    healthDetails: () => ({
      origin: store.origin,
      store: store.dialect,
      open_sessions: deps.openSessions(),
      sinks: sinkHealthJson(sinks.health()),
      // Anything but ok means acknowledged events are not yet in the store (over-quota: prompts refused).
      ...(store.health().state === 'ok' ? {} : { status: 'degraded' }),
      store_write: { ...store.health() },
    }),
  })
  // Without metrics.token or metrics.open the route answers 404 saying how to switch it on.
  const metricsRoute = createMetricsRoute(metrics, {
    ...config.metrics,
    beforeScrape: () => {
      metrics.sinkHealth(sinks.health())
      metrics.storeHealth(store.health())
    },
  })
  // The dashboard's People page; the journal names the admin as `dashboard:<name>`.
  const peopleApi = createPeopleApi({
    directory: authenticator.directory,
    actor: (req) => `dashboard:${auditReader(req)?.user ?? 'local'}`,
  })
  return async (req, res) => {
    if (await authenticator.handleAuditRoute(req, res)) return true
    if (await metricsRoute(req, res)) {
      // The metrics route checks metrics.token itself: its refusals are refusals like the guard's.
      if (res.statusCode === 401 || res.statusCode === 403)
        refusals.refused({
          status: res.statusCode,
          reason: 'metrics token missing or wrong',
          method: req.method ?? 'GET',
          path: '/_audit/metrics',
          transport: 'http',
          user: null,
          role: null,
          client_address: req.socket.remoteAddress ?? null,
          user_agent: req.headers['user-agent'] ?? null,
        })
      return true
    }
    if (await dashboard(req, res)) return true
    const served = (await peopleApi(req, res)) || (await auditApi(req, res))
    // Reads of the audit trail are themselves audited: who looked at what.
    if (served && (req.url ?? '').startsWith('/_audit/api/')) {
      const reader = auditReader(req)
      record('audit.read', {
        method: req.method ?? 'GET',
        // Never a credential in the log, wherever the client put one (issue 9 class 4).
        path: stripUrlCredentials(req.url ?? ''),
        status: res.statusCode,
        user: reader?.user ?? 'local',
        auth_method: reader?.auth_method ?? config.auth.mode,
        client_address: req.socket.remoteAddress ?? null,
      })
    }
    return served
  }
}

/**
 * The `/_audit/metrics` route as the gateway mounts it: the config decides whether it is served with a
 * token, served open, or switched off (404 saying how to switch it on), so a gateway without metrics
 * settings starts as usual instead of refusing to.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { metricsHandler, type Metrics } from './metrics.js'

/** Path of the metrics route. */
const METRICS_PATH = '/_audit/metrics'

/** Options of {@link createMetricsRoute}: the config's `metrics` section plus a scrape hook. */
export interface MetricsRouteOptions {
  /** Bearer token scrapers must send. */
  readonly token?: string
  /** Serve without a token. */
  readonly open?: boolean
  /** Called before each scrape, e.g. `() => metrics.sinkHealth(sinks.health())`. */
  readonly beforeScrape?: () => void
}

/** Message of the 404 answered while metrics are off. */
export const METRICS_OFF_MESSAGE =
  'metrics are off: set metrics.token (or COMFY_AUDIT_METRICS_TOKEN) to serve them to scrapers that send ' +
  'Authorization: Bearer <token>, or metrics.open: true to serve them without a token'

/**
 * A route handler for the gateway's `/_audit/` dispatcher: answers `/_audit/metrics` and returns true, or
 * returns false for any other path.
 * @example
 * const metricsRoute = createMetricsRoute(metrics, { ...config.metrics, beforeScrape })
 * auditHandler: async (req, res) => (await metricsRoute(req, res)) || auditApi(req, res)
 */
export function createMetricsRoute(
  metrics: Metrics,
  options: MetricsRouteOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const enabled = options.open === true || (options.token !== undefined && options.token !== '')
  const handler = enabled
    ? metricsHandler(metrics, {
        token: options.token,
        open: options.open,
        beforeScrape: options.beforeScrape,
      })
    : null
  return async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://gateway').pathname
    if (path !== METRICS_PATH) return false
    if (handler === null) {
      res
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
        .end(`${METRICS_OFF_MESSAGE}\n`)
      return true
    }
    await handler(req, res)
    return true
  }
}

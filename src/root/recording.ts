/**
 * What records, opened first and closed last: the store, the sinks and metrics that follow its commits, the
 * gateway's own events, and the ledger that signs checkpoints over it.
 */
import { reportError, type Logger } from '../audit/report-error.js'
import type { Config } from '../config/config.js'
import { loadOrCreateSigningKey, type SigningKey } from '../ledger/key-store.js'
import { createLedger, type Ledger } from '../ledger/ledger.js'
import { createMetrics, observeEvents, type Metrics } from '../metrics/metrics.js'
import type { SinkPipeline } from '../sinks/sink-pipeline.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { createGatewayEvents, type GatewayEvents } from './gateway-events.js'
import { checkpointPublisher, openConfiguredSinks, openGatewayStore } from './presets.js'

/** The recording half of a running gateway. */
export interface Recording {
  readonly store: RuntimeStore
  readonly metrics: Metrics
  readonly sinks: SinkPipeline
  /** The gateway's own events (redacted as capture's are). */
  readonly events: GatewayEvents
  /** This origin's signing key (made at first start, mode 0600). */
  readonly key: SigningKey
  readonly ledger: Ledger
  /** Stops feeding metrics and sinks from commits (at shutdown, after the last commit). */
  readonly offCommitted: () => void
}

/** Opens the store, then the sinks, then the ledger; a sink that cannot start closes the store again. */
export async function openRecording(
  config: Readonly<Config>,
  deps: {
    readonly logger: Logger
    readonly redactText: (text: string) => string
    /** Epoch-ms clock (tests). */
    readonly now?: () => number
  },
): Promise<Recording> {
  const { logger } = deps
  const metrics = createMetrics()
  const store = await openGatewayStore(config, { metrics, logger })
  // Metrics and sinks follow commits: they see exactly what the store holds, in commit order, and never
  // slow the proxy path (onEvents only queues; a sink that is down fills its own spool).
  const sinks = await openConfiguredSinks(config, store, logger).catch(async (err: unknown) => {
    await store.close()
    throw err
  })
  const offCommitted = store.onCommitted((events) => {
    observeEvents(metrics, events)
    sinks.onEvents(events)
  })
  const events = createGatewayEvents(store, deps.redactText, deps.now)
  // The ledger follows commits from the first event on.
  const key = await loadOrCreateSigningKey(config.data, store.origin)
  const ledger = createLedger({
    store,
    signer: key.signer,
    checkpointEvery: config.ledger.checkpointEvery,
    checkpointIntervalMillis: config.ledger.checkpointIntervalMillis,
    publish: checkpointPublisher(config.ledger),
    onError: (err, context) => reportError(err, `ledger: ${context}`),
    now: deps.now,
  })
  await ledger.start()
  return { store, metrics, sinks, events, key, ledger, offCommitted }
}

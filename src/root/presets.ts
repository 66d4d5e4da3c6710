/**
 * The composition root's registries: which sinks a config names, where checkpoints are published, the
 * gateway's store (which dialect a location opens is in store-dialects.ts). Only this layer (and nothing below
 * it) knows concrete dialects and sinks; each heavy driver is imported lazily, when its dialect or sink is
 * configured.
 */
import { join } from 'node:path'
import { reportError, type Logger } from '../audit/report-error.js'
import { sinkName, type Config } from '../config/config.js'
import { createFilePublisher, createWebhookPublisher } from '../ledger/publish.js'
import type { LedgerOptions } from '../ledger/ledger.js'
import type { Metrics } from '../metrics/metrics.js'
import { createSinkPipeline, type SinkPipeline } from '../sinks/sink-pipeline.js'
import { openEventSpool } from '../store/event-spool.js'
import { createRuntimeStore, type RuntimeStore, type StoreHealth } from '../store/runtime-store.js'
import { openStoreDialect } from './store-dialects.js'

/**
 * The gateway's own store: its dialect on a worker thread, with the outage policy of `store.outage` (a
 * write-ahead spool inside the locked data dir, so one process owns it; a next start commits what a crash
 * left there), every health change logged and reported to the metrics. Initialised.
 */
export async function openGatewayStore(
  config: Readonly<Config>,
  deps: { readonly metrics: Metrics; readonly logger: Logger },
): Promise<RuntimeStore> {
  const spool = await openEventSpool({
    dir: join(config.data, 'store-spool'),
    maxBytes: config.store.outage.spoolMaxBytes,
  })
  const dialect = await openStoreDialect(config.store.location, {
    sqliteThread: 'worker',
    busyTimeoutMillis: config.store.busyTimeoutMillis,
  })
  const store = createRuntimeStore(dialect, {
    origin: config.origin ?? 'comfy-audit',
    onError: (err, context) => reportError(err, `store: ${context}`),
    outage: { maxQueuedEvents: config.store.outage.maxQueuedEvents, spool },
    onHealthChange: (health) => {
      deps.metrics.storeHealth(health)
      logStoreHealth(deps.logger, health, config.store.outage.whenFull)
    },
  })
  await store.init()
  return store
}

function logStoreHealth(logger: Logger, health: StoreHealth, whenFull: 'refuse' | 'accept'): void {
  const details = { ...health }
  if (health.state === 'over-quota') {
    logger.error(
      `store: write-ahead spool full (${health.spooledBytes} bytes); ` +
        (whenFull === 'refuse'
          ? 'new prompts are refused with 503 until the store is back'
          : 'prompts still run (store.outage.whenFull = accept); their events wait in memory'),
      details,
    )
  } else if (health.state === 'retrying') {
    logger.error(`store: commits failing, retrying; events wait in memory then on disk`, details)
  } else {
    logger.info('store: commits succeed again; waiting events committed in order', details)
  }
}

/**
 * The sinks of `config.sinks`, each replaying from the store's log what it had not delivered before a crash
 * (the log is the sinks' record). The sink types themselves are registered in sinks/sink-pipeline.ts.
 */
export function openConfiguredSinks(
  config: Readonly<Config>,
  store: RuntimeStore,
  logger: Logger,
): Promise<SinkPipeline> {
  return createSinkPipeline(config.sinks, {
    dataDir: config.data,
    logger,
    log: { origin: store.origin, lastSeq: () => store.lastSeq(), events: (filter) => store.events(filter) },
  })
}

/** Folders the configured JSONL sinks write to (retention removes their old files). */
export function jsonlSinkDirs(config: Readonly<Config>): string[] {
  return config.sinks
    .filter((sink) => sink.type === 'jsonl')
    .map((sink) => (sink.type === 'jsonl' && sink.dir) || join(config.data, 'jsonl', sinkName(sink)))
}

/** Where signed checkpoints go besides the store (`ledger.publishFile`, `ledger.publishWebhook`); none: undefined. */
export function checkpointPublisher(ledger: Readonly<Config['ledger']>): LedgerOptions['publish'] {
  const publishers = [
    ledger.publishFile ? createFilePublisher(ledger.publishFile) : null,
    ledger.publishWebhook ? createWebhookPublisher(ledger.publishWebhook) : null,
  ].filter((p) => p !== null)
  if (publishers.length === 0) return undefined
  return async (note, cp) => {
    await Promise.all(publishers.map((publish) => publish(note, cp)))
  }
}

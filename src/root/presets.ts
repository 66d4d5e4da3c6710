/**
 * The composition root's registries: which store dialect a configured location opens, which sinks a config
 * names, where checkpoints are published. Only this layer (and nothing below it) knows concrete dialects and
 * sinks; each heavy driver is imported lazily, when its dialect or sink is configured.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { reportError, type Logger } from '../audit/report-error.js'
import { sinkName, type Config, type StoreLocation } from '../config/config.js'
import { createFilePublisher, createWebhookPublisher } from '../ledger/publish.js'
import type { LedgerOptions } from '../ledger/ledger.js'
import type { Metrics } from '../metrics/metrics.js'
import { createSinkPipeline, type SinkPipeline } from '../sinks/sink-pipeline.js'
import { openEventSpool } from '../store/event-spool.js'
import { createRuntimeStore, type RuntimeStore, type StoreHealth } from '../store/runtime-store.js'
import type { StoreDialect } from '../store/store.js'

/** Options of {@link openStoreDialect}. */
export interface StoreDialectOptions {
  /** `worker` runs SQLite on a worker thread (the gateway: commits must not block proxying); default `main`. */
  readonly sqliteThread?: 'main' | 'worker'
  /** SQLite: how long a commit waits for another process's lock, ms (default: the dialect's). */
  readonly busyTimeoutMillis?: number
  /**
   * false: the store must already exist (read-only commands must not leave an empty store, and directories,
   * behind a mistyped path). Default true.
   */
  readonly create?: boolean
}

/**
 * Thrown by {@link openStoreDialect} with `create: false` when the SQLite file does not exist. Callers word it
 * for their users (the CLI names its flags); PostgreSQL reports a missing store at `init()` instead.
 */
export class StoreNotFoundError extends Error {
  override readonly name = 'StoreNotFoundError'
  constructor(readonly path: string) {
    super(`no audit store at ${path}`)
  }
}

/**
 * The dialect of a store location (config `store.location`, parsed from `store.url`).
 * @example
 * const store = createRuntimeStore(await openStoreDialect(config.store.location), { origin })
 */
export async function openStoreDialect(
  location: StoreLocation,
  options: StoreDialectOptions = {},
): Promise<StoreDialect> {
  switch (location.dialect) {
    case 'sqlite': {
      const { path } = location
      if (path !== ':memory:' && options.create === false && !existsSync(path)) {
        throw new StoreNotFoundError(path)
      }
      if (path !== ':memory:') mkdirSync(resolve(path, '..'), { recursive: true })
      const { createSqliteDialect } = await import('../store/sqlite/sqlite-dialect.js')
      return createSqliteDialect({
        path,
        thread: options.sqliteThread ?? 'main',
        ...(options.busyTimeoutMillis !== undefined ? { busyTimeoutMillis: options.busyTimeoutMillis } : {}),
      })
    }
    case 'postgres': {
      const { createPostgresDialect } = await import('../store/postgres/postgres-dialect.js')
      return createPostgresDialect({ url: location.url, create: options.create !== false })
    }
  }
}

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

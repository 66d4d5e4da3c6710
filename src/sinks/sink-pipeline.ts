/**
 * The sinks a config names, built and wired: one lazily imported sink per entry, each behind its own
 * batch processor and disk spool (`<data>/spool/<name>`). A sink that is down only falls behind on its own;
 * the others and the gateway carry on.
 *
 * With the store's log (`log`, as the gateway runs it) each sink has a persisted cursor
 * (`<data>/spool/<name>/cursor.json`, see sink-cursor.ts) and its own feeder (sink-feeder.ts), which maps
 * committed events in log order and reads from the store whatever the sink has not been offered: after a
 * restart, everything past the cursor. Queue and spool are then buffers only; the spool a crash left behind
 * is cleared at start, its records being replayed from the store. Without `log` (tests of the sinks alone)
 * one MultiProcessor feeds every sink from the events handed in, and a crash loses what was in memory.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { reportError, silentLogger, type Logger } from '../audit/report-error.js'
import type { AuditEvent, JsonObject } from '../audit/types.js'
import { sinkName, type SinkConfig } from '../config/config.js'
import {
  createBatchProcessor,
  type DropReason,
  type RecordProcessor,
  type SinkHealth,
} from './batch-processor.js'
import { createMultiProcessor, type MultiProcessor } from './multi-processor.js'
import type { HttpSinkConfig, HttpSinkOptions } from './retrying-transport.js'
import type { AuditSink } from './sink.js'
import { openSinkCursor, positionOf, type SinkCursor } from './sink-cursor.js'
import { createSinkFeeder, type SinkFeeder, type SinkLog } from './sink-feeder.js'
import { openSpool } from './spool.js'
import { acquireDirLock, type DirLock } from '../store/data-dir-lock.js'

/** Options of {@link createSinkPipeline}. */
interface SinkPipelineOptions {
  /** The gateway's data directory: spools go to `<dataDir>/spool/<name>`, JSONL files default to `<dataDir>/jsonl/<name>`. */
  readonly dataDir: string
  /** Host name reported to receivers (`host.name`, ECS `host.hostname`; default os.hostname()). */
  readonly hostName?: string
  readonly logger?: Logger
  /**
   * Epoch milliseconds (default Date.now), for the processors' retry schedule, JSONL rotation days and
   * webhook timestamps. HTTP transports keep the real clock for their deadlines.
   */
  readonly now?: () => number
  /** Called for every drop with the sink's name; must not throw. */
  readonly onDrop?: (sink: string, count: number, reason: DropReason) => void
  /**
   * The store's log of this gateway's origin. With it every sink keeps a cursor and replays from the log what
   * it had not settled (see the module comment); without it records live only in the queue and spool.
   */
  readonly log?: SinkLog
}

/** The configured sinks, running. */
export interface SinkPipeline {
  /** Names of the sinks, in config order. */
  readonly names: readonly string[]
  /**
   * Hands committed events (in commit order) to every sink. Never throws and never waits: records are
   * queued, spilled to the spool when the queue is full, and counted when dropped.
   */
  onEvents(events: readonly AuditEvent[]): void
  /** Per-sink queue, spool, failures and drops (for `/_audit/health`, metrics and `comfy-audit status`). */
  health(): SinkHealth[]
  /** Exports what is queued and spooled (one attempt each) and flushes the sinks. */
  forceFlush(): Promise<void>
  /** Flushes, spools what could not be delivered, and closes every sink; idempotent. */
  shutdown(): Promise<void>
}

/** The HTTP part of a sink's config, as the sinks take it. */
function httpConfig(sink: Extract<SinkConfig, { url: string }>): HttpSinkConfig {
  return {
    url: sink.url,
    ...(sink.headers ? { headers: sink.headers } : {}),
    ...(sink.auth ? { auth: sink.auth } : {}),
    ...(sink.retry ? { retry: sink.retry } : {}),
  }
}

/** Imports and creates the sink one config entry names (heavy code is loaded only when configured). */
async function createSink(sink: SinkConfig, options: SinkPipelineOptions, name: string): Promise<AuditSink> {
  const logger = options.logger ?? silentLogger
  const http: HttpSinkOptions = { hostName: options.hostName, logger }
  switch (sink.type) {
    case 'jsonl': {
      const { createJsonlSink } = await import('./jsonl/jsonl-sink.js')
      return createJsonlSink(
        {
          dir: sink.dir ?? join(options.dataDir, 'jsonl', name),
          prefix: sink.prefix,
          rotateDaily: sink.rotation.daily,
          maxFileBytes: sink.rotation.maxFileBytes,
          gzip: sink.rotation.gzip,
        },
        { now: options.now, logger },
      )
    }
    case 'otlp': {
      const { createOtlpSink } = await import('./otlp/otlp-sink.js')
      return createOtlpSink(
        { ...httpConfig(sink), instanceId: sink.instanceId, resourceAttributes: sink.resourceAttributes },
        http,
      )
    }
    case 'loki': {
      const { createLokiSink } = await import('./loki/loki-sink.js')
      return createLokiSink({ ...httpConfig(sink), labels: sink.labels, tenant: sink.tenant }, http)
    }
    case 'elasticsearch': {
      const { createElasticsearchSink } = await import('./elasticsearch/elasticsearch-sink.js')
      return createElasticsearchSink(
        { ...httpConfig(sink), index: sink.index, template: sink.template },
        http,
      )
    }
    case 'webhook': {
      const { createWebhookSink } = await import('./webhook/webhook-sink.js')
      return createWebhookSink({ ...httpConfig(sink), secret: sink.secret }, { ...http, now: options.now })
    }
  }
}

/** Gives a sink its configured name, so two sinks of one type keep apart in health and metrics. */
function named(sink: AuditSink, name: string): AuditSink {
  if (sink.name === name) return sink
  return {
    name,
    export: (batch, signal) => sink.export(batch, signal),
    forceFlush: () => sink.forceFlush(),
    shutdown: () => sink.shutdown(),
    ...(sink.lastStored ? { lastStored: () => sink.lastStored!() } : {}),
  }
}

/**
 * Builds the sinks of the config. Throws (naming the sink) when one cannot be set up, e.g. its spool folder
 * cannot be created; the sinks already built are shut down first. With no sinks it imports nothing.
 * @example
 * const sinks = await createSinkPipeline(config.sinks, { dataDir: config.data, logger })
 * store.onCommitted((events) => sinks.onEvents(events))
 * // on shutdown, after the store has flushed:
 * await sinks.shutdown()
 */
export async function createSinkPipeline(
  sinks: readonly SinkConfig[],
  options: SinkPipelineOptions,
): Promise<SinkPipeline> {
  const logger = options.logger ?? silentLogger
  const processors: RecordProcessor[] = []
  const feeders: SinkFeeder[] = []
  const cursors: SinkCursor[] = []
  const names: string[] = []
  const log = options.log
  // One pipeline per spool: two writing one directory would overwrite each other's segments.
  const locks: DirLock[] = []
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(feeders.map((f) => f.close()))
    await Promise.allSettled(processors.map((p) => p.shutdown()))
    for (const lock of locks) lock.release()
  }
  for (const config of sinks) {
    const name = sinkName(config)
    if (names.includes(name)) {
      await stopAll()
      throw new Error(`sinks: two sinks are named ${JSON.stringify(name)}; give each its own name`)
    }
    try {
      const dir = join(options.dataDir, 'spool', name)
      await mkdir(dir, { recursive: true })
      locks.push(acquireDirLock(dir, { purpose: `sink ${name} spool` }))
      const spool = await openSpool({ dir, maxBytes: config.spoolMaxBytes, logger })
      let cursor: SinkCursor | undefined
      if (log) {
        cursor = await openSinkCursor({
          dir,
          origin: log.origin,
          // A sink without a cursor starts at the log's head, unless its spool (from a version without
          // cursors) still holds undelivered records: then just before the oldest, so that replay covers them.
          head: async () => {
            const head = await log.lastSeq()
            const oldest = await spool.minSeq(log.origin)
            return oldest === null ? head : Math.min(head, oldest - 1)
          },
          now: options.now,
        })
        // Everything in a spool left by the last run is past the cursor, and the feeder replays it from the log,
        // in order and together with what that run still held in memory.
        const left = await spool.clear()
        if (left > 0) {
          logger.info(`sink ${name}: ${left} spooled record(s) of the last run are replayed from the log`, {
            sink: name,
            cursor: cursor.position(),
          })
        }
      }
      const sink = named(await createSink(config, options, name), name)
      if (cursor && sink.lastStored) {
        // The destination is the better witness: what it holds past the cursor was delivered just before a
        // crash that kept the cursor from moving.
        const stored = await sink.lastStored()
        if (stored && stored.id.slice(0, stored.id.lastIndexOf(':')) === log!.origin) {
          cursor.advance(positionOf(stored))
        }
      }
      const onDrop = options.onDrop
      const processor = createBatchProcessor(sink, {
        maxQueueSize: config.batch.maxQueueSize,
        maxExportBatchSize: config.batch.maxExportBatchSize,
        scheduledDelayMillis: config.batch.scheduledDelayMillis,
        exportTimeoutMillis: config.batch.exportTimeoutMillis,
        spool,
        now: options.now,
        logger,
        // The next batch waits until the cursor covering this one is on disk: a crash re-sends one batch at most.
        onDelivered: cursor
          ? (records) => {
              cursor.advance(positionOf(records[records.length - 1]!))
              return cursor.flush()
            }
          : undefined,
        onDrop: (count, reason) => {
          // A record given up for room (not refused by the receiver) must come back from the log at the next
          // start: the cursor stays before it.
          if (cursor && reason !== 'refused') cursor.freeze()
          onDrop?.(name, count, reason)
        },
      })
      processors.push(processor)
      if (log && cursor) {
        cursors.push(cursor)
        await cursor.flush()
        feeders.push(createSinkFeeder({ name, log, processor, after: cursor.position(), logger }))
      }
      names.push(name)
    } catch (error) {
      await stopAll()
      const message = error instanceof Error ? error.message : String(error)
      throw new Error(`sink ${JSON.stringify(name)} (${config.type}): cannot start: ${message}`, {
        cause: error,
      })
    }
  }
  const multi: MultiProcessor | null = processors.length > 0 ? createMultiProcessor(processors) : null
  let shutdown: Promise<void> | null = null
  return {
    names,
    onEvents(events) {
      if (multi === null) return
      try {
        if (log) for (const feeder of feeders) feeder.onEvents(events)
        else for (const event of events) multi.onEvent(event)
      } catch (error) {
        reportError(error, 'sinks: onEvents')
      }
    },
    health: () => multi?.health() ?? [],
    forceFlush: async () => {
      await Promise.all(feeders.map((f) => f.drained()))
      await multi?.forceFlush()
      await Promise.all(cursors.map((c) => c.flush()))
    },
    shutdown() {
      shutdown ??= (async () => {
        // Feeders offer what fits, then stop; what they leave is past the cursors, for the next start.
        await Promise.allSettled(feeders.map((f) => f.close()))
        await multi?.shutdown()
        await Promise.allSettled(cursors.map((c) => c.flush()))
      })().finally(() => {
        for (const lock of locks) lock.release()
      })
      return shutdown
    },
  }
}

/** Sink health as JSON, for the `sinks` member of `/_audit/health` (read back by `comfy-audit status`). */
export function sinkHealthJson(health: readonly SinkHealth[]): JsonObject[] {
  return health.map((h) => ({
    name: h.name,
    queued: h.queued,
    spooledBytes: h.spooledBytes,
    dropped: h.dropped,
    failures: h.failures,
    lastError: h.lastError,
    lastSuccessAt: h.lastSuccessAt,
  }))
}

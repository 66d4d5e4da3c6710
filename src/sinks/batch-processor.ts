/**
 * Batch processors: they decide *when* a sink exports. Defaults follow OpenTelemetry's BatchSpanProcessor
 * (2048 queued, 512 per batch, 1 s delay, 30 s timeout), but audit data is never sampled away: when the queue
 * is full, records spill to the sink's disk spool, and a batch the sink could not deliver (receiver down past
 * the transport's deadline) is spooled too and replayed later, oldest segment first. Records are dropped only
 * past the spool's quota (or with no spool configured), and every drop is counted and logged.
 *
 * Delivery is at least once: a batch may reach a receiver twice (e.g. it stored it but the answer was lost),
 * and every record carries `id` (`origin:seq`) for the receiver to de-duplicate. Records go out in the order
 * they were offered as long as the queue never overflows: while anything waits in the spool, new records
 * queue behind it on disk, and a batch the receiver did not take goes back to the head of the queue. The sink
 * pipeline keeps that order (it offers records only while the queue has room, see `waitForRoom`), and so the
 * delivered records are a prefix of the log, which is what its persisted cursor records (`onDelivered`).
 * Only an overflowing queue (a producer that ignores `waitForRoom`) spools newer records before older ones.
 */
import { reportError, silentLogger, type Logger } from '../audit/report-error.js'
import type { Spool, SpoolSegment } from './spool.js'
import { type AuditSink, type ExportResult, type SinkRecord } from './sink.js'

/** How a sink is doing, for `/_audit/health` and metrics. */
export interface SinkHealth {
  readonly name: string
  /** Records in memory, waiting to be exported or spooled. */
  readonly queued: number
  /** Bytes in the disk spool. */
  readonly spooledBytes: number
  /** Records given up (spool quota, no spool, refused by the receiver), since start. */
  readonly dropped: number
  /** Exports that did not succeed, since start. */
  readonly failures: number
  /** Message of the latest failed export, or null. */
  readonly lastError: string | null
  /** ISO time of the latest successful export, or null. */
  readonly lastSuccessAt: string | null
}

/** Why records were dropped. */
export type DropReason = 'queue-full' | 'spill-backlog' | 'spool-full' | 'refused' | 'shutdown'

/** Receives records as the audit log commits them. */
export interface RecordProcessor {
  /** Takes a record; never blocks and never throws (a failure is counted as a drop and reported). */
  onEnd(record: SinkRecord): void
  /** Exports everything queued and spooled (one attempt each), then flushes the sinks. */
  forceFlush(): Promise<void>
  /** Flushes, spools what could not be delivered, shuts the sinks down; idempotent. */
  shutdown(): Promise<void>
  health(): SinkHealth[]
}

/** Options of {@link createBatchProcessor}. */
interface BatchProcessorOptions {
  /** Records held in memory (default 2048); past it they spill to the spool. */
  readonly maxQueueSize?: number
  /** Records per export (default 512). */
  readonly maxExportBatchSize?: number
  /** Delay before a partial batch is exported (default 1000 ms). */
  readonly scheduledDelayMillis?: number
  /** Time one export may take before its signal aborts (default 30 000 ms). */
  readonly exportTimeoutMillis?: number
  /** Longest wait between attempts while a receiver stays down (default 60 000 ms). */
  readonly maxRetryDelayMillis?: number
  /**
   * Records past the full queue that may wait in memory for the spool writer (default 4 × maxQueueSize);
   * beyond it a burst faster than the disk is dropped rather than growing memory without bound.
   */
  readonly maxSpillBacklog?: number
  /** Disk spool for overflow and undelivered batches; without one, those records are dropped (and counted). */
  readonly spool?: Spool
  /** Epoch milliseconds (default Date.now); tests drive it. */
  readonly now?: () => number
  /** Called for every drop (after counting); must not throw (if it does, the error is reported). */
  readonly onDrop?: (count: number, reason: DropReason) => void
  /**
   * Called after each export with the records it settled, in the order they were offered: those the receiver
   * took and those it refused for good (which a retry would not change). A partial success settles only the
   * records before the first one still to deliver. The next export waits for a returned promise (a cursor
   * being made durable), so at most one delivered batch is ever unrecorded. Must not throw or reject (if it
   * does, the error is reported).
   */
  readonly onDelivered?: (records: readonly SinkRecord[]) => void | Promise<void>
  readonly logger?: Logger
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`createBatchProcessor: ${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}

type StepOutcome = 'idle' | 'sent' | 'retry'

/** A bounded queue in front of one sink. See the module comment for the delivery guarantees. */
class BatchProcessor implements RecordProcessor {
  readonly #sink: AuditSink
  readonly #maxQueueSize: number
  readonly #maxSpillBacklog: number
  readonly #maxBatch: number
  readonly #delay: number
  readonly #timeout: number
  readonly #maxRetryDelay: number
  readonly #spool: Spool | undefined
  readonly #now: () => number
  readonly #onDrop: ((count: number, reason: DropReason) => void) | undefined
  readonly #onDelivered: ((records: readonly SinkRecord[]) => void | Promise<void>) | undefined
  readonly #logger: Logger
  /** Producers waiting for the queue to have room again (see waitForRoom). */
  #roomWaiters: (() => void)[] = []

  #queue: SinkRecord[] = []
  /** Records past the queue's size, waiting for the spool writer. */
  #spill: SinkRecord[] = []
  #spilling: Promise<void> | null = null
  /** Serializes exports and spool replays (one at a time per sink). */
  #chain: Promise<unknown> = Promise.resolve()
  #timer: NodeJS.Timeout | null = null
  #retryAt = 0
  #consecutiveFailures = 0
  #closed = false
  #shutdown: Promise<void> | null = null

  #dropped = 0
  #failures = 0
  #lastError: string | null = null
  #lastSuccessAt: string | null = null

  constructor(sink: AuditSink, options: BatchProcessorOptions = {}) {
    this.#sink = sink
    this.#maxQueueSize = positiveInt('maxQueueSize', options.maxQueueSize ?? 2048)
    this.#maxSpillBacklog = positiveInt('maxSpillBacklog', options.maxSpillBacklog ?? this.#maxQueueSize * 4)
    this.#maxBatch = positiveInt('maxExportBatchSize', options.maxExportBatchSize ?? 512)
    if (this.#maxBatch > this.#maxQueueSize) {
      throw new RangeError(
        `createBatchProcessor: maxExportBatchSize (${this.#maxBatch}) must not exceed maxQueueSize (${this.#maxQueueSize})`,
      )
    }
    this.#delay = positiveInt('scheduledDelayMillis', options.scheduledDelayMillis ?? 1000)
    this.#timeout = positiveInt('exportTimeoutMillis', options.exportTimeoutMillis ?? 30_000)
    this.#maxRetryDelay = positiveInt('maxRetryDelayMillis', options.maxRetryDelayMillis ?? 60_000)
    this.#spool = options.spool
    this.#now = options.now ?? Date.now
    this.#onDrop = options.onDrop
    this.#onDelivered = options.onDelivered
    this.#logger = options.logger ?? silentLogger
    // Records left in the spool by an earlier run are delivered without waiting for new ones.
    if (this.#spool && this.#spool.segmentCount() > 0) this.#schedule(0)
  }

  onEnd(record: SinkRecord): void {
    try {
      if (this.#closed) return this.#drop(1, 'shutdown')
      // Behind records already on disk (or on their way there), a new one waits its turn there too.
      if (this.#queue.length < this.#maxQueueSize && !this.#spilled()) {
        this.#queue.push(record)
        if (this.#queue.length >= this.#maxBatch) this.#schedule(0)
        else this.#schedule(this.#delay)
        return
      }
      // The spill buffer is bounded too: if the disk cannot keep up, memory must not grow without limit.
      if (this.#spool && this.#spill.length < this.#maxSpillBacklog) {
        this.#spill.push(record)
        this.#startSpill()
        return
      }
      this.#drop(1, this.#spool ? 'spill-backlog' : 'queue-full')
    } catch (error) {
      reportError(error, `sink ${this.#sink.name}: onEnd`)
    }
  }

  forceFlush(): Promise<void> {
    return this.#flush()
  }

  /** True when onEnd would take a record into memory now, without spilling it to the spool. */
  hasRoom(): boolean {
    return this.#closed || (this.#queue.length + this.#spill.length < this.#maxQueueSize && !this.#spilled())
  }

  /**
   * Resolves when the queue has room again (at once if it has, or after shutdown). A producer that waits for
   * it before each record never overflows the queue, so order holds and nothing is dropped for room.
   */
  waitForRoom(): Promise<void> {
    if (this.hasRoom()) return Promise.resolve()
    return new Promise((resolve) => this.#roomWaiters.push(resolve))
  }

  #notifyRoom(): void {
    if (this.#roomWaiters.length === 0 || !this.hasRoom()) return
    const waiters = this.#roomWaiters.splice(0)
    for (const resolve of waiters) resolve()
  }

  #spilled(): boolean {
    return this.#spill.length > 0 || this.#spilling !== null || (this.#spool?.segmentCount() ?? 0) > 0
  }

  shutdown(): Promise<void> {
    if (this.#shutdown) return this.#shutdown
    this.#closed = true
    this.#clearTimer()
    this.#notifyRoom()
    this.#shutdown = (async () => {
      await this.#flush()
      if (this.#queue.length > 0) {
        const rest = this.#queue.splice(0)
        this.#drop(rest.length, 'shutdown')
      }
      try {
        await this.#sink.shutdown()
      } catch (error) {
        reportError(error, `sink ${this.#sink.name}: shutdown`)
      }
    })()
    return this.#shutdown
  }

  health(): SinkHealth[] {
    return [
      {
        name: this.#sink.name,
        queued: this.#queue.length + this.#spill.length,
        spooledBytes: this.#spool?.sizeBytes() ?? 0,
        dropped: this.#dropped,
        failures: this.#failures,
        lastError: this.#lastError,
        lastSuccessAt: this.#lastSuccessAt,
      },
    ]
  }

  async #flush(): Promise<void> {
    await this.#spilling
    await this.#serial(async () => {
      for (;;) {
        const outcome = await this.#step()
        if (outcome === 'idle') break
        if (outcome === 'retry') {
          // The receiver is down: keep the rest on disk instead of trying every batch now.
          await this.#spoolQueue()
          break
        }
      }
    })
    try {
      await this.#sink.forceFlush()
    } catch (error) {
      reportError(error, `sink ${this.#sink.name}: forceFlush`)
    }
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#chain.then(op)
    this.#chain = result.catch(() => {})
    return result
  }

  #schedule(delayMillis: number): void {
    if (this.#closed) return
    if (this.#timer !== null) {
      if (delayMillis > 0) return
      this.#clearTimer()
    }
    const wait = Math.max(delayMillis, this.#retryAt - this.#now())
    this.#timer = setTimeout(() => this.#onTimer(), wait)
    // A pending export must not keep the process alive; shutdown() flushes explicitly.
    this.#timer.unref()
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #onTimer(): void {
    this.#timer = null
    if (this.#now() < this.#retryAt) return this.#schedule(this.#retryAt - this.#now())
    this.#serial(async () => {
      for (;;) {
        const outcome = await this.#step()
        if (outcome !== 'sent') return outcome
        // Only full batches go out back to back; a partial one waits for the next scheduled delay.
        if (this.#queue.length < this.#maxBatch && (this.#spool?.segmentCount() ?? 0) === 0) return 'sent'
      }
    }).then(
      (outcome) => {
        if (outcome === 'retry') this.#schedule(this.#retryAt - this.#now())
        else if (this.#queue.length > 0 || (this.#spool?.segmentCount() ?? 0) > 0) this.#schedule(this.#delay)
      },
      (error: unknown) => reportError(error, `sink ${this.#sink.name}: export loop`),
    )
  }

  #startSpill(): void {
    if (this.#spilling || !this.#spool) return
    const spool = this.#spool
    this.#spilling = (async () => {
      while (this.#spill.length > 0) {
        const chunk = this.#spill.splice(0, this.#maxBatch)
        const result = await spool.write(chunk)
        if (result.dropped > 0) this.#drop(result.dropped, 'spool-full')
      }
    })()
      .catch((error: unknown) => reportError(error, `sink ${this.#sink.name}: spool`))
      .finally(() => {
        this.#spilling = null
        this.#schedule(this.#delay)
        this.#notifyRoom()
      })
  }

  /** Moves the in-memory queue to the spool (without one it stays queued). */
  async #spoolQueue(): Promise<void> {
    while (this.#queue.length > 0 && this.#spool) {
      const result = await this.#spool.write(this.#queue.splice(0, this.#maxBatch))
      if (result.dropped > 0) this.#drop(result.dropped, 'spool-full')
    }
  }

  /**
   * Keeps records of a queued batch the receiver has not taken: back at the head of the queue, where they were,
   * so that they still go out before anything offered after them. The queue may pass its size by this one
   * batch; onEnd then spills new records, which keeps them behind. Without a spool the excess is dropped.
   */
  #keep(records: readonly SinkRecord[]): void {
    if (records.length === 0) return
    if (this.#spool) {
      this.#queue.unshift(...records)
      return
    }
    const room = Math.max(0, this.#maxQueueSize - this.#queue.length)
    this.#queue.unshift(...records.slice(0, room))
    if (records.length > room) this.#drop(records.length - room, 'queue-full')
  }

  /** One export: a queued batch if there is one, else the oldest spool segment. */
  async #step(): Promise<StepOutcome> {
    if (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch)
      const result = await this.#export(batch)
      if (result.status === 'retryable') this.#keep(result.records ?? batch)
      else if (result.status === 'failure') this.#drop(batch.length, 'refused')
      await this.#delivered(batch, result)
      this.#notifyRoom()
      return this.#settle(result)
    }
    const segment: SpoolSegment | undefined = await this.#spool?.oldest()
    if (segment === undefined || this.#spool === undefined) return 'idle'
    if (segment.records.length === 0) {
      await this.#spool.remove(segment)
      return 'sent'
    }
    const result = await this.#export(segment.records)
    if (result.status === 'success') {
      await this.#spool.remove(segment)
    } else if (result.status === 'failure') {
      this.#drop(segment.records.length, 'refused')
      await this.#spool.remove(segment)
    } else if (result.records) {
      await this.#spool.replace(segment, result.records)
    }
    await this.#delivered(segment.records, result)
    this.#notifyRoom()
    return this.#settle(result)
  }

  /** Reports the records an export settled (see BatchProcessorOptions.onDelivered). */
  async #delivered(batch: readonly SinkRecord[], result: ExportResult): Promise<void> {
    if (!this.#onDelivered) return
    let settled: readonly SinkRecord[] = batch
    if (result.status === 'retryable') {
      const rest = new Set((result.records ?? batch).map((r) => r.id))
      const first = batch.findIndex((r) => rest.has(r.id))
      settled = first < 0 ? batch : batch.slice(0, first)
    }
    if (settled.length === 0) return
    try {
      await this.#onDelivered(settled)
    } catch (error) {
      reportError(error, `sink ${this.#sink.name}: onDelivered`)
    }
  }

  #settle(result: ExportResult): StepOutcome {
    if (result.status !== 'failure' && result.dropped) this.#drop(result.dropped, 'refused')
    if (result.status === 'success') {
      this.#consecutiveFailures = 0
      this.#retryAt = 0
      this.#lastSuccessAt = new Date(this.#now()).toISOString()
      return 'sent'
    }
    this.#failures++
    this.#lastError = result.error.message
    if (result.status === 'failure') {
      this.#logger.error('sink refused a batch; dropped', {
        sink: this.#sink.name,
        error: result.error.message,
      })
      return 'sent'
    }
    this.#consecutiveFailures++
    const backoff = Math.min(
      this.#maxRetryDelay,
      this.#delay * 2 ** Math.min(this.#consecutiveFailures - 1, 30),
    )
    const wait = Math.min(this.#maxRetryDelay, Math.max(result.retryInMillis ?? 0, backoff))
    this.#retryAt = this.#now() + wait
    this.#logger.warn('sink export failed; kept for retry', {
      sink: this.#sink.name,
      error: result.error.message,
      retryInMillis: wait,
    })
    return 'retry'
  }

  async #export(batch: readonly SinkRecord[]): Promise<ExportResult> {
    const controller = new AbortController()
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<ExportResult>((resolve) => {
      timer = setTimeout(() => {
        const error = new Error(`export timed out after ${this.#timeout} ms`)
        controller.abort(error)
        resolve({ status: 'retryable', error })
      }, this.#timeout)
      timer.unref()
    })
    try {
      return await Promise.race([this.#sink.export(batch, controller.signal), timedOut])
    } catch (error) {
      // A sink that throws breaks its contract; keeping the batch is the safe reading.
      reportError(error, `sink ${this.#sink.name}: export threw`)
      return { status: 'retryable', error: error instanceof Error ? error : new Error(String(error)) }
    } finally {
      clearTimeout(timer)
    }
  }

  #drop(count: number, reason: DropReason): void {
    if (count <= 0) return
    this.#dropped += count
    this.#logger.warn('sink records dropped', { sink: this.#sink.name, count, reason })
    if (this.#onDrop) {
      try {
        this.#onDrop(count, reason)
      } catch (error) {
        reportError(error, `sink ${this.#sink.name}: onDrop`)
      }
    }
  }
}

/**
 * Puts a bounded, spilling batch queue in front of a sink.
 * @example
 * const processor = createBatchProcessor(createJsonlSink({ dir: './data/jsonl' }), {
 *   spool: await openSpool({ dir: './data/spool/jsonl', maxBytes: 64 * 2 ** 20 }),
 * })
 * for (const record of toSinkRecords(event, merger)) processor.onEnd(record)
 */
export function createBatchProcessor(sink: AuditSink, options: BatchProcessorOptions = {}): BatchProcessor {
  return new BatchProcessor(sink, options)
}

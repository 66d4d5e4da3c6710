/**
 * A sink that keeps what it receives in memory: the default collaborator of tests, and a way to script a
 * receiver's answers (down for a while, refusing, slow) without a network.
 */
import type { AuditSink, ExportResult, SinkRecord } from './sink.js'

/** Decides the answer to one export (default: success). */
type InMemoryResponder = (batch: readonly SinkRecord[], call: number) => ExportResult | Promise<ExportResult>

/** Options of {@link InMemorySink}. */
interface InMemorySinkOptions {
  /** Default `memory`. */
  readonly name?: string
  readonly respond?: InMemoryResponder
}

/** Keeps every successfully exported batch; see {@link InMemorySink.records}. */
export class InMemorySink implements AuditSink {
  readonly name: string
  /** Batches accepted, in order (a retried batch appears once per successful delivery). */
  readonly batches: SinkRecord[][] = []
  /** Number of `export` calls, successful or not. */
  calls = 0
  flushes = 0
  shutdowns = 0
  #respond: InMemoryResponder
  #waiters: { count: number; resolve: () => void }[] = []

  constructor(options: InMemorySinkOptions = {}) {
    this.name = options.name ?? 'memory'
    this.#respond = options.respond ?? (() => ({ status: 'success' }))
  }

  /** Every record accepted, in delivery order (duplicates included). */
  get records(): SinkRecord[] {
    return this.batches.flat()
  }

  /** Distinct record ids accepted. */
  get ids(): Set<string> {
    return new Set(this.records.map((r) => r.id))
  }

  /** Replaces how later exports are answered. */
  respondWith(respond: InMemoryResponder): void {
    this.#respond = respond
  }

  /** Resolves once at least `count` records (duplicates included) have been accepted. */
  waitForRecords(count: number): Promise<void> {
    if (this.records.length >= count) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ count, resolve }))
  }

  async export(batch: readonly SinkRecord[], _signal: AbortSignal): Promise<ExportResult> {
    const call = this.calls++
    const result = await this.#respond(batch, call)
    if (result.status === 'success') {
      this.batches.push([...batch])
      const total = this.records.length
      this.#waiters = this.#waiters.filter((w) => {
        if (total < w.count) return true
        w.resolve()
        return false
      })
    }
    return result
  }

  async forceFlush(): Promise<void> {
    this.flushes++
  }

  async shutdown(): Promise<void> {
    this.shutdowns++
  }
}

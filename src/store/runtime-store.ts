/**
 * The runtime store wraps any dialect's driver with what every driver needs and none should repeat:
 * init-once, closed checks, per-origin sequence numbers, small group commits, a write mutex for databases
 * with a single writer, commit timing, and outage handling (retry, write-ahead spool, health).
 *
 * The parts: write-queue.ts (the append queue, its group commits and outage handling) with group-commit.ts
 * (one transaction and its seq numbers), store-reads.ts (the other driver calls), write-lock.ts (the write
 * mutex) and runtime-store-types.ts (the public types, re-exported here). This module puts them together.
 */
import type { AuditEvent, AuditEventInput } from '../audit/types.js'
import type { StoreCapabilities, StoreDialect, StoreDriver } from './store.js'
import type { RuntimeStore, RuntimeStoreOptions, StoreHealth, StoreStats } from './runtime-store-types.js'
import { reportProblems } from './group-commit.js'
import { RuntimeStoreReads } from './store-reads.js'
import { WriteLock } from './write-lock.js'
import { closedError, WriteQueue } from './write-queue.js'

export type {
  CommitInfo,
  RuntimeStore,
  RuntimeStoreOptions,
  StoreHealth,
  StoreHealthState,
  StoreOutageOptions,
  StoreStats,
} from './runtime-store-types.js'
export { STORE_HEALTH_STATES } from './runtime-store-types.js'
export { isTransientStoreError } from './group-commit.js'

/**
 * Wraps a dialect's driver.
 * @example
 * const store = createRuntimeStore(createSqliteDialect({ path: ':memory:' }), { origin: 'comfy-audit/test' })
 * const [event] = await store.append([{ kind: 'gateway.started', time: new Date().toISOString(), session_id: null, payload: {} }])
 */
export function createRuntimeStore(dialect: StoreDialect, options: RuntimeStoreOptions): RuntimeStore {
  return new DefaultRuntimeStore(dialect, options)
}

class DefaultRuntimeStore extends RuntimeStoreReads implements RuntimeStore {
  override readonly origin: string
  readonly dialect: string
  readonly capabilities: StoreCapabilities
  protected override readonly driver: StoreDriver
  readonly #options: RuntimeStoreOptions
  readonly #lock: WriteLock
  readonly #writes: WriteQueue
  #initPromise: Promise<void> | undefined
  #closePromise: Promise<void> | undefined

  constructor(dialect: StoreDialect, options: RuntimeStoreOptions) {
    super()
    if (typeof options.origin !== 'string' || options.origin === '') {
      throw new TypeError(`store origin must be a non-empty string, got ${JSON.stringify(options.origin)}`)
    }
    this.origin = options.origin
    this.dialect = dialect.name
    this.capabilities = dialect.capabilities
    this.driver = dialect.createDriver()
    this.#options = options
    this.#lock = new WriteLock(this.capabilities.concurrentWriters)
    this.#writes = new WriteQueue(this.origin, this.driver, options, this.#lock, () => this.#init())
  }

  init(signal?: AbortSignal): Promise<void> {
    if (this.#writes.closed) return Promise.reject(closedError())
    return this.#init(signal)
  }

  /** Init without the closed check: close() still commits what was queued before it. */
  #init(signal?: AbortSignal): Promise<void> {
    this.#initPromise ??= this.driver.init(signal).then(
      () => this.#writes.opened(),
      (error: unknown) => {
        // Let a later call try again (the database may come up) instead of caching the failure forever.
        this.#initPromise = undefined
        throw error
      },
    )
    return this.#initPromise
  }

  append(inputs: readonly AuditEventInput[]): Promise<AuditEvent[]> {
    return this.#writes.append(inputs)
  }

  override flush(): Promise<void> {
    return this.#writes.flush()
  }

  health(): StoreHealth {
    return this.#writes.health()
  }

  stats(): StoreStats {
    return this.#writes.stats()
  }

  onCommitted(listener: (events: readonly AuditEvent[]) => void): () => void {
    return this.#writes.onCommitted(listener)
  }

  close(): Promise<void> {
    this.#closePromise ??= (async () => {
      try {
        await this.#writes.close()
      } finally {
        await this.driver.close()
      }
    })()
    return this.#closePromise
  }

  protected override async ready(): Promise<void> {
    if (this.#writes.closed) throw closedError()
    await this.init()
  }

  protected override write<T>(fn: () => Promise<T>): Promise<T> {
    return this.#lock.run(fn)
  }

  protected override reportProblems(problems: readonly string[]): void {
    reportProblems(this.#options.onError, problems)
  }
}

/**
 * The live ledger: follows the store's commits, keeps the origin's RFC 9162 tree as a compact accumulator,
 * and writes signed C2SP checkpoints into the store every N events, every T milliseconds, and at shutdown,
 * optionally publishing each one off the machine (a file, a webhook) so that whoever controls the data
 * directory cannot quietly rewrite history.
 */
import { reportError } from '../audit/report-error.js'
import type { AuditEvent, JsonValue } from '../audit/types.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { parseStoredPayload, type StoredCheckpoint, type StoredEventRow } from '../store/store.js'
import { signCheckpoint } from './checkpoint.js'
import { eventLeafHash } from '../audit/event-leaf.js'
import { createMerkleAccumulator, type MerkleAccumulator } from './merkle.js'
import type { NoteSigner } from './signed-note.js'

/** The store calls the ledger makes. */
type LedgerStore = Pick<
  RuntimeStore,
  'origin' | 'onCommitted' | 'rawEvents' | 'addCheckpoint' | 'checkpoints' | 'getState' | 'setState' | 'flush'
>

/** Options of {@link createLedger}. */
export interface LedgerOptions {
  readonly store: LedgerStore
  /** The gateway's key (see key-store.ts); its name must equal the origin. */
  readonly signer: NoteSigner
  /** The log's origin (default: the store's). */
  readonly origin?: string
  /** Sign a checkpoint after this many new events (default 1000). */
  readonly checkpointEvery?: number
  /** Sign a checkpoint this often when there are new events, in ms (default 60 000; 0 turns it off). */
  readonly checkpointIntervalMillis?: number
  /** Receives every new signed checkpoint note (e.g. {@link createFilePublisher}). Failures are reported. */
  readonly publish?: (note: string, checkpoint: StoredCheckpoint) => Promise<void>
  /** Receives problems nobody awaits (default: reportError). */
  readonly onError?: (error: unknown, context: string) => void
  /** Epoch-ms clock (tests). */
  readonly now?: () => number
}

/** A running ledger. */
export interface Ledger {
  readonly origin: string
  /** Leaves in the tree so far. */
  readonly size: number
  /** Reads what the store holds beyond the saved state and starts following commits and the timer. */
  start(): Promise<void>
  /** The current root (32 bytes). */
  root(): Buffer
  /** Signs and stores a checkpoint of everything committed so far, unless the last one already covers it. */
  checkpoint(): Promise<StoredCheckpoint | null>
  /** Waits for committed events to be hashed, writes a final checkpoint and stops. Idempotent. */
  close(): Promise<void>
}

/** State key of the saved accumulator (size and compact range, hex), written with each checkpoint. */
function accumulatorStateKey(origin: string): string {
  return `ledger.accumulator:${origin}`
}

/** The leaf hash of a stored row: recomputed from its content, or the stored one when its payload was pruned. */
export function storedRowLeaf(row: StoredEventRow): Buffer | null {
  if (row.pruned !== null) return row.leaf_hash === null ? null : Buffer.from(row.leaf_hash, 'hex')
  const event = storedRowEvent(row)
  return event ? eventLeafHash(event) : null
}

/** A stored row as an event, or null when its payload is not a JSON object. */
export function storedRowEvent(row: StoredEventRow): AuditEvent | null {
  const parsed = parseStoredPayload(row)
  if (!parsed.ok || typeof parsed.value !== 'object' || parsed.value === null || Array.isArray(parsed.value))
    return null
  return {
    origin: row.origin,
    seq: row.seq,
    // The leaf hashes whatever kind text is stored; verify does not trust the vocabulary check.
    kind: row.kind as AuditEvent['kind'],
    time: row.time,
    session_id: row.session_id,
    payload: parsed.value,
  }
}

/**
 * Creates the ledger for one origin. Call `start()` after the store is open and before the gateway
 * accepts traffic, and `close()` after the last append and before the store closes.
 * @example
 * const key = await loadOrCreateSigningKey(config.data, store.origin)
 * const ledger = createLedger({ store, signer: key.signer, publish: createFilePublisher('/mnt/audit/checkpoints.jsonl') })
 * await ledger.start()
 */
export function createLedger(options: LedgerOptions): Ledger {
  return new DefaultLedger(options)
}

class DefaultLedger implements Ledger {
  readonly origin: string
  readonly #options: LedgerOptions
  readonly #every: number
  readonly #intervalMillis: number
  readonly #onError: (error: unknown, context: string) => void
  #acc: MerkleAccumulator = createMerkleAccumulator()
  #lastCheckpointSize = 0
  #chain: Promise<void> = Promise.resolve()
  #unsubscribe: (() => void) | undefined
  #timer: NodeJS.Timeout | undefined
  #started: Promise<void> | undefined
  #closed: Promise<void> | undefined
  /** Stored checkpoints not yet reached by the accumulator, checked when it gets there. */
  #pendingChecks: StoredCheckpoint[] = []

  constructor(options: LedgerOptions) {
    this.origin = options.origin ?? options.store.origin
    if (options.signer.name !== this.origin) {
      throw new Error(
        `ledger key is named ${JSON.stringify(options.signer.name)} but the log origin is ${JSON.stringify(this.origin)}`,
      )
    }
    this.#options = options
    this.#every = Math.max(1, options.checkpointEvery ?? 1000)
    this.#intervalMillis = Math.max(0, options.checkpointIntervalMillis ?? 60_000)
    this.#onError = options.onError ?? ((error, context) => reportError(error, context))
  }

  get size(): number {
    return this.#acc.size
  }

  root(): Buffer {
    return this.#acc.root()
  }

  start(): Promise<void> {
    this.#started ??= this.#start()
    return this.#started
  }

  async #start(): Promise<void> {
    const store = this.#options.store
    // Subscribe first: events committed while catching up are queued behind it and skipped if already read.
    this.#unsubscribe = store.onCommitted((events) => {
      const own = events.filter((e) => e.origin === this.origin)
      if (own.length > 0) this.#enqueue(() => this.#ingest(own))
    })
    const checkpoints = await store.checkpoints(this.origin)
    const last = checkpoints[checkpoints.length - 1]
    const saved = parseAccumulator(await store.getState(accumulatorStateKey(this.origin)))
    if (saved && last && saved.size === last.size && saved.root.toString('base64') === last.root_hash) {
      this.#acc = saved.acc
    }
    this.#lastCheckpointSize = last?.size ?? 0
    this.#pendingChecks = checkpoints.filter((cp) => cp.size > this.#acc.size)
    this.#enqueue(() => this.#catchUp(Number.MAX_SAFE_INTEGER))
    await this.#chain
    if (this.#intervalMillis > 0) {
      this.#timer = setInterval(() => {
        if (this.#acc.size > this.#lastCheckpointSize) {
          this.checkpoint().catch((error: unknown) => this.#onError(error, 'ledger checkpoint'))
        }
      }, this.#intervalMillis)
      this.#timer.unref()
    }
  }

  #enqueue(task: () => Promise<void>): void {
    this.#chain = this.#chain.then(task).catch((error: unknown) => this.#onError(error, 'ledger'))
  }

  /** Appends leaves read from the store for seq in [size, toSeq]. */
  async #catchUp(toSeq: number): Promise<void> {
    if (toSeq < this.#acc.size) return
    for await (const row of this.#options.store.rawEvents({
      origin: this.origin,
      fromSeq: this.#acc.size,
      toSeq,
    })) {
      if (row.seq !== this.#acc.size) {
        throw new Error(
          `ledger: the log of ${this.origin} has no event ${this.#acc.size} (next is ${row.seq})`,
        )
      }
      const leaf = storedRowLeaf(row)
      if (!leaf)
        throw new Error(`ledger: event ${this.origin}#${row.seq} cannot be hashed (payload unreadable)`)
      this.#appendLeaf(leaf)
    }
  }

  async #ingest(events: readonly AuditEvent[]): Promise<void> {
    for (const event of events) {
      if (event.seq < this.#acc.size) continue
      if (event.seq > this.#acc.size) await this.#catchUp(event.seq - 1)
      this.#appendLeaf(eventLeafHash(event))
    }
    if (this.#acc.size - this.#lastCheckpointSize >= this.#every) await this.#signCheckpoint()
  }

  #appendLeaf(leaf: Buffer): void {
    this.#acc.append(leaf)
    const check = this.#pendingChecks[0]
    if (check && check.size === this.#acc.size) {
      this.#pendingChecks.shift()
      if (this.#acc.root().toString('base64') !== check.root_hash) {
        this.#onError(
          new Error(
            `the stored log of ${this.origin} does not match its checkpoint of size ${check.size}; run comfy-audit verify`,
          ),
          'ledger',
        )
      }
    }
  }

  async checkpoint(): Promise<StoredCheckpoint | null> {
    let result: StoredCheckpoint | null = null
    const task = this.#chain.then(async () => {
      result = await this.#signCheckpoint()
    })
    this.#chain = task.catch(() => undefined)
    await task
    return result
  }

  async #signCheckpoint(): Promise<StoredCheckpoint | null> {
    const size = this.#acc.size
    if (size === 0 || size <= this.#lastCheckpointSize) return null
    const rootHash = this.#acc.root()
    const note = signCheckpoint({ origin: this.origin, size, rootHash, extensions: [] }, this.#options.signer)
    const checkpoint: StoredCheckpoint = {
      origin: this.origin,
      size,
      root_hash: rootHash.toString('base64'),
      note,
      created_at: new Date(this.#options.now?.() ?? Date.now()).toISOString(),
    }
    const store = this.#options.store
    await store.addCheckpoint(checkpoint)
    const state = this.#acc.state()
    await store.setState(accumulatorStateKey(this.origin), {
      size: state.size,
      hashes: state.hashes.map((h) => h.toString('hex')),
    })
    this.#lastCheckpointSize = size
    if (this.#options.publish) {
      try {
        await this.#options.publish(note, checkpoint)
      } catch (error) {
        this.#onError(error, 'ledger publish')
      }
    }
    return checkpoint
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#timer) clearInterval(this.#timer)
      this.#timer = undefined
      if (this.#started) {
        await this.#started.catch(() => undefined)
        await this.#options.store.flush()
        await this.#chain
        await this.checkpoint()
      }
      this.#unsubscribe?.()
    })()
    return this.#closed
  }
}

function parseAccumulator(
  value: JsonValue | undefined,
): { acc: MerkleAccumulator; root: Buffer; size: number } | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null
  const { size, hashes } = value
  if (typeof size !== 'number' || !Array.isArray(hashes)) return null
  if (!hashes.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))) return null
  try {
    const acc = createMerkleAccumulator({ size, hashes: hashes.map((h) => Buffer.from(h as string, 'hex')) })
    return { acc, root: acc.root(), size }
  } catch {
    return null
  }
}

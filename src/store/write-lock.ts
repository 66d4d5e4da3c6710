/**
 * The runtime store's write mutex. A database with a single writer (SQLite) takes one write at a time across
 * group commits, state, checkpoints, pruning and rebuilds, so none of them waits on the database's own lock
 * (busy_timeout) behind another of ours; where writers may run concurrently (PostgreSQL) it is a pass-through.
 */
export class WriteLock {
  readonly #concurrent: boolean
  #last: Promise<void> = Promise.resolve()

  constructor(concurrentWriters: boolean) {
    this.#concurrent = concurrentWriters
  }

  /** Runs `fn` once every write started before it has settled. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#concurrent) return fn()
    const previous = this.#last
    let release!: () => void
    this.#last = new Promise<void>((resolve) => (release = resolve))
    await previous
    try {
      return await fn()
    } finally {
      release()
    }
  }
}

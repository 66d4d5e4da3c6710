/**
 * A first-in first-out queue with O(1) push and shift, for the runtime store's append queue. That queue can
 * hold tens of thousands of appends (a burst of node events, an outage); `Array.prototype.shift` moves every
 * element still queued once the array is too large for V8 to trim in place, which profiling put at a quarter
 * of capture time with ~80k events queued (issue 14).
 *
 * An array read from a head index. The consumed prefix is dropped once it is at least half the array, so
 * memory stays within twice what is queued and each element is copied at most once on average.
 */

/** Below this many consumed slots the prefix is kept: copying small arrays often would cost more than it saves. */
const COMPACT_MIN = 1024

export class Fifo<T> {
  #items: (T | undefined)[] = []
  #head = 0

  get length(): number {
    return this.#items.length - this.#head
  }

  push(item: T): void {
    this.#items.push(item)
  }

  /** The oldest item, left in the queue; undefined when empty. */
  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined
  }

  /** Removes and returns the oldest item; undefined when empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head]
    // Cleared so that a consumed item (an append's inputs and callbacks) can be collected before compaction.
    this.#items[this.#head] = undefined
    this.#head++
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head >= COMPACT_MIN && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  /** Puts items back in front of the oldest, in their order (a group whose commit is retried). */
  unshiftAll(items: readonly T[]): void {
    if (items.length <= this.#head) {
      // The usual case: the slots they were shifted from are still free.
      this.#head -= items.length
      for (let i = 0; i < items.length; i++) this.#items[this.#head + i] = items[i]
      return
    }
    this.#items = [...items, ...this.#items.slice(this.#head)]
    this.#head = 0
  }

  /** Removes and returns every item, oldest first. */
  takeAll(): T[] {
    const all = this.#items.slice(this.#head) as T[]
    this.#items = []
    this.#head = 0
    return all
  }
}

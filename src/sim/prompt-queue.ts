/**
 * ComfyUI's `PromptQueue`: a binary heap of pending items in Python `heapq` order (so `/queue` lists
 * `queue_pending` in the same heap order), the running items, and the insertion-ordered history capped
 * at 10000 entries (one more may be held, as in ComfyUI).
 */
import { PyFloat, clonePy } from './py-json.js'
import type { PyDict, PyObject, PyValue } from './py-json.js'

/** `MAXIMUM_HISTORY_SIZE` in execution.py. */
const MAXIMUM_HISTORY_SIZE = 10000

/** One queued prompt: ComfyUI's 6-tuple. */
export interface QueueItem {
  readonly number: number | PyFloat
  readonly promptId: string
  readonly prompt: PyObject
  readonly extraData: PyObject
  readonly outputs: string[]
  /** `auth_token_comfy_org` / `api_key_comfy_org`, moved out of extra_data. */
  readonly sensitive: PyObject
}

export interface HistoryEntry {
  prompt: PyValue[]
  /** node id -> UI output, in the order nodes produced them. */
  outputs: PyDict
  status: PyObject | null
  meta: PyDict
}

const numOf = (n: number | PyFloat): number => (n instanceof PyFloat ? n.value : n)

function less(a: QueueItem, b: QueueItem): boolean {
  const x = numOf(a.number)
  const y = numOf(b.number)
  if (x !== y) return x < y
  return a.promptId < b.promptId
}

/** The 5-tuple shown by /queue and history (sensitive data removed). */
export function publicTuple(item: QueueItem): PyValue[] {
  return [item.number, item.promptId, item.prompt, item.extraData, [...item.outputs]]
}

export class PromptQueue {
  readonly #heap: QueueItem[] = []
  readonly #running = new Map<number, QueueItem>()
  readonly history = new Map<string, HistoryEntry>()
  #taskCounter = 0

  // heapq._siftdown
  #siftDown(start: number, pos: number): void {
    const h = this.#heap
    const item = h[pos]!
    while (pos > start) {
      const parentPos = (pos - 1) >> 1
      const parent = h[parentPos]!
      if (less(item, parent)) {
        h[pos] = parent
        pos = parentPos
        continue
      }
      break
    }
    h[pos] = item
  }

  // heapq._siftup
  #siftUp(pos: number): void {
    const h = this.#heap
    const end = h.length
    const start = pos
    const item = h[pos]!
    let child = 2 * pos + 1
    while (child < end) {
      const right = child + 1
      if (right < end && !less(h[child]!, h[right]!)) child = right
      h[pos] = h[child]!
      pos = child
      child = 2 * pos + 1
    }
    h[pos] = item
    this.#siftDown(start, pos)
  }

  put(item: QueueItem): void {
    this.#heap.push(item)
    this.#siftDown(0, this.#heap.length - 1)
  }

  /** Pops the lowest item and marks it running; returns it with its task id. */
  take(): { item: QueueItem; taskId: number } | undefined {
    const h = this.#heap
    if (h.length === 0) return undefined
    const last = h.pop()!
    let item = last
    if (h.length > 0) {
      item = h[0]!
      h[0] = last
      this.#siftUp(0)
    }
    const taskId = this.#taskCounter++
    // The running entry is a deep copy (ComfyUI's deepcopy at get): the executed prompt gains `is_changed`.
    this.#running.set(taskId, {
      ...item,
      prompt: clonePy(item.prompt),
      extraData: clonePy(item.extraData),
      outputs: [...item.outputs],
    })
    return { item, taskId }
  }

  /** Writes the history entry of a finished task (ComfyUI's task_done); `make` gets the running copy. */
  done(taskId: number, make: (running: QueueItem) => HistoryEntry): void {
    const item = this.#running.get(taskId)
    this.#running.delete(taskId)
    if (!item) return
    const entry = make(item)
    if (this.history.size > MAXIMUM_HISTORY_SIZE) {
      const oldest = this.history.keys().next()
      if (!oldest.done) this.history.delete(oldest.value)
    }
    this.history.set(item.promptId, entry)
  }

  running(): QueueItem[] {
    return [...this.#running.values()]
  }

  /** Pending items in heap order. */
  pending(): QueueItem[] {
    return [...this.#heap]
  }

  remaining(): number {
    return this.#heap.length + this.#running.size
  }

  /** Removes every pending item; returns how many status broadcasts ComfyUI makes (1). */
  wipe(): void {
    this.#heap.length = 0
  }

  /**
   * Deletes the first pending item with this id. Returns the number of `status` broadcasts ComfyUI
   * makes for it: 2 when it was the last pending item (wipe + delete), 1 otherwise, 0 when absent.
   */
  delete(promptId: string): number {
    const i = this.#heap.findIndex((it) => it.promptId === promptId)
    if (i < 0) return 0
    if (this.#heap.length === 1) {
      this.#heap.length = 0
      return 2
    }
    this.#heap.splice(i, 1)
    // heapq.heapify
    for (let k = (this.#heap.length >> 1) - 1; k >= 0; k--) this.#siftUp(k)
    return 1
  }
}

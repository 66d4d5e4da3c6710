/**
 * The order in which ComfyUI 0.8 runs a prompt's nodes (comfy_execution/graph.py `ExecutionList`):
 * a topological dissolve whose pending set keeps insertion order from a stack-based walk, and a pick
 * among ready nodes that prefers output nodes, then nodes one or two links before an output node.
 * Reproducing the walk exactly is what makes the order 1,2,6,3,4,5 (image pipeline) and
 * 1,5,2,4,3,6,7,8 (SD1.5) come out as recorded.
 */
import { isPyObject } from './py-json.js'
import type { PyObject } from './py-json.js'

interface ExecutionListOptions {
  readonly prompt: PyObject
  /** Whether a node's output is cached (cached nodes are not walked into). */
  readonly isCached: (nodeId: string) => boolean
  /** Whether a class is an output node. */
  readonly isOutput: (classType: string) => boolean
}

function isLink(v: unknown): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number'
}

/** A prompt's pending nodes and their dependencies. */
export class ExecutionList {
  readonly #opts: ExecutionListOptions
  readonly #pending = new Map<string, true>()
  readonly #blockCount = new Map<string, number>()
  readonly #blocking = new Map<string, Map<string, Set<number>>>()

  constructor(opts: ExecutionListOptions) {
    this.#opts = opts
  }

  #inputs(id: string): PyObject {
    const node = this.#opts.prompt[id]
    return isPyObject(node) && isPyObject(node.inputs) ? node.inputs : {}
  }

  #classType(id: string): string {
    const node = this.#opts.prompt[id]
    return isPyObject(node) && typeof node.class_type === 'string' ? node.class_type : ''
  }

  /** Adds a node and everything it needs that is not cached. */
  addNode(nodeId: string): void {
    const stack = [nodeId]
    const links: Array<[string, number, string]> = []
    while (stack.length > 0) {
      const id = stack.pop()!
      if (this.#pending.has(id)) continue
      this.#pending.set(id, true)
      this.#blockCount.set(id, 0)
      this.#blocking.set(id, new Map())
      for (const value of Object.values(this.#inputs(id))) {
        if (!isLink(value)) continue
        const [from, socket] = value
        if (!this.#opts.isCached(from)) stack.push(from)
        links.push([from, socket, id])
      }
    }
    for (const [from, socket, to] of links) {
      if (this.#opts.isCached(from)) continue
      this.addNode(from)
      const blocked = this.#blocking.get(from)!
      if (!blocked.has(to)) {
        blocked.set(to, new Set())
        this.#blockCount.set(to, (this.#blockCount.get(to) ?? 0) + 1)
      }
      blocked.get(to)!.add(socket)
    }
  }

  isEmpty(): boolean {
    return this.#pending.size === 0
  }

  /** Ready nodes in pending order. */
  ready(): string[] {
    return [...this.#pending.keys()].filter((id) => this.#blockCount.get(id) === 0)
  }

  /**
   * The next node to run, or undefined when nothing is ready although nodes are pending (a cycle).
   * No node here is async, so only the output-node heuristics apply.
   */
  next(): string | undefined {
    const ready = this.ready()
    if (ready.length === 0) return undefined
    const out = (id: string): boolean => this.#opts.isOutput(this.#classType(id))
    for (const id of ready) if (out(id)) return id
    for (const id of ready) for (const b of this.#blocking.get(id)!.keys()) if (out(b)) return id
    for (const id of ready) {
      for (const b of this.#blocking.get(id)!.keys()) {
        for (const b2 of this.#blocking.get(b)?.keys() ?? []) if (out(b2)) return id
      }
    }
    return ready[0]
  }

  /** Marks a node done, unblocking its dependents. */
  complete(nodeId: string): void {
    this.#pending.delete(nodeId)
    for (const to of this.#blocking.get(nodeId)?.keys() ?? []) {
      this.#blockCount.set(to, (this.#blockCount.get(to) ?? 1) - 1)
    }
    this.#blocking.delete(nodeId)
  }

  /** Pending node ids (for the cycle error). */
  pending(): string[] {
    return [...this.#pending.keys()]
  }
}

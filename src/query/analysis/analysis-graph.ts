/** Reading a session's prompt graph: node inputs, links, and the numbers upstream of a node. */
import type { JsonObject, JsonValue, SessionRecord } from '../../audit/types.js'
import { isObject } from './analysis-filter.js'

type Graph = Record<string, { class_type?: string; inputs?: JsonObject }>

/** A prompt graph as analysis reads it: every node an object whose `class_type` and `inputs` have their types. */
function isGraph(value: JsonValue | undefined): value is JsonObject & Graph {
  if (!isObject(value)) return false
  return Object.values(value).every(
    (node) =>
      isObject(node) &&
      (node.class_type === undefined || typeof node.class_type === 'string') &&
      (node.inputs === undefined || isObject(node.inputs)),
  )
}

export function graphOf(session: SessionRecord | undefined): Graph | null {
  const prompt = session?.prompt
  return isGraph(prompt) ? prompt : null
}

export function isLinkValue(v: JsonValue | undefined): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number'
}

export function asNumber(v: JsonValue | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/**
 * The nearest node (breadth-first through links, starting at the node itself) whose literal inputs hold
 * every one of `names` as numbers: how `pixels` finds the EmptyLatentImage (or image size) feeding a sampler.
 */
export function upstreamNumbers(graph: Graph, nodeId: string, names: readonly string[]): number[] | null {
  const seen = new Set<string>()
  let frontier = [nodeId]
  while (frontier.length > 0) {
    const next: string[] = []
    for (const id of frontier) {
      if (seen.has(id)) continue
      seen.add(id)
      const inputs = graph[id]?.inputs
      if (!isObject(inputs)) continue
      const values = names.map((n) => asNumber(inputs[n]))
      if (values.every((v) => v !== null)) return values as number[]
      for (const v of Object.values(inputs)) if (isLinkValue(v)) next.push(v[0])
    }
    frontier = next
  }
  return null
}

/** Reading a session's prompt graph: node inputs, links, and the numbers upstream of a node. */
import type { JsonObject, JsonValue, SessionRecord } from '../../audit/types.js'
import { isObject } from './analysis-filter.js'

export type Graph = Record<string, { class_type?: string; inputs?: JsonObject }>

export function graphOf(session: SessionRecord | undefined): Graph | null {
  return isObject(session?.prompt) ? (session.prompt as unknown as Graph) : null
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

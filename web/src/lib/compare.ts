/** Compare with "differences only" off: every input of both prompts, side by side. */
import type { JsonValue } from '../../../src/query/dashboard-types.js'

function nodes(prompt: JsonValue): Map<string, { type: string; inputs: Record<string, JsonValue> }> {
  const out = new Map<string, { type: string; inputs: Record<string, JsonValue> }>()
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) return out
  for (const [id, node] of Object.entries(prompt)) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) continue
    const n = node as Record<string, JsonValue>
    const inputs =
      typeof n.inputs === 'object' && n.inputs !== null && !Array.isArray(n.inputs)
        ? (n.inputs as Record<string, JsonValue>)
        : {}
    out.set(id, { type: typeof n.class_type === 'string' ? n.class_type : '?', inputs })
  }
  return out
}

/** One row per node input present in either prompt; `changed` when the two values differ or one is missing. */
export function allInputs(
  a: JsonValue,
  b: JsonValue,
): { node: string; type: string; input: string; a: string; b: string; changed: boolean }[] {
  const na = nodes(a)
  const nb = nodes(b)
  const ids = [...new Set([...na.keys(), ...nb.keys()])].sort((x, y) =>
    x.localeCompare(y, undefined, { numeric: true }),
  )
  const rows: { node: string; type: string; input: string; a: string; b: string; changed: boolean }[] = []
  for (const id of ids) {
    const x = na.get(id)
    const y = nb.get(id)
    const names = [...new Set([...Object.keys(x?.inputs ?? {}), ...Object.keys(y?.inputs ?? {})])].sort()
    for (const name of names) {
      const va = x && name in x.inputs ? JSON.stringify(x.inputs[name]) : '-'
      const vb = y && name in y.inputs ? JSON.stringify(y.inputs[name]) : '-'
      rows.push({ node: id, type: (x ?? y)!.type, input: name, a: va, b: vb, changed: va !== vb })
    }
  }
  return rows
}

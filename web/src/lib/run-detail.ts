/** What the Run page works out from a session and its node runs (pure, unit-tested). */
import type { JsonValue, NodeRunRow } from '../../../src/query/dashboard-types.js'

/**
 * An input that is a link to another node's output: `["4", 0]` in ComfyUI's prompt format, `{node, output}`
 * in a recorded node run.
 */
export function inputLink(value: unknown): { node: string; output: number } | null {
  if (Array.isArray(value))
    return value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'number'
      ? { node: value[0], output: value[1] }
      : null
  if (typeof value !== 'object' || value === null) return null
  const v = value as Record<string, unknown>
  return Object.keys(v).length === 2 && typeof v.node === 'string' && typeof v.output === 'number'
    ? { node: v.node, output: v.output }
    : null
}

/** Files a node's UI output lists (`images`, `gifs`, ...), as `/view` names them. */
export function outputFiles(
  outputs: NodeRunRow['outputs'],
): { filename: string; subfolder: string; type: string; sha256: string | null }[] {
  const files: { filename: string; subfolder: string; type: string; sha256: string | null }[] = []
  if (!outputs) return files
  for (const list of Object.values(outputs)) {
    if (!Array.isArray(list)) continue
    for (const f of list) {
      if (typeof f !== 'object' || f === null || Array.isArray(f)) continue
      const file = f as Record<string, JsonValue>
      if (typeof file.filename !== 'string') continue
      files.push({
        filename: file.filename,
        subfolder: typeof file.subfolder === 'string' ? file.subfolder : '',
        type: typeof file.type === 'string' ? file.type : 'output',
        sha256: typeof file.sha256 === 'string' ? file.sha256 : null,
      })
    }
  }
  return files
}

/** The prompt's nodes with the nodes each one reads from: the workflow graph as a list. */
export function promptGraph(prompt: JsonValue): { id: string; type: string; from: string[] }[] {
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) return []
  const out: { id: string; type: string; from: string[] }[] = []
  for (const [id, node] of Object.entries(prompt)) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) continue
    const n = node as Record<string, JsonValue>
    const inputs =
      typeof n.inputs === 'object' && n.inputs !== null && !Array.isArray(n.inputs) ? n.inputs : {}
    const from = new Set<string>()
    for (const v of Object.values(inputs)) {
      const link = inputLink(v)
      if (link) from.add(link.node)
    }
    out.push({ id, type: typeof n.class_type === 'string' ? n.class_type : '?', from: [...from] })
  }
  return out.sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }))
}

/** The failing node's error as the session records it (execution_error data). */
export function sessionError(
  error: JsonValue,
): { node: string | null; type: string; message: string } | null {
  if (typeof error !== 'object' || error === null || Array.isArray(error)) return null
  const e = error as Record<string, JsonValue>
  return {
    node: typeof e.node_id === 'string' ? e.node_id : null,
    type: typeof e.exception_type === 'string' ? e.exception_type : 'error',
    message: typeof e.exception_message === 'string' ? e.exception_message.trim() : '',
  }
}

/**
 * A line-for-line port of tools/compare_traces.py: decides whether a candidate trace (the stand-in, the
 * gateway) shows the same behaviour as the reference recording of real ComfyUI, and prints the same lines.
 *
 * Per scenario and WebSocket client it compares the sequence of events, each reduced to its type plus what
 * identifies it (node of `executing`/`executed`/`progress`, node list of `execution_cached`, node, node type and
 * exception type of errors and interrupts, the key set of the data); binary frames by type (and preview node);
 * runs of `progress` for one node collapse; `status`, `progress_state` and `feature_flags` are left out.
 * HTTP exchanges compare method, normalised path, status and the shape of the answer. `startup` and `final`
 * compare their HTTP exchanges only.
 */
import type { Json, JsonObject, Py } from './python-values.js'
import {
  PyError,
  eq,
  get,
  isDict,
  item,
  iterate,
  or,
  py,
  pyTypeName,
  repr,
  sorted,
  str,
  truthy,
} from './python-values.js'
import type { TraceRow } from './trace-row.js'

/** What `compareTraces` found. */
export interface CompareResult {
  /** The lines compare_traces.py prints: one per reference scenario, then `conformance: N/M scenarios match`. */
  lines: string[]
  /** Reference scenarios whose behaviour the candidate matches. */
  matched: number
  /** Scenarios in the reference. */
  total: number
}

/** Options of `compareTraces`. */
export interface CompareOptions {
  /** Report every problem of a scenario, with whole event sequences (compare_traces.py `--verbose`). */
  verbose?: boolean
}

// Their counts depend on timing.
const SKIP = new Set(['progress_state', 'status', 'feature_flags'])
const ID =
  /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|fixed-[0-9a-f]+|client-[a-z]-[0-9a-f]+|observer-[0-9a-f]+/g
// Python's `$` also matches before a final newline.
const HISTORY_ITEM = /\/history\/<id>\n?$/
const JOB_ITEM = /\/jobs\/<id>\n?$/

type Token = readonly Py[]

/** Compares a candidate trace with a reference trace by compare_traces.py's rules. */
export function compareTraces(
  reference: readonly TraceRow[],
  candidate: readonly TraceRow[],
  opts: CompareOptions = {},
): CompareResult {
  const ref = load(reference)
  const cand = load(candidate)
  const verbose = opts.verbose ?? false
  const lines: string[] = []
  let ok = 0
  for (const [s, refRows] of ref) {
    const problems: string[] = []
    const candRows = cand.get(s)
    if (candRows === undefined) {
      problems.push('scenario missing')
    } else {
      if (s !== 'startup' && s !== 'final') {
        const rw = wsSeq(refRows)
        const cw = wsSeq(candRows)
        for (const [key, { client, seq: a }] of rw) {
          const b = cw.get(key)?.seq ?? []
          if (!eq(a, b)) {
            const i = firstDifference(a, b)
            problems.push(
              `client ${str(client)}: event ${i}: ${at(b, i)} != real ${at(a, i)}` +
                (verbose ? ` (all: ${reprList(b)} != real ${reprList(a)})` : ''),
            )
          }
        }
      }
      const rh = httpSeq(refRows)
      const ch = httpSeq(candRows)
      if (!eq(rh, ch)) {
        const i = firstDifference(rh, ch)
        problems.push(`http ${i}: ${at(ch, i)} != real ${at(rh, i)}`)
      }
    }
    if (problems.length > 0) {
      const text = (verbose ? problems : problems.slice(0, 1)).join('; ')
      lines.push(`DIFF  ${s}: ` + Array.from(text).slice(0, 3000).join(''))
    } else {
      ok += 1
      lines.push(`same  ${s}`)
    }
  }
  lines.push(`conformance: ${ok}/${ref.size} scenarios match`)
  return { lines, matched: ok, total: ref.size }
}

function load(rows: readonly TraceRow[]): Map<string, TraceRow[]> {
  const sc = new Map<string, TraceRow[]>()
  for (const r of rows) {
    const name = item(r, 'scenario')
    if (typeof name !== 'string') throw new PyError(`scenario ${repr(py(name))} is not a string`)
    const list = sc.get(name)
    if (list) list.push(r)
    else sc.set(name, [r])
  }
  return sc
}

function firstDifference(a: readonly Py[], b: readonly Py[]): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (!eq(a[i]!, b[i]!)) return i
  return n
}

function at(seq: readonly Py[], i: number): string {
  return i < seq.length ? str(seq[i]!) : 'nothing'
}

function reprList(seq: readonly Py[]): string {
  return `[${seq.map(repr).join(', ')}]`
}

function sortedKeys(d: JsonObject): string[] {
  return sorted(Object.keys(d))
}

function eventToken(m: Json): Token {
  const t = py(get(m, 'type'))
  const d = or(get(m, 'data'), {})
  if (!isDict(d)) return [t, 'non-object data']
  const keys = sortedKeys(d)
  if (eq(t, 'executing')) {
    const node = get(d, 'node')
    return node === null ? ['executing(end)', keys] : ['executing', str(py(node)), keys]
  }
  if (eq(t, 'executed')) {
    const out = or(get(d, 'output'), {})
    return ['executed', str(py(get(d, 'node'))), keys, isDict(out) ? sortedKeys(out) : null]
  }
  if (eq(t, 'execution_cached')) {
    const nodes = iterate(or(get(d, 'nodes'), [])).map((n) => str(py(n)))
    return ['execution_cached', sorted(nodes), keys]
  }
  if (eq(t, 'execution_error') || eq(t, 'execution_interrupted')) {
    return [t, str(py(get(d, 'node_id'))), py(get(d, 'node_type')), py(get(d, 'exception_type')), keys]
  }
  if (eq(t, 'progress')) return ['progress*', str(py(get(d, 'node')))]
  return [t, keys]
}

function inSkip(t: Json): boolean {
  if (typeof t === 'string') return SKIP.has(t)
  if (t !== null && typeof t === 'object') throw new PyError(`unhashable type: '${pyTypeName(t)}'`)
  return false
}

interface ClientSeq {
  client: Py
  seq: Token[]
}

function wsSeq(rows: readonly TraceRow[]): Map<string, ClientSeq> {
  const per = new Map<string, ClientSeq>()
  const seqOf = (client: Json): Token[] => {
    if (client !== null && typeof client === 'object')
      throw new PyError(`unhashable type: '${pyTypeName(client)}'`)
    const key = repr(py(client))
    let entry = per.get(key)
    if (!entry) {
      entry = { client: py(client), seq: [] }
      per.set(key, entry)
    }
    return entry.seq
  }
  for (const r of rows) {
    const kind = py(item(r, 'kind'))
    if (eq(kind, 'ws_binary')) {
      // previews and progress text: the frame type, runs collapsed
      const tok: Token = ['binary*', py(get(r, 'event_type')), py(get(or(get(r, 'metadata'), {}), 'node_id'))]
      const seq = seqOf(item(r, 'client'))
      if (!(seq.length > 0 && eq(seq.at(-1)!, tok))) seq.push(tok)
      continue
    }
    if (!eq(kind, 'ws') || inSkip(get(item(r, 'msg'), 'type'))) continue
    const tok = eventToken(item(r, 'msg'))
    const seq = seqOf(item(r, 'client'))
    if (eq(tok[0]!, 'progress*') && seq.length > 0 && eq(seq.at(-1)!, tok)) continue
    seq.push(tok)
  }
  return per
}

function errtypes(nodeErrors: Json): Py {
  if (!isDict(nodeErrors)) return null
  const entries = Object.entries(nodeErrors).map(([k, v]): Token => {
    const types = iterate(or(get(v, 'errors'), [])).map((e) => py(get(e, 'type', '')))
    return [k, sorted(types)]
  })
  return sorted(entries)
}

function normalisedPath(r: TraceRow): string {
  const path = item(r, 'path')
  if (typeof path !== 'string') throw new PyError(`'${pyTypeName(path)}' object has no attribute 'split'`)
  return path.split('?')[0]!.replace(ID, '<id>')
}

function shape(r: TraceRow): Py {
  const path = normalisedPath(r)
  const body = get(r, 'response')
  if (truthy(get(r, 'saved_as'))) {
    const ctype = get(r, 'content_type', '')
    if (typeof ctype !== 'string') throw new PyError(`'${pyTypeName(ctype)}' object has no attribute 'split'`)
    return ['file', ctype.split(';')[0]!]
  }
  if (isDict(body)) {
    if (path.endsWith('/prompt') && eq(py(item(r, 'method')), 'POST')) {
      if (Object.hasOwn(body, 'prompt_id')) return ['accepted', errtypes(get(body, 'node_errors'))]
      const err = get(body, 'error')
      return ['refused', isDict(err) ? py(get(err, 'type')) : py(err), errtypes(get(body, 'node_errors'))]
    }
    if (HISTORY_ITEM.test(path)) {
      return Object.values(body).map((v): Token => {
        if (!isDict(v)) throw new PyError(`'${pyTypeName(v)}' object has no attribute 'keys'`)
        const outputs = or(get(v, 'outputs'), {})
        if (!isDict(outputs)) throw new PyError(`'${pyTypeName(outputs)}' object has no attribute 'keys'`)
        return ['item', sortedKeys(v), py(get(or(get(v, 'status'), {}), 'status_str')), sortedKeys(outputs)]
      })
    }
    if (path.endsWith('/history')) return ['history', Object.keys(body).length]
    if (JOB_ITEM.test(path)) return ['job', py(get(body, 'status')), sortedKeys(body)]
    return ['keys', sortedKeys(body)]
  }
  if (Array.isArray(body)) return ['list']
  return ['other', pyTypeName(body)]
}

function httpSeq(rows: readonly TraceRow[]): Token[] {
  return rows
    .filter((r) => eq(py(item(r, 'kind')), 'http'))
    .map((r): Token => [py(item(r, 'method')), normalisedPath(r), py(item(r, 'status')), shape(r)])
}

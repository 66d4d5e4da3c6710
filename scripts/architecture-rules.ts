/**
 * The rules that keep the layout of `src/` readable (docs/architecture.md): folders in layers, imports only
 * downward, no folder cycles, short functions and files, no blind casts. Pure functions over the source graph,
 * so the architecture test can check both the real tree and planted violations.
 */
import { srcFolder, type ImportEdge, type SourceFileInfo } from './source-graph.js'

/**
 * The folders of `src/`, lowest first. A folder may import from its own layer's peers and from lower layers,
 * never from a higher one. `root` is the composition root (the files directly in `src/` and `src/root/`).
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['audit'],
  ['config'],
  ['comfyui'],
  ['store'],
  ['ledger'],
  ['capture', 'provenance', 'metrics', 'sinks'],
  ['gateway'],
  ['identity'],
  ['query'],
  ['root'],
  ['demo'],
  ['cli'],
]

/** The ComfyUI stand-in is a product of its own: it may lean only on these. */
export const SIM_MAY_IMPORT: readonly string[] = ['audit', 'comfyui']

export const MAX_FILE_LINES = 500
export const MAX_FUNCTION_LINES = 150

/** Files held to the size rules: product code outside the stand-in. */
export function isRuledSource(file: string): boolean {
  return file.startsWith('src/') && !file.startsWith('src/sim/') && !file.endsWith('.test.ts')
}

function folderOf(file: string): string {
  const f = srcFolder(file)
  return f === 'root' || f === 'root.ts' ? 'root' : f
}

function layerIndex(folder: string): number {
  return LAYERS.findIndex((l) => l.includes(folder))
}

/** Folders of `src/` that the layer list does not place (a new folder must be given a layer). */
export function unplacedFolders(sources: readonly SourceFileInfo[]): string[] {
  const folders = new Set(sources.filter((s) => s.file.startsWith('src/')).map((s) => folderOf(s.file)))
  return [...folders].filter((f) => f !== 'sim' && layerIndex(f) < 0).sort()
}

/** Product imports that cross folders (tests excluded: they may reach anywhere). */
export function crossFolderEdges(sources: readonly SourceFileInfo[]): ImportEdge[] {
  return sources
    .filter((s) => s.file.startsWith('src/') && !s.file.endsWith('.test.ts'))
    .flatMap((s) => s.imports)
    .filter((e) => e.to.startsWith('src/') && folderOf(e.from) !== folderOf(e.to))
}

/** Imports that go from a lower layer up to a higher one, or out of the stand-in to anything but its bases. */
export function upwardImports(edges: readonly ImportEdge[]): string[] {
  const bad: string[] = []
  for (const e of edges) {
    const from = folderOf(e.from)
    const to = folderOf(e.to)
    if (from === 'sim') {
      if (!SIM_MAY_IMPORT.includes(to)) bad.push(`${e.from}:${e.line} (sim) imports ${e.to} (${to})`)
      continue
    }
    if (to === 'sim') continue // tools (demo, cli, benchmarks) start the stand-in
    const a = layerIndex(from)
    const b = layerIndex(to)
    if (a >= 0 && b > a) bad.push(`${e.from}:${e.line} (${from}) imports ${e.to} (${to}, a higher layer)`)
  }
  return bad
}

/** Cycles between folders (each as `a -> b -> a`), found as strongly connected components. */
export function folderCycles(edges: readonly ImportEdge[]): string[] {
  const graph = new Map<string, Set<string>>()
  for (const e of edges) {
    const a = folderOf(e.from)
    const b = folderOf(e.to)
    if (!graph.has(a)) graph.set(a, new Set())
    if (!graph.has(b)) graph.set(b, new Set())
    graph.get(a)?.add(b)
  }
  // Tarjan's algorithm; folders are few, recursion depth is bounded by their number.
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const cycles: string[] = []
  const connect = (v: string): void => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w)
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0))
    }
    if (low.get(v) !== index.get(v)) return
    const component: string[] = []
    for (let w = stack.pop(); w !== undefined; w = stack.pop()) {
      onStack.delete(w)
      component.push(w)
      if (w === v) break
    }
    if (component.length > 1) cycles.push([...component.sort(), component[0]].join(' -> '))
  }
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v)
  return cycles
}

/** Files longer than {@link MAX_FILE_LINES}. */
export function longFiles(sources: readonly SourceFileInfo[]): string[] {
  return sources
    .filter((s) => isRuledSource(s.file) && s.lines > MAX_FILE_LINES)
    .map((s) => `${s.file}: ${s.lines} lines`)
}

/** Functions longer than {@link MAX_FUNCTION_LINES} (a factory closure counts as one function). */
export function longFunctions(sources: readonly SourceFileInfo[]): string[] {
  return sources
    .filter((s) => isRuledSource(s.file))
    .flatMap((s) => s.functions)
    .filter((f) => f.lines > MAX_FUNCTION_LINES)
    .map((f) => `${f.file}:${f.line} ${f.name}: ${f.lines} lines`)
}

/**
 * `as unknown as` casts: they switch the type checker off, which on records and payloads hides drift. A cast
 * the code cannot avoid (a boundary that must pass unchecked data on) says why in a `cast-allowed:` comment
 * on the line before; event payloads never qualify.
 */
export function blindCasts(sources: readonly SourceFileInfo[]): string[] {
  const out: string[] = []
  for (const s of sources) {
    if (!isRuledSource(s.file)) continue
    const lines = s.text.split('\n')
    lines.forEach((line, i) => {
      if (!/\bas unknown as\b/.test(line)) return
      if (/\/\/ cast-allowed: \S/.test(lines[i - 1] ?? '')) return
      out.push(`${s.file}:${i + 1}: ${line.trim()}`)
    })
  }
  return out
}

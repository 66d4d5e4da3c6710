/**
 * Lint: every export of `src/` is imported somewhere (by product code, a test, a benchmark, the dashboard or a
 * script). An export nobody imports is either dead code or a name that should not be public; both make the
 * module's surface lie about what it is for. Run by `npm run lint`; exits 1 and lists `file:line name`.
 *
 * Entry points (loaded by path, not by import) are exempt: the CLI's main module and worker scripts.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { readSources, type SourceFileInfo } from './source-graph.js'

/** Files loaded by path (node, `new Worker`), whose exports are their interface to the process. */
const ENTRY_POINTS = new Set([
  'src/cli/main.ts',
  'src/identity/redaction-worker.ts',
  'src/store/sqlite/sqlite-worker.ts',
])

export interface DeadExport {
  readonly file: string
  readonly line: number
  readonly name: string
}

/** Exports of files under `src/` that no other file imports. */
export function findDeadExports(sources: readonly SourceFileInfo[]): DeadExport[] {
  const used = new Map<string, Set<string>>()
  const use = (file: string, name: string): void => {
    let names = used.get(file)
    if (!names) used.set(file, (names = new Set()))
    names.add(name)
  }
  for (const s of sources) for (const edge of s.imports) for (const name of edge.names) use(edge.to, name)
  const dead: DeadExport[] = []
  for (const s of sources) {
    if (!s.file.startsWith('src/') || s.file.endsWith('.test.ts') || ENTRY_POINTS.has(s.file)) continue
    const names = used.get(s.file)
    if (names?.has('*')) continue
    for (const e of s.exports)
      if (!names?.has(e.name)) dead.push({ file: s.file, line: e.line, name: e.name })
  }
  return dead
}

function main(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
  const sources = readSources(root, ['src', 'test', 'bench', 'web/src', 'scripts'])
  const dead = findDeadExports(sources)
  for (const d of dead)
    process.stderr.write(`${d.file}:${d.line}  ${d.name} is exported but never imported\n`)
  if (dead.length > 0) {
    process.stderr.write(
      `dead-exports: ${dead.length} export(s) nobody imports: drop the export or the code\n`,
    )
    process.exitCode = 1
  } else {
    process.stdout.write(`dead-exports: every export of src/ is imported (${sources.length} files read)\n`)
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()

/**
 * CLI start-up: wall time of `node dist/cli/main.js --help`, of `sessions` against a small SQLite store (start
 * to the end of its output: the table is all it prints) and of bare Node (an empty script), interleaved run by
 * run so that machine load falls on all three alike; the medians, and each one's worst.
 *
 * Usage: npx tsx bench/cli-start.ts [--runs N=10] (dist/ must be built: `npm run build`)
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createRuntimeStore } from '../src/store/runtime-store.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import { generateHistory } from '../test/helpers/history-generator.js'
import { ROOT, percentile, round } from './bench-kit.js'

/** Sessions in the store `sessions` lists (it prints its default 50 of them). */
const STORE_SESSIONS = 100

/** What {@link measureCliStart} measured (milliseconds). */
export interface CliStartResult {
  readonly runs: number
  readonly help_p50_ms: number
  readonly help_max_ms: number
  /** `sessions --store sqlite:FILE` over {@link CliStartResult.store_sessions} sessions. */
  readonly sessions_p50_ms: number
  readonly sessions_max_ms: number
  readonly store_sessions: number
  readonly bare_node_p50_ms: number
}

function time(args: readonly string[]): number {
  const start = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, COMFY_AUDIT_CONFIG: '' },
  })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(0, 300)}`)
  return ms
}

/** A SQLite store of {@link STORE_SESSIONS} generated sessions, written through the store's own write path. */
async function smallStore(path: string): Promise<void> {
  const store = createRuntimeStore(createSqliteDialect({ path }), { origin: 'comfy-audit/bench-cli' })
  try {
    await generateHistory(store, { sessions: STORE_SESSIONS })
    await store.flush()
  } finally {
    await store.close()
  }
}

function summary(sorted: readonly number[]): { p50: number; max: number } {
  return { p50: round(percentile(sorted, 50), 1), max: round(sorted[sorted.length - 1]!, 1) }
}

/** Times `comfy-audit --help` and `comfy-audit sessions` from the built CLI (dist/ must exist). */
export async function measureCliStart(runs = 10): Promise<CliStartResult> {
  const main = join(ROOT, 'dist/cli/main.js')
  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bench-cli-'))
  try {
    const file = join(dir, 'audit.sqlite')
    await smallStore(file)
    const sessionsArgs = [main, 'sessions', '--store', `sqlite:${file}`]
    // One untimed round: the first start reads the files from disk, the timed ones from the page cache.
    time([main, '--help'])
    time(sessionsArgs)
    const help: number[] = []
    const sessions: number[] = []
    const bare: number[] = []
    for (let i = 0; i < runs; i++) {
      help.push(time([main, '--help']))
      sessions.push(time(sessionsArgs))
      bare.push(time(['-e', '']))
    }
    for (const list of [help, sessions, bare]) list.sort((a, b) => a - b)
    const h = summary(help)
    const s = summary(sessions)
    return {
      runs,
      help_p50_ms: h.p50,
      help_max_ms: h.max,
      sessions_p50_ms: s.p50,
      sessions_max_ms: s.max,
      store_sessions: STORE_SESSIONS,
      bare_node_p50_ms: summary(bare).p50,
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const at = process.argv.indexOf('--runs')
  const runs = at >= 0 ? Number(process.argv[at + 1]) : 10
  console.log(JSON.stringify(await measureCliStart(runs), null, 2))
}

/**
 * Benchmark (report only, never pass/fail): the analysis commands over a generated history.
 *
 * The history is test/helpers/history-generator.ts's, with its planted effects and 22 extra image nodes per
 * prompt (30 node runs each, as the issue's 1M sessions / 30M node runs), spread over `--days` days. Up to
 * `--append-max` sessions (default 5000) it is written through the store's own write path
 * (RuntimeStore.append: events, derived rows and rollups in one transaction per batch); above that through the
 * bulk form (bench/analysis-bulk-load.ts: the same projection, row encoders and rollup code, without the event
 * log), since the write path on a small machine takes hours for millions of node runs. `--load append|bulk`
 * chooses explicitly.
 *
 * Each command is timed `--repeat` times (p50, p95 of those runs, and this process's CPU time) over the last
 * 30 days (regressions: its default 7-day baseline and 1-day recent window ending now; the raw-row answers
 * over the last day), on SQLite and, when PostgreSQL is installed, on a
 * throwaway PostgreSQL cluster (after ANALYZE, as autovacuum would). The issue's goals (p95 < 200 ms for
 * stats/trends/usage over 30 days and < 1 s for regressions on SQLite, at 1M sessions) are printed beside the
 * figures; nothing fails on them.
 *
 * Usage: npm run bench:analysis -- [--sessions N=10000] [--days D=90] [--repeat R=5] [--out FILE]
 *        [--load append|bulk] [--append-max N=5000] [--no-postgres] [--no-sqlite] [--keep FILE]
 *        npm run bench:analysis -- --fit SMALL.json LARGE.json [--to N=1000000] [--out FILE]
 *
 * `--keep FILE` loads SQLite into FILE and keeps it (with FILE.json, what was loaded); when both exist, the
 * next run with the same `--keep` times the commands on it without loading again (for profiling a change).
 *
 * `--fit` runs nothing: from two earlier `--out` files at different session counts it fits each command's p50
 * and p95 to a power of the session count (t = c·n^k, through both points) and extrapolates to `--to`
 * sessions. Two points make a rough curve (a rollup answer's cost grows with buckets, not sessions); it is a
 * guide to what to measure, not a measurement.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { cpus, freemem, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { runAnalysis, type AnalysisCommand } from '../src/query/analysis/analysis-request.js'
import { createPostgresDialect } from '../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore, type RuntimeStore } from '../src/store/runtime-store.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import type { StoreDialect } from '../src/store/store.js'
import { generateHistory, type GeneratedHistory } from '../test/helpers/history-generator.js'
import { findPostgresBin, startPostgres } from '../test/helpers/postgres.js'
import { createBulkLoader, postgresBulkConnection, sqliteBulkConnection } from './analysis-bulk-load.js'
import { percentile, round } from './bench-kit.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const whole = (name: string, fallback: number): number => {
  const text = flag(name)
  const value = text === undefined ? fallback : Number(text)
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${name}: expected a whole number >= 1, got ${text}`)
  return value
}
if (args.includes('--fit')) {
  const i = args.indexOf('--fit')
  await fitGrowth(args[i + 1], args[i + 2], whole('--to', 1_000_000), flag('--out'))
  process.exit(0)
}

const sessions = whole('--sessions', 10_000)
const days = whole('--days', 90)
const repeat = whole('--repeat', 5)
const appendMax = whole('--append-max', 5000)
const load = flag('--load') ?? (sessions <= appendMax ? 'append' : 'bulk')
if (load !== 'append' && load !== 'bulk') throw new Error(`--load: expected append or bulk, got ${load}`)
const out = flag('--out')
const withSqlite = !args.includes('--no-sqlite')
const withPostgres = !args.includes('--no-postgres') && findPostgresBin() !== undefined
const keep = flag('--keep')

const DAY = 86_400_000
const START = '2026-01-01T00:00:00Z'
const ORIGIN = 'comfy-audit/bench'
const EXTRA_NODES = 22

/** Label, command, parameters (besides the window), and the goal for p95 on SQLite at 1M sessions. */
const QUESTIONS: [string, AnalysisCommand, Record<string, string>, number | null][] = [
  ['stats --by node_type', 'stats', {}, 200],
  ['stats --by day', 'stats', { by: 'day' }, 200],
  ['trends KSampler 1d', 'trends', { node_type: 'KSampler', bucket: '1d' }, 200],
  ['usage --by user', 'usage', { by: 'user' }, 200],
  ['usage --by day', 'usage', { by: 'day' }, 200],
  ['usage --by model', 'usage', { by: 'model' }, 200],
  ['regressions 7d/1d', 'regressions', {}, 1000],
  ['regressions --workflow', 'regressions', { workflow: 'wf-portrait' }, 1000],
  // Raw-row answers (no rollup serves them) over the last day: over 30 days they read every row of the month.
  ['stats --user, 1 day (raw rows)', 'stats', { user: 'ana' }, null],
  ['correlate VAEDecode, 1 day', 'correlate', { node_type: 'VAEDecode' }, null],
  [
    'suggest KSampler 1024, 1 day',
    'suggest',
    { node_type: 'KSampler', where: 'width=1024,height=1024' },
    null,
  ],
  ['diff --workflow --last 2', 'diff', { workflow: 'wf-portrait', last: '2' }, null],
]

interface Figures {
  dialect: string
  load: string
  sessions: number
  node_runs: number
  load_seconds: number
  node_runs_per_second: number
  database_bytes: number | null
  commands: Record<
    string,
    { p50_ms: number; p95_ms: number; cpu_p50_ms: number; goal_p95_ms: number | null; source: string | null }
  >
}

function historyOptions(): Parameters<typeof generateHistory>[1] {
  const span = days * DAY
  return {
    seed: 11,
    start: START,
    sessions,
    spacingMillis: span / sessions,
    extraNodes: EXTRA_NODES,
    batchEvents: 500,
    slowdown: { after: new Date(Date.parse(START) + span - 3 * DAY).toISOString(), factor: 1.4 },
  }
}

async function loadHistory(
  name: string,
  dialect: StoreDialect,
  bulk: () => Promise<{ loader: ReturnType<typeof createBulkLoader>; close(): Promise<void> }>,
): Promise<{ history: GeneratedHistory; seconds: number }> {
  const t0 = performance.now()
  let history: GeneratedHistory
  if (load === 'append') {
    const store = createRuntimeStore(dialect, { origin: ORIGIN })
    try {
      history = await generateHistory(store, historyOptions())
    } finally {
      await store.close()
    }
  } else {
    // Migrations first, through the store.
    const store = createRuntimeStore(dialect, { origin: ORIGIN })
    await store.init()
    await store.close()
    const { loader, close } = await bulk()
    try {
      history = await generateHistory(loader, historyOptions())
      await loader.finish()
    } finally {
      await close()
    }
  }
  const seconds = (performance.now() - t0) / 1000
  process.stdout.write(
    `${name}: ${history.sessions} sessions, ${history.nodeRuns} node runs loaded (${load}) in ${round(seconds, 1)} s\n`,
  )
  return { history, seconds }
}

async function timeCommands(
  name: string,
  store: RuntimeStore,
  history: GeneratedHistory,
): Promise<Figures['commands']> {
  const now = new Date(history.end)
  const since = new Date(now.getTime() - 30 * DAY).toISOString()
  const lastDay = new Date(now.getTime() - DAY).toISOString()
  const commands: Figures['commands'] = {}
  for (const [label, command, params, goal] of QUESTIONS) {
    const window =
      command === 'regressions' || command === 'diff'
        ? { until: history.end }
        : { since: label.includes('1 day') ? lastDay : since, until: history.end }
    const times: number[] = []
    const cpu: number[] = []
    let source: string | null = null
    for (let i = 0; i < repeat; i++) {
      const start = performance.now()
      const cpu0 = process.cpuUsage()
      const r = await runAnalysis(store, command, { ...window, ...params }, now)
      times.push(performance.now() - start)
      const used = process.cpuUsage(cpu0)
      cpu.push((used.user + used.system) / 1000)
      if (!r.ok) throw new Error(`${label}: ${r.reason}`)
      const value = r.value as { source?: string }
      source = value.source ?? null
    }
    times.sort((a, b) => a - b)
    cpu.sort((a, b) => a - b)
    commands[label] = {
      p50_ms: round(percentile(times, 50), 1),
      p95_ms: round(percentile(times, 95), 1),
      // This process's CPU time (the SQLite work runs in it; PostgreSQL's server time is not counted): on a
      // shared machine the wall-clock figures include waiting for a core.
      cpu_p50_ms: round(percentile(cpu, 50), 1),
      goal_p95_ms: goal,
      source,
    }
    process.stdout.write(
      `${name.padEnd(8)} ${label.padEnd(31)} p50 ${String(commands[label].p50_ms).padStart(9)} ms  p95 ${String(commands[label].p95_ms).padStart(9)} ms  cpu p50 ${String(commands[label].cpu_p50_ms).padStart(8)} ms` +
        `${goal === null ? '' : `  (goal p95 < ${goal} ms at 1M)`}${source ? `  [${source}]` : ''}\n`,
    )
  }
  return commands
}

const dir = await mkdtemp(join(tmpdir(), 'bench-analysis-'))
const results: Figures[] = []
try {
  if (withSqlite) {
    const path = keep ?? join(dir, 'audit.sqlite')
    const dialect = (): StoreDialect => createSqliteDialect({ path, synchronous: 'normal' })
    const kept = keep === undefined ? undefined : await readKept(keep)
    const { history, seconds } =
      kept ??
      (await loadHistory('sqlite', dialect(), async () => {
        const db = new Database(path)
        db.pragma('journal_mode = WAL')
        db.pragma('synchronous = NORMAL')
        return {
          loader: createBulkLoader(sqliteBulkConnection(db), ORIGIN),
          close: async () => void db.close(),
        }
      }))
    if (keep !== undefined && kept === undefined)
      await writeFile(`${keep}.json`, JSON.stringify({ history, seconds }) + '\n')
    const store = createRuntimeStore(dialect(), { origin: ORIGIN })
    try {
      results.push({
        dialect: 'sqlite',
        load,
        sessions: history.sessions,
        node_runs: history.nodeRuns,
        load_seconds: round(seconds, 1),
        node_runs_per_second: Math.round(history.nodeRuns / seconds),
        database_bytes: (await stat(path)).size,
        commands: await timeCommands('sqlite', store, history),
      })
    } finally {
      await store.close()
    }
  }
  if (withPostgres) {
    const cluster = await startPostgres()
    try {
      const url = cluster.url
      const { history, seconds } = await loadHistory('postgres', createPostgresDialect({ url }), async () => {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        return {
          loader: createBulkLoader(postgresBulkConnection(client), ORIGIN),
          close: async () => void (await client.end()),
        }
      })
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      await client.query('ANALYZE')
      const size = Number((await client.query('SELECT pg_database_size(current_database()) AS n')).rows[0].n)
      await client.end()
      const store = createRuntimeStore(createPostgresDialect({ url }), { origin: ORIGIN })
      try {
        results.push({
          dialect: 'postgres',
          load,
          sessions: history.sessions,
          node_runs: history.nodeRuns,
          load_seconds: round(seconds, 1),
          node_runs_per_second: Math.round(history.nodeRuns / seconds),
          database_bytes: size,
          commands: await timeCommands('postgres', store, history),
        })
      } finally {
        await store.close()
      }
    } finally {
      await cluster.stop()
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
const machine = {
  node: process.version,
  cpus: cpus().length,
  cpu_model: cpus()[0]?.model ?? null,
  memory_bytes: totalmem(),
  free_memory_bytes_at_end: freemem(),
  load_average_1m_at_end: round(loadavg()[0] ?? 0, 2),
}
if (out) {
  await writeFile(
    out,
    JSON.stringify(
      { analysis: { sessions, days, repeat, extra_nodes: EXTRA_NODES, machine, results } },
      null,
      2,
    ) + '\n',
  )
  process.stdout.write(`wrote ${out}\n`)
}

/** What an earlier `--keep` run loaded into FILE, or undefined when FILE or its summary is missing. */
async function readKept(file: string): Promise<{ history: GeneratedHistory; seconds: number } | undefined> {
  try {
    await stat(file)
    const kept = JSON.parse(await readFile(`${file}.json`, 'utf8')) as {
      history: GeneratedHistory
      seconds: number
    }
    process.stdout.write(`sqlite: reusing ${file} (${kept.history.sessions} sessions)\n`)
    return kept
  } catch {
    return undefined
  }
}

/** The `--fit` mode: power-law growth per dialect and command from two result files. */
async function fitGrowth(
  smallFile: string | undefined,
  largeFile: string | undefined,
  to: number,
  outFile: string | undefined,
): Promise<void> {
  if (smallFile === undefined || largeFile === undefined) throw new Error('--fit: give two result files')
  const read = async (file: string): Promise<Figures[]> =>
    (JSON.parse(await readFile(file, 'utf8')) as { analysis: { results: Figures[] } }).analysis.results
  const [small, large] = [await read(smallFile), await read(largeFile)]
  const fits: Record<
    string,
    Record<
      string,
      { k_p50: number; k_p95: number; k_cpu: number; p50_ms: number; p95_ms: number; cpu_p50_ms: number }
    >
  > = {}
  for (const b of large) {
    const a = small.find((x) => x.dialect === b.dialect)
    if (!a || a.sessions === b.sessions) continue
    const span = Math.log(b.sessions / a.sessions)
    for (const [label, fb] of Object.entries(b.commands)) {
      const fa = a.commands[label]
      if (!fa) continue
      const k = (x: number, y: number): number => Math.log(Math.max(y, 0.1) / Math.max(x, 0.1)) / span
      const at = (y: number, kk: number): number => y * (to / b.sessions) ** kk
      // CPU time too: on a loaded machine the wall-clock figures mostly measure the wait for a core.
      const f = {
        k_p50: k(fa.p50_ms, fb.p50_ms),
        k_p95: k(fa.p95_ms, fb.p95_ms),
        k_cpu: k(fa.cpu_p50_ms, fb.cpu_p50_ms),
        p50_ms: 0,
        p95_ms: 0,
        cpu_p50_ms: 0,
      }
      f.p50_ms = round(at(fb.p50_ms, f.k_p50), 1)
      f.p95_ms = round(at(fb.p95_ms, f.k_p95), 1)
      f.cpu_p50_ms = round(at(fb.cpu_p50_ms, f.k_cpu), 1)
      f.k_p50 = round(f.k_p50, 2)
      f.k_p95 = round(f.k_p95, 2)
      f.k_cpu = round(f.k_cpu, 2)
      ;(fits[b.dialect] ??= {})[label] = f
      process.stdout.write(
        `${b.dialect.padEnd(8)} ${label.padEnd(31)} k ${String(f.k_p95).padStart(5)}  ${a.sessions}->${b.sessions}: p95 ${fa.p95_ms} -> ${fb.p95_ms} ms; at ${to}: p50 ~${f.p50_ms} ms, p95 ~${f.p95_ms} ms; cpu p50 ${fa.cpu_p50_ms} -> ${fb.cpu_p50_ms} -> ~${f.cpu_p50_ms} ms (k ${f.k_cpu})\n`,
      )
    }
  }
  if (outFile) {
    await writeFile(
      outFile,
      JSON.stringify({ analysis_fit: { to, from: [smallFile, largeFile], fits } }, null, 2) + '\n',
    )
    process.stdout.write(`wrote ${outFile}\n`)
  }
}

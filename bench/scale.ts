/**
 * Benchmark (report only, never pass/fail): the audit API's queries over a big store (issue 14 item 4).
 *
 * For each size in `--sessions` (a comma list, default 10000) it builds a store of that many generated
 * sessions with 30 node runs each over `--days` days (bench/scale-kit.ts: the generator through the bulk form
 * of the write path), then times the query set through the audit API over loopback HTTP, `--repeat` runs each
 * (a different person, day, session or image per run): sessions by person and day, by status, by model hash,
 * by prompt text, `show`, trace by SHA-256 and by a re-encoded PNG's prompt chunk, and one day's node runs
 * read as `export` reads them. On SQLite and, when PostgreSQL is installed, on a throwaway cluster (after
 * ANALYZE, as autovacuum would). With two sizes or more it prints each query's growth (t = c·n^k through the
 * two largest) and its extrapolation to `--to` sessions: a guide, not a measurement.
 *
 * Usage: npm run bench:scale -- [--sessions N[,N…]=10000] [--days D=90] [--repeat R=40] [--out FILE]
 *        [--to N=1000000] [--no-postgres] [--no-sqlite]
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { createPostgresDialect } from '../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore } from '../src/store/runtime-store.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import type { StoreDialect } from '../src/store/store.js'
import { findPostgresBin, startPostgres } from '../test/helpers/postgres.js'
import { createBulkLoader, postgresBulkConnection, sqliteBulkConnection } from './analysis-bulk-load.js'
import { round } from './bench-kit.js'
import {
  loadScaleHistory,
  SCALE_ORIGIN,
  timeDayOfNodeRuns,
  timeQuerySet,
  type QueryFigure,
} from './scale-kit.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const whole = (text: string | undefined, name: string, fallback: number): number => {
  const value = text === undefined ? fallback : Number(text)
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${name}: expected a whole number >= 1, got ${text}`)
  return value
}
const sizes = (flag('--sessions') ?? '10000').split(',').map((s) => whole(s, '--sessions', 10_000))
const days = whole(flag('--days'), '--days', 90)
const repeat = whole(flag('--repeat'), '--repeat', 40)
const to = whole(flag('--to'), '--to', 1_000_000)
const out = flag('--out')
const withSqlite = !args.includes('--no-sqlite')
const withPostgres = !args.includes('--no-postgres') && findPostgresBin() !== undefined

interface Result {
  dialect: string
  sessions: number
  node_runs: number
  load_seconds: number
  database_bytes: number
  queries: Record<string, QueryFigure>
  day_of_node_runs: Awaited<ReturnType<typeof timeDayOfNodeRuns>>
}

const log = (line: string): void => void process.stdout.write(`${line}\n`)

async function measure(
  name: string,
  sessions: number,
  dialect: () => StoreDialect,
  bulk: () => Promise<{ loader: ReturnType<typeof createBulkLoader>; close(): Promise<void> }>,
  size: () => Promise<number>,
): Promise<Result> {
  const t0 = performance.now()
  // Migrations first, through the store; then the rows through the bulk loader.
  const init = createRuntimeStore(dialect(), { origin: SCALE_ORIGIN })
  await init.init()
  await init.close()
  const { loader, close } = await bulk()
  let history
  try {
    history = await loadScaleHistory(loader, sessions, days)
  } finally {
    await close()
  }
  const loadSeconds = (performance.now() - t0) / 1000
  log(
    `${name}: ${history.sessions} sessions, ${history.nodeRuns} node runs loaded in ${round(loadSeconds, 1)} s`,
  )
  const store = createRuntimeStore(dialect(), { origin: SCALE_ORIGIN })
  try {
    await store.init()
    const queries = await timeQuerySet(store, history, repeat, (line) => log(`${name.padEnd(8)} ${line}`))
    const day = await timeDayOfNodeRuns(store, history)
    log(
      `${name.padEnd(8)} ${'one day of node runs'.padEnd(36)} ${day.rows} rows, ${day.rows_per_second} rows/s, heap +${day.heap_growth_mb} MiB  (goal >= 200000 rows/s, constant memory)`,
    )
    return {
      dialect: name,
      sessions: history.sessions,
      node_runs: history.nodeRuns,
      load_seconds: round(loadSeconds, 1),
      database_bytes: await size(),
      queries,
      day_of_node_runs: day,
    }
  } finally {
    await store.close()
  }
}

async function sqliteRun(sessions: number, dir: string): Promise<Result> {
  const path = join(dir, `scale-${sessions}.sqlite`)
  return measure(
    'sqlite',
    sessions,
    () => createSqliteDialect({ path, synchronous: 'normal' }),
    async () => {
      const db = new Database(path)
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
      return {
        loader: createBulkLoader(sqliteBulkConnection(db), SCALE_ORIGIN),
        close: async () => {
          // The planner's statistics, as a long-running store would have them (`PRAGMA optimize`).
          db.exec('ANALYZE')
          db.close()
        },
      }
    },
    async () => (await stat(path)).size,
  )
}

async function postgresRun(sessions: number, url: string): Promise<Result> {
  const client = async (): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    return c
  }
  return measure(
    'postgres',
    sessions,
    () => createPostgresDialect({ url }),
    async () => {
      const c = await client()
      return {
        loader: createBulkLoader(postgresBulkConnection(c), SCALE_ORIGIN),
        close: async () => {
          await c.query('ANALYZE')
          await c.end()
        },
      }
    },
    async () => {
      const c = await client()
      try {
        return Number((await c.query('SELECT pg_database_size(current_database()) AS n')).rows[0].n)
      } finally {
        await c.end()
      }
    },
  )
}

/** Growth of each query's p95 between the two largest sizes, extrapolated to `to` sessions. */
function growth(
  results: readonly Result[],
): Record<string, Record<string, { k: number; p95_ms_at_to: number }>> {
  const fits: Record<string, Record<string, { k: number; p95_ms_at_to: number }>> = {}
  for (const dialect of new Set(results.map((r) => r.dialect))) {
    const mine = results.filter((r) => r.dialect === dialect).sort((a, b) => a.sessions - b.sessions)
    if (mine.length < 2) continue
    const [a, b] = mine.slice(-2) as [Result, Result]
    const span = Math.log(b.sessions / a.sessions)
    for (const [label, fb] of Object.entries(b.queries)) {
      const fa = a.queries[label]
      if (!fa) continue
      const k = Math.log(Math.max(fb.p95_ms, 0.1) / Math.max(fa.p95_ms, 0.1)) / span
      const at = round(fb.p95_ms * (to / b.sessions) ** k, 1)
      ;(fits[dialect] ??= {})[label] = { k: round(k, 2), p95_ms_at_to: at }
      log(
        `${dialect.padEnd(8)} ${label.padEnd(36)} p95 ${fa.p95_ms} -> ${fb.p95_ms} ms (${a.sessions} -> ${b.sessions}), k ${round(k, 2)}, at ${to}: ~${at} ms`,
      )
    }
  }
  return fits
}

const dir = await mkdtemp(join(tmpdir(), 'bench-scale-'))
const results: Result[] = []
try {
  for (const sessions of sizes) {
    if (withSqlite) results.push(await sqliteRun(sessions, dir))
    if (withPostgres) {
      const cluster = await startPostgres()
      try {
        results.push(await postgresRun(sessions, cluster.url))
      } finally {
        await cluster.stop()
      }
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
const fits = growth(results)
if (out) {
  const machine = {
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? null,
    memory_bytes: totalmem(),
    load_average_1m_at_end: round(loadavg()[0] ?? 0, 2),
  }
  await writeFile(
    out,
    JSON.stringify({ scale: { sizes, days, repeat, machine, results, growth: { to, fits } } }, null, 2) +
      '\n',
  )
  log(`wrote ${out}`)
}

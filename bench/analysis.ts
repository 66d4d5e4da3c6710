/**
 * Benchmark (report only, never pass/fail): the analysis commands over a generated history.
 *
 * Writes a history with the planted effects of test/helpers/history-generator.ts through the store's own
 * write path (RuntimeStore.append: events, derived rows and rollups in one transaction per batch), then
 * times each command over the whole history (30-day-style open windows read rollups where they can) and over
 * a 1-day window, on SQLite and, when PostgreSQL is installed, on a throwaway PostgreSQL cluster.
 * The goal figures (p95 < 200 ms for stats/trends/usage over 30 days and < 1 s for regressions, at
 * 1M sessions / 30M node runs) need `--sessions 1000000`; that takes hours to generate on a small machine.
 *
 * Usage: npx tsx bench/analysis.ts [--sessions N=5000] [--repeat R=7] [--out FILE] [--no-postgres]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAnalysis, type AnalysisCommand } from '../src/query/analysis/analysis-request.js'
import { createPostgresDialect } from '../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore, type RuntimeStore } from '../src/store/runtime-store.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import type { StoreDialect } from '../src/store/store.js'
import { generateHistory } from '../test/helpers/history-generator.js'
import { findPostgresBin, startPostgres } from '../test/helpers/postgres.js'
import { percentile, round } from './bench-kit.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const sessions = Number(flag('--sessions') ?? 5000)
const repeat = Number(flag('--repeat') ?? 7)
const out = flag('--out')
const withPostgres = !args.includes('--no-postgres') && findPostgresBin() !== undefined

const QUESTIONS: [string, AnalysisCommand, Record<string, string>][] = [
  ['stats (all)', 'stats', {}],
  ['stats --by day', 'stats', { by: 'day' }],
  ['stats --user (raw rows)', 'stats', { user: 'ana' }],
  ['trends KSampler 1d', 'trends', { node_type: 'KSampler', bucket: '1d' }],
  ['usage --by user', 'usage', { by: 'user' }],
  ['regressions 7d/1d', 'regressions', {}],
  ['correlate VAEDecode', 'correlate', { node_type: 'VAEDecode' }],
  ['suggest KSampler 1024', 'suggest', { node_type: 'KSampler', where: 'width=1024,height=1024' }],
  ['diff --workflow --last 2', 'diff', { workflow: 'wf-portrait', last: '2' }],
]

interface Figures {
  dialect: string
  sessions: number
  node_runs: number
  write_seconds: number
  node_runs_per_second: number
  commands: Record<string, { p50_ms: number; p95_ms: number }>
}

async function measure(name: string, dialect: StoreDialect): Promise<Figures> {
  const store: RuntimeStore = createRuntimeStore(dialect, { origin: 'comfy-audit/bench' })
  try {
    const t0 = performance.now()
    // ~20 min apart: 5000 sessions span about 70 days.
    const history = await generateHistory(store, { seed: 11, sessions, batchEvents: 500 })
    const writeSeconds = (performance.now() - t0) / 1000
    const now = new Date(history.end)
    const commands: Figures['commands'] = {}
    for (const [label, command, params] of QUESTIONS) {
      const times: number[] = []
      for (let i = 0; i < repeat; i++) {
        const start = performance.now()
        const r = await runAnalysis(store, command, { until: history.end, ...params }, now)
        times.push(performance.now() - start)
        if (!r.ok) throw new Error(`${label}: ${r.reason}`)
      }
      times.sort((a, b) => a - b)
      commands[label] = { p50_ms: round(percentile(times, 50), 1), p95_ms: round(percentile(times, 95), 1) }
      process.stdout.write(
        `${name.padEnd(8)} ${label.padEnd(26)} p50 ${commands[label].p50_ms} ms  p95 ${commands[label].p95_ms} ms\n`,
      )
    }
    return {
      dialect: name,
      sessions: history.sessions,
      node_runs: history.nodeRuns,
      write_seconds: round(writeSeconds, 2),
      node_runs_per_second: Math.round(history.nodeRuns / writeSeconds),
      commands,
    }
  } finally {
    await store.close()
  }
}

const dir = await mkdtemp(join(tmpdir(), 'bench-analysis-'))
const results: Figures[] = []
try {
  results.push(
    await measure('sqlite', createSqliteDialect({ path: join(dir, 'audit.sqlite'), synchronous: 'normal' })),
  )
  if (withPostgres) {
    const cluster = await startPostgres()
    try {
      results.push(await measure('postgres', createPostgresDialect({ url: cluster.url })))
    } finally {
      await cluster.stop()
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
for (const r of results) {
  process.stdout.write(
    `${r.dialect}: ${r.sessions} sessions, ${r.node_runs} node runs written in ${r.write_seconds} s (${r.node_runs_per_second} node runs/s, with rollups)\n`,
  )
}
if (out) await writeFile(out, JSON.stringify({ analysis: results }, null, 2) + '\n')

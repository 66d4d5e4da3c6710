/**
 * The scale benchmark's pieces (bench/scale.ts, and bench/run.ts at a small size): a generated store of N
 * sessions with 30 node runs each, and the query set timed through the audit API over loopback HTTP
 * (`createAuditApi`, the handler the gateway mounts), so each figure includes the SQL, the row decoding and
 * the JSON answer. The history is test/helpers/history-generator.ts's, written through the bulk form of the
 * write path (bench/analysis-bulk-load.ts: the store's own projection, row encoders and upserts); its output
 * files get a SHA-256 (the generator writes none) so trace-by-hash has something to find.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { canonicalJson, sha256Hex } from '../src/audit/json.js'
import type { AuditEventInput, JsonObject, JsonValue } from '../src/audit/types.js'
import { createAuditApi } from '../src/query/audit-api.js'
import Database from 'better-sqlite3'
import { createRuntimeStore, type RuntimeStore } from '../src/store/runtime-store.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import { encodePng } from '../src/sim/png.js'
import {
  generateHistory,
  PLANTED,
  standInSha256,
  type GeneratedHistory,
  type HistoryTarget,
} from '../test/helpers/history-generator.js'
import { createBulkLoader, sqliteBulkConnection } from './analysis-bulk-load.js'
import { percentile, round } from './bench-kit.js'

const DAY = 86_400_000
export const SCALE_START = '2026-01-01T00:00:00Z'
export const SCALE_ORIGIN = 'comfy-audit/scale'
/** 8 + 22 = 30 node runs per session, the issue's 1M sessions / 30M node runs. */
const EXTRA_NODES = 22

/** The hash the bench gives an output file: derived from where it was written, so reruns agree. */
function fileSha(sessionId: string, filename: string): string {
  return sha256Hex(`${sessionId}/${filename}`)
}

/** Adds a SHA-256 to every output file the generator reports (as capture does once it hashed the file). */
function withFileHashes(target: HistoryTarget): HistoryTarget {
  return {
    flush: () => target.flush(),
    append: (inputs: readonly AuditEventInput[]) =>
      target.append(
        inputs.map((e) => {
          if (e.kind !== 'node.finished' || e.session_id === null) return e
          const outputs = (e.payload as JsonObject).outputs
          if (!Array.isArray(outputs) || outputs.length === 0) return e
          const hashed = outputs.map((f) => {
            const file = f as JsonObject
            return { ...file, sha256: fileSha(e.session_id!, String(file.filename)) }
          })
          return { ...e, payload: { ...(e.payload as JsonObject), outputs: hashed } }
        }),
      ),
  }
}

/** Writes `sessions` generated sessions over `days` days into the bulk loader. */
export async function loadScaleHistory(
  loader: ReturnType<typeof createBulkLoader>,
  sessions: number,
  days: number,
): Promise<GeneratedHistory> {
  const history = await generateHistory(withFileHashes(loader), {
    seed: 14,
    start: SCALE_START,
    sessions,
    spacingMillis: (days * DAY) / sessions,
    extraNodes: EXTRA_NODES,
    batchEvents: 1000,
  })
  // Only the rows: the query set reads no rollup, and computing them is most of a bulk load's time.
  await loader.flush()
  return history
}

/** One query's timings. */
export interface QueryFigure {
  /**
   * CPU time of this process (API, SQLite, client) per request: on a shared machine the wall-clock figures
   * include waiting for a core. PostgreSQL's server time is not in it.
   */
  readonly cpu_p50_ms: number
  readonly cpu_p95_ms: number
  readonly p50_ms: number
  readonly p95_ms: number
  readonly max_ms: number
  readonly runs: number
  /** Rows (sessions, node runs) the answers held, summed over the runs. */
  readonly rows: number
  /** Answers that were 404 (nothing found). */
  readonly not_found: number
  readonly goal_p95_ms: number | null
}

interface Api {
  readonly base: string
  readonly server: Server
}

async function startApi(store: RuntimeStore): Promise<Api> {
  const api = createAuditApi({ store, upstreamHealthy: () => true, draining: () => false })
  const server = createServer((req, res) => {
    api(req, res).then(
      (served) => {
        if (!served) res.writeHead(404).end()
      },
      (error: unknown) => res.writeHead(500).end(String(error)),
    )
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** Rows in an answer: its sessions, runs or node runs, or 1 for a single record. */
function rowCount(body: JsonValue): number {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 0
  for (const key of ['sessions', 'runs', 'node_runs'] as const) {
    const list = body[key]
    if (Array.isArray(list) && key !== 'node_runs') return list.length
  }
  return 1
}

type Probe = (i: number) => { path: string; body?: Buffer }

/** The PNG a user would drop: re-encoded pixels (so its hash is no recorded file's) with the prompt chunk. */
function reencodedPng(prompt: JsonValue, i: number): Buffer {
  const data = new Uint8Array(4 * 4 * 3).fill(i % 251)
  return encodePng({ width: 4, height: 4, channels: 3, data }, { text: [['prompt', canonicalJson(prompt)]] })
}

/** Session ids and prompts to ask about: spread over the history, read back from the store once. */
async function samples(
  store: RuntimeStore,
  history: GeneratedHistory,
  count: number,
): Promise<{ id: string; prompt: JsonValue; sha: string | null }[]> {
  const out: { id: string; prompt: JsonValue; sha: string | null }[] = []
  const span = Date.parse(history.end) - Date.parse(SCALE_START)
  for (let i = 0; i < count; i++) {
    const at = new Date(Date.parse(SCALE_START) + (1 + ((i * 7919) % count)) * (span / count)).toISOString()
    const [s] = await store.sessions({ until: at, limit: 1 })
    if (!s) continue
    const file = s.outputs.find((o) => o.type === 'output')
    out.push({ id: s.session_id, prompt: s.prompt, sha: file ? fileSha(s.session_id, file.filename) : null })
  }
  return out
}

/** Times the query set, `repeat` runs each with a different person, day, session or image per run. */
export async function timeQuerySet(
  store: RuntimeStore,
  history: GeneratedHistory,
  repeat: number,
  log: (line: string) => void = () => {},
): Promise<Record<string, QueryFigure>> {
  const picks = await samples(store, history, Math.max(repeat, 10))
  const hashed = picks.filter((p) => p.sha !== null)
  const end = Date.parse(history.end)
  const days = Math.max(1, Math.floor((end - Date.parse(SCALE_START)) / DAY))
  const day = (i: number): string => new Date(end - (1 + ((i * 13) % days)) * DAY).toISOString()
  const user = (i: number): string => PLANTED.users[i % PLANTED.users.length]!
  const pick = (i: number): (typeof picks)[number] => picks[i % picks.length]!
  const hashPick = (i: number): string => hashed[i % hashed.length]?.sha ?? '0'.repeat(64)
  const number = (id: string): string => String(Number(id.slice(1, 7)))
  const modelSha = standInSha256(PLANTED.goodLora)
  const set: [string, Probe, number | null][] = [
    [
      'sessions by person + day',
      (i) => ({
        path: `/_audit/api/sessions?user=${user(i)}&since=${day(i)}&until=${new Date(Date.parse(day(i)) + DAY).toISOString()}&limit=100`,
      }),
      50,
    ],
    [
      'sessions by person, newest 100',
      (i) => ({ path: `/_audit/api/sessions?user=${user(i)}&limit=100` }),
      50,
    ],
    ['sessions by status (error)', () => ({ path: '/_audit/api/sessions?status=error&limit=100' }), 50],
    ['sessions by status, page 2 (cursor)', () => ({ path: page2 }), 50],
    ['sessions by model hash', () => ({ path: `/_audit/api/sessions?model=${modelSha}&limit=100` }), 50],
    [
      'sessions by prompt text',
      (i) => ({
        path: `/_audit/api/sessions?q=${encodeURIComponent(`picture #${number(pick(i).id)}`)}&limit=100`,
      }),
      50,
    ],
    ['run table by model hash', () => ({ path: `/_audit/api/runs?model=${modelSha}&limit=100` }), null],
    [
      'run table by prompt text',
      (i) => ({
        path: `/_audit/api/runs?q=${encodeURIComponent(`picture #${number(pick(i).id)}`)}&limit=100`,
      }),
      null,
    ],
    ['show (id without origin)', (i) => ({ path: `/_audit/api/sessions/${pick(i).id}` }), 50],
    ['trace by SHA-256', (i) => ({ path: `/_audit/api/trace?sha256=${hashPick(i)}` }), 10],
    [
      'trace by PNG prompt chunk',
      (i) => ({ path: '/_audit/api/trace', body: reencodedPng(pick(i).prompt, i) }),
      50,
    ],
  ]
  const api = await startApi(store)
  // Page 2 by the cursor page 1 gave (by offset where the API gives none).
  const first = '/_audit/api/sessions?status=success&limit=100'
  const next = ((await (await fetch(api.base + first)).json()) as { next_cursor?: string | null }).next_cursor
  const page2 = typeof next === 'string' ? `${first}&cursor=${next}` : `${first}&offset=100`
  const figures: Record<string, QueryFigure> = {}
  try {
    for (const [label, probe, goal] of set) {
      const times: number[] = []
      const cpu: number[] = []
      let rows = 0
      let misses = 0
      // A query that takes seconds (a scan) is run fewer times: 3 at least, then until 60 s are spent.
      const started = performance.now()
      for (let i = 0; i < repeat && (i < 3 || performance.now() - started < 60_000); i++) {
        const { path, body } = probe(i)
        const t0 = performance.now()
        const cpu0 = process.cpuUsage()
        const res = await fetch(api.base + path, body ? { method: 'POST', body } : {})
        const text = await res.text()
        times.push(performance.now() - t0)
        const used = process.cpuUsage(cpu0)
        cpu.push((used.user + used.system) / 1000)
        if (res.status !== 200 && res.status !== 404) throw new Error(`${label}: ${res.status} ${text}`)
        if (res.status === 404) misses++
        if (res.status === 200) rows += rowCount(JSON.parse(text) as JsonValue)
      }
      times.sort((a, b) => a - b)
      cpu.sort((a, b) => a - b)
      figures[label] = {
        cpu_p50_ms: round(percentile(cpu, 50), 2),
        cpu_p95_ms: round(percentile(cpu, 95), 2),
        p50_ms: round(percentile(times, 50), 2),
        p95_ms: round(percentile(times, 95), 2),
        max_ms: round(times[times.length - 1]!, 2),
        runs: times.length,
        rows,
        not_found: misses,
        goal_p95_ms: goal,
      }
      const f = figures[label]
      log(
        `${label.padEnd(36)} p50 ${String(f.p50_ms).padStart(9)} ms  p95 ${String(f.p95_ms).padStart(9)} ms  cpu p95 ${String(f.cpu_p95_ms).padStart(8)} ms  rows ${String(rows).padStart(6)}${misses ? `, ${misses} not found` : ''}` +
          (goal === null ? '' : `  (goal p95 < ${goal} ms)`),
      )
    }
  } finally {
    api.server.closeAllConnections()
    api.server.close()
  }
  return figures
}

/** One day's node runs read as the CLI's export reads them: rows per second and heap growth. */
export async function timeDayOfNodeRuns(
  store: RuntimeStore,
  history: GeneratedHistory,
): Promise<{ rows: number; rows_per_second: number; heap_growth_mb: number }> {
  const until = history.end
  const since = new Date(Date.parse(until) - DAY).toISOString()
  const heap0 = process.memoryUsage().heapUsed
  const t0 = performance.now()
  const rows = (await store.nodeRuns({ since, until })).length
  const seconds = (performance.now() - t0) / 1000
  const heap = process.memoryUsage().heapUsed - heap0
  return {
    rows,
    rows_per_second: Math.round(rows / Math.max(seconds, 1e-6)),
    heap_growth_mb: round(heap / 2 ** 20, 1),
  }
}

/** What `npm run bench` reports of the query set: a small SQLite store built and queried as bench:scale does. */
export interface ScaleQueryResult {
  readonly sessions: number
  readonly nodeRuns: number
  readonly queries: Record<string, QueryFigure>
}

export async function measureScaleQueries(options: {
  readonly sessions: number
  readonly repeat: number
  readonly dir: string
}): Promise<ScaleQueryResult> {
  const path = join(options.dir, 'scale.sqlite')
  const init = createRuntimeStore(createSqliteDialect({ path }), { origin: SCALE_ORIGIN })
  await init.init()
  await init.close()
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  let history: GeneratedHistory
  try {
    history = await loadScaleHistory(
      createBulkLoader(sqliteBulkConnection(db), SCALE_ORIGIN),
      options.sessions,
      90,
    )
    db.exec('ANALYZE')
  } finally {
    db.close()
  }
  const store = createRuntimeStore(createSqliteDialect({ path }), { origin: SCALE_ORIGIN })
  try {
    await store.init()
    return {
      sessions: history.sessions,
      nodeRuns: history.nodeRuns,
      queries: await timeQuerySet(store, history, options.repeat),
    }
  } finally {
    await store.close()
  }
}

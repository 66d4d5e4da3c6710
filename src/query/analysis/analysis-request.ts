/**
 * One reading of analysis parameters for the CLI and the HTTP API, so `comfy-audit stats --json` and
 * `GET /_audit/api/stats` give the same answer for the same question. Parameters are strings named as in
 * the HTTP query (`node_type`, `min_samples`); the CLI maps its flags to these names.
 */
import { SESSION_STATUSES, type SessionRecord, type SessionStatus } from '../../audit/types.js'
import { parseDurationMillis, parseTimeSpec } from '../../config/duration.js'
import {
  STATS_GROUPINGS,
  TREND_BUCKETS,
  USAGE_GROUPINGS,
  correlate,
  diffSessions,
  lastOfWorkflow,
  regressions,
  stats,
  suggest,
  trends,
  usage,
  type AnalysisFilter,
  type AnalysisStore,
  type CorrelateReport,
  type DiffReport,
  type RegressionsReport,
  type StatsGrouping,
  type StatsReport,
  type SuggestReport,
  type TrendBucket,
  type TrendsReport,
  type UsageGrouping,
  type UsageReport,
} from './analysis.js'

/** The analysis commands, also the HTTP route names under `/_audit/api/`. */
export const ANALYSIS_COMMANDS = [
  'stats',
  'usage',
  'trends',
  'regressions',
  'correlate',
  'diff',
  'suggest',
] as const
export type AnalysisCommand = (typeof ANALYSIS_COMMANDS)[number]

/** Each command's answer. */
export interface AnalysisAnswers {
  stats: StatsReport
  usage: UsageReport
  trends: TrendsReport
  regressions: RegressionsReport
  correlate: CorrelateReport
  diff: DiffReport
  suggest: SuggestReport
}

/** Parameters as strings (absent: undefined). */
export type AnalysisParams = Readonly<Record<string, string | undefined>>

/** An answer, or why the question was wrong (`status` 400) or asked about nothing there (404). */
type AnalysisResult<C extends AnalysisCommand> =
  { ok: true; value: AnalysisAnswers[C] } | { ok: false; status: 400 | 404; reason: string }

class BadParam extends Error {
  constructor(
    message: string,
    readonly status: 400 | 404 = 400,
  ) {
    super(message)
  }
}

function time(params: AnalysisParams, key: string, now: Date): string | undefined {
  const v = params[key]
  if (v === undefined) return undefined
  const r = parseTimeSpec(v, now)
  if (!r.ok) throw new BadParam(`${key}: ${r.reason}`)
  return r.value.toISOString()
}

function oneOf<T extends string>(params: AnalysisParams, key: string, allowed: readonly T[], fallback: T): T {
  const v = params[key]
  if (v === undefined) return fallback
  if (!(allowed as readonly string[]).includes(v)) {
    throw new BadParam(`${key}: ${JSON.stringify(v)} is not one of ${allowed.join(', ')}`)
  }
  return v as T
}

function duration(params: AnalysisParams, key: string, fallback: number): number {
  const v = params[key]
  if (v === undefined) return fallback
  const r = parseDurationMillis(v)
  if (!r.ok) throw new BadParam(`${key}: ${r.reason}`)
  if (r.value <= 0) throw new BadParam(`${key}: expected a duration above zero, got ${JSON.stringify(v)}`)
  return r.value
}

function count(params: AnalysisParams, key: string, fallback: number): number {
  const v = params[key]
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1)
    throw new BadParam(`${key}: expected a whole number of at least 1, got ${JSON.stringify(v)}`)
  return n
}

function required(params: AnalysisParams, key: string, command: string): string {
  const v = params[key]
  if (v === undefined || v === '') throw new BadParam(`${command}: ${key} is required`)
  return v
}

/** The filters every command takes. */
function analysisFilter(params: AnalysisParams, now: Date = new Date()): AnalysisFilter {
  const filter: { -readonly [K in keyof AnalysisFilter]: AnalysisFilter[K] } = {}
  const since = time(params, 'since', now)
  const until = time(params, 'until', now)
  if (since !== undefined) filter.since = since
  if (until !== undefined) filter.until = until
  if (since !== undefined && until !== undefined && since >= until) {
    throw new BadParam(`since (${since}) must be before until (${until})`)
  }
  for (const [param, field] of [
    ['node_type', 'nodeType'],
    ['user', 'user'],
    ['origin', 'origin'],
    ['model', 'model'],
    ['workflow', 'workflow'],
  ] as const) {
    const v = params[param]
    if (v !== undefined && v !== '') filter[field] = v
  }
  const status = params.status
  if (status !== undefined) {
    const list = status.split(',').map((s) => s.trim())
    const unknown = list.find((s) => !(SESSION_STATUSES as readonly string[]).includes(s))
    if (unknown !== undefined) {
      throw new BadParam(
        `status: unknown status ${JSON.stringify(unknown)} (one of ${SESSION_STATUSES.join(', ')})`,
      )
    }
    filter.status = list as SessionStatus[]
  }
  return filter
}

/** `width=1024,height=1024` as a record. */
function parseWhere(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (text === undefined || text.trim() === '') return out
  for (const part of text.split(',')) {
    const eq = part.indexOf('=')
    if (eq <= 0)
      throw new BadParam(`where: expected name=value pairs separated by commas, got ${JSON.stringify(part)}`)
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim()
  }
  return out
}

/** Runs one analysis command on the store. */
export async function runAnalysis<C extends AnalysisCommand>(
  store: AnalysisStore,
  command: C,
  params: AnalysisParams,
  now: Date = new Date(),
): Promise<AnalysisResult<C>> {
  try {
    const value = await answer(store, command, params, now)
    return { ok: true, value: value as AnalysisAnswers[C] }
  } catch (error) {
    if (error instanceof BadParam) return { ok: false, status: error.status, reason: error.message }
    throw error
  }
}

async function answer(
  store: AnalysisStore,
  command: AnalysisCommand,
  params: AnalysisParams,
  now: Date,
): Promise<AnalysisAnswers[AnalysisCommand]> {
  const filter = analysisFilter(params, now)
  switch (command) {
    case 'stats':
      return stats(store, filter, oneOf<StatsGrouping>(params, 'by', STATS_GROUPINGS, 'node_type'))
    case 'usage':
      return usage(store, filter, oneOf<UsageGrouping>(params, 'by', USAGE_GROUPINGS, 'user'))
    case 'trends': {
      const nodeType = required(params, 'node_type', 'trends')
      const bucket = oneOf<TrendBucket>(params, 'bucket', Object.keys(TREND_BUCKETS) as TrendBucket[], '1d')
      return trends(store, { ...filter, nodeType }, bucket)
    }
    case 'regressions':
      return regressions(store, filter, {
        baselineMillis: duration(params, 'baseline', 7 * 86_400_000),
        recentMillis: duration(params, 'recent', 86_400_000),
        minSamples: count(params, 'min_samples', 20),
        now: filter.until !== undefined ? new Date(filter.until) : now,
      })
    case 'correlate': {
      const nodeType = required(params, 'node_type', 'correlate')
      return correlate(store, { ...filter, nodeType }, params.factor)
    }
    case 'suggest': {
      const nodeType = required(params, 'node_type', 'suggest')
      return suggest(store, { ...filter, nodeType }, parseWhere(params.where))
    }
    case 'diff': {
      if (params.a !== undefined || params.b !== undefined) {
        const a = await findSession(store, required(params, 'a', 'diff'), params.origin, filter)
        const b = await findSession(store, required(params, 'b', 'diff'), params.origin, filter)
        return diffSessions(store, a, b)
      }
      if (filter.workflow === undefined) throw new BadParam('diff: give two sessions (a and b) or a workflow')
      const last = count(params, 'last', 2)
      if (last !== 2) throw new BadParam(`last: diff compares two sessions (last=2), got ${last}`)
      const pair = await lastOfWorkflow(store, { ...filter, workflow: filter.workflow }, 2)
      if (pair.length < 2) {
        throw new BadParam(
          `diff: workflow ${JSON.stringify(filter.workflow)} has ${pair.length} matching session(s), need 2`,
          404,
        )
      }
      return diffSessions(store, pair[0]!, pair[1]!)
    }
  }
}

async function findSession(
  store: AnalysisStore,
  id: string,
  origin: string | undefined,
  filter: AnalysisFilter,
): Promise<SessionRecord> {
  const s = await store.session(id, origin)
  // A session outside the filter (another person's, for an artist) is as absent as one never recorded.
  if (!s || (filter.user !== undefined && s.submitter?.user !== filter.user)) {
    throw new BadParam(
      `no session ${JSON.stringify(id)}${filter.user !== undefined ? ' among your runs' : ''}`,
      404,
    )
  }
  return s
}

/**
 * What `verify` compares the stored analysis rollups with: the rollups a replay of the log gives (hourly
 * workflow, usage and model usage buckets from its sessions and node runs; every daily table as the merge of
 * the replayed hourly rows), and the first difference, naming table, bucket and field.
 */
import type { SessionRecord } from '../audit/types.js'
import {
  computeUsageRollup,
  computeWorkflowRollup,
  hourOf,
  type AnalysisRollupFilter,
  type UsageKey,
  type UsageRollupRow,
  type WorkflowKey,
  type WorkflowRollupRow,
} from './analysis-rollups.js'
import {
  DAILY_SPECS,
  MODEL_DAILY,
  NODE_DAILY,
  USAGE_DAILY,
  WORKFLOW_DAILY,
  canonicalField,
  computeModelUsage,
  mergeDaily,
  type DailySpec,
  type ModelUsageSession,
} from './daily-rollups.js'
import type { RollupFilter, RollupRow } from './rollups.js'
import { sessionWorkflowId } from './sql-common.js'
import type { NodeRunRow } from './store.js'

/** What a replay of the log gives for both tables, from its sessions and node runs (for `verify`). */
export function replayAnalysisRollups(
  sessions: readonly SessionRecord[],
  runs: readonly NodeRunRow[],
): { workflow: WorkflowRollupRow[]; usage: UsageRollupRow[] } {
  const bySession = new Map<string, SessionRecord>()
  for (const s of sessions) bySession.set(JSON.stringify([s.origin, s.session_id]), s)
  const workflow = new Map<string, { key: WorkflowKey; durations: number[] }>()
  const perSession = new Map<string, { nodeRuns: number; gpuMs: number }>()
  for (const run of runs) {
    const sk = JSON.stringify([run.origin, run.session_id])
    let p = perSession.get(sk)
    if (!p) perSession.set(sk, (p = { nodeRuns: 0, gpuMs: 0 }))
    p.nodeRuns++
    if (run.status !== 'cached' && run.duration_ms !== null) p.gpuMs += run.duration_ms
    if (run.status !== 'success' || run.duration_ms === null) continue
    const hour = hourOf(run.timestamp_start)
    if (hour === undefined || hour === '') continue
    const session = bySession.get(sk)
    const key: WorkflowKey = [
      run.origin,
      run.node_type ?? '',
      session ? (sessionWorkflowId(session) ?? '') : '',
      hour,
    ]
    const k = JSON.stringify(key)
    let b = workflow.get(k)
    if (!b) workflow.set(k, (b = { key, durations: [] }))
    b.durations.push(run.duration_ms)
  }
  const usage = new Map<
    string,
    { key: UsageKey; sessions: { status: string; outputs: number; nodeRuns: number; gpuMs: number }[] }
  >()
  for (const s of sessions) {
    const hour = hourOf(s.queued_at)
    if (hour === undefined) continue
    const user = s.submitter && typeof s.submitter.user === 'string' ? s.submitter.user : ''
    const key: UsageKey = [s.origin, user, hour]
    const k = JSON.stringify(key)
    let b = usage.get(k)
    if (!b) usage.set(k, (b = { key, sessions: [] }))
    const p = perSession.get(JSON.stringify([s.origin, s.session_id])) ?? { nodeRuns: 0, gpuMs: 0 }
    b.sessions.push({ status: s.status, outputs: s.outputs.length, ...p })
  }
  return {
    workflow: [...workflow.values()].map((b) => computeWorkflowRollup(b.key, b.durations)),
    usage: [...usage.values()].map((b) => computeUsageRollup(b.key, b.sessions)),
  }
}

/** The first difference between replayed and stored analysis rollups, naming table, bucket and field. */
export function firstAnalysisRollupDifference(
  want: { workflow: readonly WorkflowRollupRow[]; usage: readonly UsageRollupRow[] },
  have: { workflow: readonly WorkflowRollupRow[]; usage: readonly UsageRollupRow[] },
): string | undefined {
  const tables = [
    [
      'workflow_rollups',
      (r: WorkflowRollupRow | UsageRollupRow): string => {
        const w = r as WorkflowRollupRow
        return `${w.origin} / ${w.node_type || '(no type)'} / ${w.workflow || '(no workflow)'} / ${w.hour}`
      },
      want.workflow,
      have.workflow,
    ],
    [
      'usage_rollups',
      (r: WorkflowRollupRow | UsageRollupRow): string => {
        const u = r as UsageRollupRow
        return `${u.origin} / ${u.user || '(no user)'} / ${u.hour || '(no queue time)'}`
      },
      want.usage,
      have.usage,
    ],
  ] as const
  for (const [table, keyOf, wantRows, haveRows] of tables) {
    const w = new Map<string, Record<string, unknown>>(wantRows.map((r) => [keyOf(r), { ...r }]))
    const h = new Map<string, Record<string, unknown>>(haveRows.map((r) => [keyOf(r), { ...r }]))
    for (const key of [...new Set([...w.keys(), ...h.keys()])].sort()) {
      const a = w.get(key)
      const b = h.get(key)
      if (!a) return `${table} row (${key}) is not produced by the log`
      if (!b) return `${table} row (${key}) is missing, though the log produces it`
      for (const field of Object.keys(a)) {
        const x = a[field]
        const y = b[field]
        const same =
          field === 'gpu_ms'
            ? Math.abs(Number(x) - Number(y)) <= 1e-9 * Math.max(1, Math.abs(Number(x)))
            : JSON.stringify(x) === JSON.stringify(y)
        if (!same) {
          return `${table} row (${key}) field ${field} is ${JSON.stringify(y).slice(0, 80)}, the log gives ${JSON.stringify(x).slice(0, 80)}`
        }
      }
    }
  }
  return undefined
}

/** The store reads the coarse comparison needs. */
export interface CoarseRollupReader {
  rollups(filter: RollupFilter): Promise<RollupRow[]>
  workflowRollups(filter: AnalysisRollupFilter): Promise<WorkflowRollupRow[]>
  usageRollups(filter: AnalysisRollupFilter): Promise<UsageRollupRow[]>
}

/** The model_usage_rollups rows a replay gives, as column records. */
function replayModelUsage(
  sessions: readonly SessionRecord[],
  runs: readonly NodeRunRow[],
): Record<string, unknown>[] {
  const perSession = new Map<string, { nodeRuns: number; gpuMs: number }>()
  for (const run of runs) {
    const k = JSON.stringify([run.origin, run.session_id])
    let p = perSession.get(k)
    if (!p) perSession.set(k, (p = { nodeRuns: 0, gpuMs: 0 }))
    p.nodeRuns++
    if (run.status !== 'cached' && run.duration_ms !== null) p.gpuMs += run.duration_ms
  }
  const hours = new Map<string, { origin: string; hour: string; sessions: ModelUsageSession[] }>()
  for (const s of sessions) {
    const hour = hourOf(s.queued_at)
    if (hour === undefined) continue
    const k = JSON.stringify([s.origin, hour])
    let h = hours.get(k)
    if (!h) hours.set(k, (h = { origin: s.origin, hour, sessions: [] }))
    const p = perSession.get(JSON.stringify([s.origin, s.session_id])) ?? { nodeRuns: 0, gpuMs: 0 }
    h.sessions.push({
      user: s.submitter && typeof s.submitter.user === 'string' ? s.submitter.user : '',
      status: s.status,
      outputs: s.outputs.length,
      models: s.models,
      ...p,
    })
  }
  return [...hours.values()].flatMap((h) => computeModelUsage(h.origin, h.hour, h.sessions))
}

const REAL_SUMS = new Set(['duration_sum_ms', 'gpu_ms'])

/** The first difference between replayed (`want`) and stored (`have`) rows of one table, as a sentence. */
function firstTableDifference(
  spec: DailySpec,
  table: string,
  time: 'hour' | 'day',
  want: readonly Record<string, unknown>[],
  have: readonly Record<string, unknown>[],
): string | undefined {
  const keyOf = (r: Record<string, unknown>): string =>
    [...spec.keys, ...spec.groups, time].map((c) => (r[c] === '' ? `(no ${c})` : String(r[c]))).join(' / ')
  const w = new Map(want.map((r) => [keyOf(r), r]))
  const h = new Map(have.map((r) => [keyOf(r), r]))
  for (const key of [...new Set([...w.keys(), ...h.keys()])].sort()) {
    const a = w.get(key)
    const b = h.get(key)
    if (!a) return `${table} row (${key}) is not produced by the log`
    if (!b) return `${table} row (${key}) is missing, though the log produces it`
    for (const c of [...spec.sums, ...spec.maxes, ...spec.sketches]) {
      const x = canonicalField(spec, c, a[c])
      const y = canonicalField(spec, c, b[c])
      // Sums of durations may differ in the last bits: floating-point addition depends on the order.
      const same = REAL_SUMS.has(c)
        ? Math.abs(Number(x) - Number(y)) <= 1e-9 * Math.max(1, Math.abs(Number(x)))
        : x === y
      if (!same)
        return `${table} row (${key}) field ${c} is ${y.slice(0, 80)}, the log gives ${x.slice(0, 80)}`
    }
  }
  return undefined
}

function records(rows: readonly object[]): Record<string, unknown>[] {
  return rows.map((r) => Object.fromEntries(Object.entries(r)))
}

function usageColumns(r: UsageRollupRow): Record<string, unknown> {
  return { ...r, submitter_user: r.user }
}

/**
 * The first difference between the model usage and daily rollups a replay gives and the stored ones of one
 * origin; `hourly` are the replayed hourly rows of the other tables (as verify computed them).
 */
export async function firstCoarseRollupDifference(
  store: CoarseRollupReader,
  origin: string,
  replay: { sessions: readonly SessionRecord[]; nodeRuns: readonly NodeRunRow[] },
  hourly: {
    node: readonly RollupRow[]
    workflow: readonly WorkflowRollupRow[]
    usage: readonly UsageRollupRow[]
  },
): Promise<string | undefined> {
  const models = replayModelUsage(replay.sessions, replay.nodeRuns)
  const storedModels = (await store.usageRollups({ origin, byModel: true })).map(usageColumns)
  const modelDiff = firstTableDifference(MODEL_DAILY, 'model_usage_rollups', 'hour', models, storedModels)
  if (modelDiff !== undefined) return modelDiff
  const replayedHourly = new Map<DailySpec, readonly Record<string, unknown>[]>([
    [NODE_DAILY, records(hourly.node)],
    [WORKFLOW_DAILY, records(hourly.workflow)],
    [USAGE_DAILY, hourly.usage.map(usageColumns)],
    [MODEL_DAILY, models],
  ])
  const stored = async (spec: DailySpec): Promise<Record<string, unknown>[]> => {
    const day = { origin, grain: 'day' as const }
    const rows: Record<string, unknown>[] =
      spec === NODE_DAILY
        ? records(await store.rollups(day))
        : spec === WORKFLOW_DAILY
          ? records(await store.workflowRollups(day))
          : (await store.usageRollups({ ...day, byModel: spec === MODEL_DAILY })).map(usageColumns)
    return rows.map((r) => ({ ...r, day: r.hour }))
  }
  for (const spec of DAILY_SPECS) {
    const want = mergeDaily(spec, replayedHourly.get(spec) ?? [])
    const diff = firstTableDifference(spec, spec.daily, 'day', want, await stored(spec))
    if (diff !== undefined) return diff
  }
  return undefined
}

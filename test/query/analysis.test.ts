/**
 * Issue 12: analysis over a generated history with planted effects, written through the store's own write
 * path, on SQLite and PostgreSQL. Each planted effect must be found with the right numbers, and a control
 * history without effects must report no regression and no correlation above noise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  correlate,
  MAX_SCATTER_POINTS,
  diffSessions,
  lastOfWorkflow,
  regressions,
  stats,
  suggest,
  trends,
  usage,
} from '../../src/query/analysis/analysis.js'
import { verifyLedger } from '../../src/ledger/verify-ledger.js'
import { SKETCH_RELATIVE_ERROR } from '../../src/store/log-sketch.js'
import { computeRollup, rollupKey, type RollupRow } from '../../src/store/rollups.js'
import { createPostgresDialect } from '../../src/store/postgres/postgres-dialect.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import type { StoreDialect } from '../../src/store/store.js'
import { PLANTED, generateHistory, type GeneratedHistory } from '../helpers/history-generator.js'
import { findPostgresBin, startPostgres, type PostgresCluster } from '../helpers/postgres.js'

const DAY = 86_400_000
// 600 prompts, 20 min apart on average: about 8.3 days from 2026-11-01; the slowdown starts on 2026-11-06.
const SLOW_AFTER = '2026-11-06T00:00:00Z'

let cluster: PostgresCluster | undefined

const dialects: [string, () => Promise<StoreDialect>][] = [
  ['sqlite', async () => createSqliteDialect({ path: ':memory:' })],
]
if (findPostgresBin()) {
  dialects.push([
    'postgres',
    async () => {
      cluster ??= await startPostgres()
      return createPostgresDialect({ url: await cluster.createDatabase() })
    },
  ])
}

afterAll(async () => {
  await cluster?.stop()
})

describe.each(dialects)('analysis on %s', (_name, makeDialect) => {
  let store: RuntimeStore
  let control: RuntimeStore
  let history: GeneratedHistory
  let controlHistory: GeneratedHistory

  beforeAll(async () => {
    store = createRuntimeStore(await makeDialect(), { origin: 'comfy-audit/planted' })
    control = createRuntimeStore(await makeDialect(), { origin: 'comfy-audit/control' })
    history = await generateHistory(store, {
      seed: 7,
      slowdown: { after: SLOW_AFTER, factor: PLANTED.slowFactor },
    })
    controlHistory = await generateHistory(control, { seed: 7, control: true })
  }, 120_000)

  afterAll(async () => {
    await store?.close()
    await control?.close()
  })

  it('finds the node type made 40% slower after a date, with its ratio and significance (regressions)', async () => {
    const now = new Date(history.end)
    const recentMillis = now.getTime() - Date.parse(SLOW_AFTER)
    const report = await regressions(
      store,
      {},
      { now, recentMillis, baselineMillis: 5 * DAY, minSamples: 20 },
    )
    const byType = report.regressions.filter((r) => r.workflow === null)
    expect(byType.map((r) => r.node_type)).toEqual([PLANTED.slowType])
    const found = byType[0]!
    expect(found.ratio).toBeGreaterThan(1.3)
    expect(found.ratio).toBeLessThan(1.5)
    expect(found.p_value).toBeLessThan(1e-6)
    expect(found.baseline.n).toBeGreaterThanOrEqual(20)
    expect(found.recent.n).toBeGreaterThanOrEqual(20)
    // Per workflow too: every workflow's CLIPTextEncode slowed down, and nothing else did.
    for (const r of report.regressions) expect(r.node_type).toBe(PLANTED.slowType)
    expect(report.regressions.filter((r) => r.workflow !== null).length).toBeGreaterThan(0)
  })

  it('reports nothing below the sample minimum', async () => {
    const now = new Date(history.end)
    const report = await regressions(
      store,
      {},
      {
        now,
        recentMillis: now.getTime() - Date.parse(SLOW_AFTER),
        baselineMillis: 5 * DAY,
        minSamples: 100_000,
      },
    )
    expect(report.regressions).toEqual([])
    expect(report.compared).toBe(0)
  })

  it('reports no regression on the control history', async () => {
    const now = new Date(controlHistory.end)
    for (const recentMillis of [DAY, 2 * DAY, now.getTime() - Date.parse(SLOW_AFTER)]) {
      const report = await regressions(control, {}, { now, recentMillis, baselineMillis: 5 * DAY })
      expect(report.compared).toBeGreaterThan(5)
      expect(report.regressions).toEqual([])
    }
  })

  it('shows the slowdown in the daily trend of that node type (trends)', async () => {
    const report = await trends(store, { nodeType: PLANTED.slowType }, '1d')
    const before = report.buckets.filter((b) => b.start < SLOW_AFTER)
    const after = report.buckets.filter((b) => b.start >= SLOW_AFTER)
    expect(before.length).toBeGreaterThan(3)
    expect(after.length).toBeGreaterThan(1)
    const mid = (list: typeof before): number => list.reduce((s, b) => s + (b.p50 ?? 0), 0) / list.length
    expect(mid(after) / mid(before)).toBeGreaterThan(1.3)
    expect(mid(after) / mid(before)).toBeLessThan(1.5)
    // Two prompts per run; failing runs stop at the LoRA before reaching them.
    const failed = history.loraRuns.filter((r) => r.status === 'error').length
    expect(report.buckets.reduce((s, b) => s + b.runs, 0)).toBe(2 * (history.sessions - failed))
  })

  it('finds VAE decode slowing as GPU memory nears the card total (correlate)', async () => {
    const report = await correlate(store, { nodeType: 'VAEDecode' }, 'gpu_memory_fraction')
    const f = report.factors[0]!
    expect(f.factor).toBe('gpu_memory_fraction')
    expect(f.rho).toBeGreaterThan(0.4)
    expect(f.p_value).toBeLessThan(1e-6)
    const bins = report.bins!.bins
    const first = bins[0]!
    const last = bins[bins.length - 1]!
    expect(last.from).toBeGreaterThan(0.8)
    // Flat (about 300 ms) below the knee; the top bin (fractions ~0.84-0.98) at least 1.5x that.
    for (const bin of bins.filter((x) => x.to < PLANTED.memoryKnee)) {
      expect(bin.p50!).toBeGreaterThan(270)
      expect(bin.p50!).toBeLessThan(330)
    }
    expect(last.p50! / first.p50!).toBeGreaterThan(1.5)
    // The scatter behind the bins: the same runs, in factor order, thinned only past the cap.
    const points = report.points!
    expect(points.factor).toBe('gpu_memory_fraction')
    expect(points.of).toBe(f.n)
    expect(points.points).toHaveLength(Math.min(f.n, MAX_SCATTER_POINTS))
    const xs = points.points.map((p) => p[0])
    expect(xs).toEqual([...xs].sort((a, b) => a - b))
    expect(xs[0]).toBeCloseTo(first.from, 3) // bin edges are rounded
    expect(xs.at(-1)).toBeCloseTo(last.to, 3)
  })

  it('finds KSampler time proportional to steps x pixels, ranked first of all factors (correlate)', async () => {
    const report = await correlate(store, { nodeType: 'KSampler' })
    expect(report.factors[0]!.factor).toBe('steps_x_pixels')
    expect(report.factors[0]!.rho).toBeGreaterThan(0.97)
    const names = report.factors.map((f) => f.factor)
    for (const name of ['pixels', 'steps', 'batch_size', 'gpu_memory_used', 'cfg'])
      expect(names).toContain(name)
    // Proportional: ms per step-megapixel is the planted constant in every bin.
    for (const bin of report.bins!.bins) {
      const middle = (bin.from + bin.to) / 2
      if (bin.to / bin.from > 1.2) continue // a wide bin's midpoint says little
      expect(bin.p50! / (middle / 1e6)).toBeGreaterThan(PLANTED.msPerStepMegapixel * 0.9)
      expect(bin.p50! / (middle / 1e6)).toBeLessThan(PLANTED.msPerStepMegapixel * 1.1)
    }
  })

  it('finds no correlation above noise on the control history', async () => {
    for (const nodeType of ['VAEDecode', 'KSampler', 'CLIPTextEncode']) {
      const report = await correlate(control, { nodeType })
      expect(report.factors.length).toBeGreaterThan(0)
      for (const f of report.factors) {
        expect(Math.abs(f.rho ?? 0), `${nodeType} ${f.factor}`).toBeLessThan(0.2)
        expect(f.p_value ?? 1, `${nodeType} ${f.factor}`).toBeGreaterThan(0.001)
      }
    }
  })

  it('finds the person with 10x the GPU-seconds (usage)', async () => {
    const report = await usage(store, {}, 'user')
    expect(report.groups[0]!.key).toEqual({ user: PLANTED.heavyUser })
    const heavy = report.groups[0]!
    const others = report.groups.slice(1)
    expect(others).toHaveLength(PLANTED.users.length - 1)
    const mean = others.reduce((s, g) => s + g.gpu_seconds, 0) / others.length
    expect(heavy.gpu_seconds / mean).toBeGreaterThan(8.5)
    expect(heavy.gpu_seconds / mean).toBeLessThan(11.5)
    expect(report.groups.reduce((s, g) => s + g.runs, 0)).toBe(history.sessions)
    expect(report.groups.reduce((s, g) => s + g.node_runs, 0)).toBe(history.nodeRuns)
    // Control: everyone about the same.
    const flat = (await usage(control, {}, 'user')).groups.map((g) => g.gpu_seconds)
    expect(Math.max(...flat) / Math.min(...flat)).toBeLessThan(1.5)
  })

  it('pins the failures on the workflow version whose LoRA changed (stats --by model, diff --workflow)', async () => {
    const byModel = await stats(store, { workflow: PLANTED.loraWorkflow, nodeType: 'LoraLoader' }, 'model')
    const bad = byModel.groups.find((g) => g.key.model === PLANTED.badLora)!
    const good = byModel.groups.find((g) => g.key.model === PLANTED.goodLora)!
    expect(bad.error_rate).toBe(1)
    expect(good.errors).toBe(0)
    expect(bad.runs).toBe(history.loraRuns.filter((r) => r.lora === PLANTED.badLora).length)
    // The last good run against the first failing one.
    const firstBad = history.loraRuns.findIndex((r) => r.status === 'error')
    const a = (await store.session(history.loraRuns[firstBad - 1]!.session_id))!
    const b = (await store.session(history.loraRuns[firstBad]!.session_id))!
    const diff = await diffSessions(store, a, b)
    expect(diff.models_changed).toEqual([
      {
        node_id: '2',
        input_name: 'lora_name',
        folder: 'loras',
        before: { name: PLANTED.goodLora, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
        after: { name: PLANTED.badLora, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
      },
    ])
    expect(diff.models_changed[0]!.before!.sha256).not.toBe(diff.models_changed[0]!.after!.sha256)
    expect(diff.seeds_changed).toHaveLength(1)
    expect(diff.nodes_added).toEqual([])
    const lora = diff.timing.find((t) => t.node_id === '2')!
    expect(lora.b!.status).toBe('error')
    expect(diff.timing.find((t) => t.node_id === '6')!.b).toBeNull()
    expect(diff.total_delta_ms).toBe(b.duration_ms! - a.duration_ms!)
    // --workflow W --last 2: the two newest runs of the workflow, oldest first.
    const last = await lastOfWorkflow(store, { workflow: PLANTED.loraWorkflow }, 2)
    expect(last.map((s) => s.session_id)).toEqual(history.loraRuns.slice(-2).map((r) => r.session_id))
  })

  it('shows links as links in inputs_changed', async () => {
    const [a, b] = await lastOfWorkflow(store, { workflow: 'wf-landscape' }, 2)
    const diff = await diffSessions(store, a!, b!)
    const text = diff.inputs_changed.find((c) => c.node_id === '3' && c.input === 'text')!
    expect(text.before).not.toEqual(text.after)
    expect(
      diff.inputs_changed.some(
        (c) => typeof c.before === 'object' && c.before !== null && 'node' in c.before,
      ),
    ).toBe(false)
  })

  it('summarizes node types with rates and percentiles (stats)', async () => {
    const report = await stats(store, {}, 'node_type')
    const ks = report.groups.find((g) => g.key.node_type === 'KSampler')!
    const runs = (await store.nodeRuns({ nodeType: 'KSampler' })).filter((r) => r.status === 'success')
    expect(ks.executed).toBe(runs.length)
    const sorted = runs.map((r) => r.duration_ms!).sort((x, y) => x - y)
    expect(ks.duration_ms.max).toBe(sorted[sorted.length - 1])
    const loader = report.groups.find((g) => g.key.node_type === 'CheckpointLoaderSimple')!
    expect(loader.cache_hit_rate).toBeGreaterThan(0.4)
    expect(loader.cache_hit_rate).toBeLessThan(0.7)
    const dana = await stats(store, { user: PLANTED.heavyUser }, 'user')
    expect(dana.groups.map((g) => g.key)).toEqual([{ user: PLANTED.heavyUser }])
  })

  it('reads rollups for long windows, their percentiles within 1% of the exact ones from raw rows', async () => {
    // Edges inside hours: the partial hours come from raw rows, the whole ones from rollups.
    const filter = { since: '2026-11-02T05:30:00Z', until: '2026-11-07T18:45:00Z' }
    const fromRollups = await stats(store, filter, 'node_type')
    const exact = await stats(store, filter, 'node_type', { exact: true })
    expect(fromRollups.source).toBe('rollups')
    expect(exact.source).toBe('node_runs')
    expect(fromRollups.groups.map((g) => [g.key, g.runs, g.executed, g.cached, g.errors])).toEqual(
      exact.groups.map((g) => [g.key, g.runs, g.executed, g.cached, g.errors]),
    )
    const runs = await store.nodeRuns(filter)
    const alpha = SKETCH_RELATIVE_ERROR
    for (const g of fromRollups.groups) {
      const e = exact.groups.find((x) => x.key.node_type === g.key.node_type)!
      expect(g.duration_ms.max).toBe(e.duration_ms.max)
      expect(Math.abs(g.duration_ms.mean! - e.duration_ms.mean!)).toBeLessThan(
        1e-6 * e.duration_ms.mean! + 0.001,
      )
      const sorted = runs
        .filter((r) => r.node_type === g.key.node_type && r.status !== 'cached' && r.duration_ms !== null)
        .map((r) => r.duration_ms!)
        .sort((a, b) => a - b)
      for (const [q, got] of [
        [0.5, g.duration_ms.p50],
        [0.95, g.duration_ms.p95],
        [0.99, g.duration_ms.p99],
      ] as const) {
        // The exact percentile lies between the order statistics around rank q(n-1); the sketch within 1% of them.
        const lo = sorted[Math.floor(q * (sorted.length - 1))]!
        const hi = sorted[Math.ceil(q * (sorted.length - 1))]!
        expect(got!, `${g.key.node_type} p${q * 100}`).toBeGreaterThanOrEqual(lo * (1 - alpha) - 0.001)
        expect(got!, `${g.key.node_type} p${q * 100}`).toBeLessThanOrEqual(hi * (1 + alpha) + 0.001)
      }
    }
    const trendRollups = await trends(store, { ...filter, nodeType: 'KSampler' }, '1d')
    const trendExact = await trends(store, { ...filter, nodeType: 'KSampler' }, '1d', { exact: true })
    expect(trendRollups.source).toBe('rollups')
    expect(trendRollups.buckets.map((b) => [b.start, b.runs, b.errors])).toEqual(
      trendExact.buckets.map((b) => [b.start, b.runs, b.errors]),
    )
    // Short windows and session filters read raw rows.
    expect(
      (await stats(store, { since: '2026-11-02T05:30:00Z', until: '2026-11-02T08:00:00Z' })).source,
    ).toBe('node_runs')
    expect((await stats(store, { user: 'ana' })).source).toBe('node_runs')
    // The origin is a rollup key; days come from the daily rollups, hours (`--by hour`) from the hourly ones.
    const origin = (await stats(store, filter, 'origin', { exact: true })).groups[0]!.key.origin!
    for (const by of ['day', 'hour', 'origin'] as const) {
      const f = { ...filter, origin }
      const got = await stats(store, f, by)
      const want = await stats(store, f, by, { exact: true })
      expect(got.source, by).toBe('rollups')
      const counts = (r: typeof got) => r.groups.map((g) => [g.key, g.runs, g.errors, g.duration_ms.max])
      expect(counts(got), by).toEqual(counts(want))
    }
  })

  it('keeps rollups equal to a computation over the rows: after every append and after a rebuild', async () => {
    const before = await store.rollups()
    expect(before.reduce((s, r) => s + r.runs, 0)).toBe(history.nodeRuns)
    // Recompute every bucket from the rows as the dialects do, and compare.
    const runs = await store.nodeRuns()
    const byKey = new Map<string, typeof runs>()
    for (const r of runs) {
      const k = JSON.stringify(rollupKey(r))
      byKey.set(k, [...(byKey.get(k) ?? []), r])
    }
    const expected = [...byKey.entries()].map(([k, list]) =>
      computeRollup(JSON.parse(k) as [string, string, string], list),
    )
    // Byte order, as both stores sort text.
    const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0)
    const order = (a: RollupRow, b: RollupRow): number =>
      cmp(a.hour, b.hour) || cmp(a.origin, b.origin) || cmp(a.node_type, b.node_type)
    expect(before).toEqual(expected.sort(order))
    await store.rebuildDerived()
    expect(await store.rollups()).toEqual(before)
  })

  it('verifies the generated store: rollups equal those a replay of the log gives', async () => {
    // No checkpoints were signed, so no key is needed; the derived tables and rollups are still compared.
    const report = await verifyLedger({ store, verifierKey: () => undefined })
    expect(report.problems).toEqual([])
    expect(report.ok).toBe(true)
  })

  it('reads usage from rollups for long windows, equal to the exact answer from raw rows', async () => {
    for (const filter of [
      {},
      { since: '2026-11-02T05:30:00Z', until: '2026-11-07T18:45:00Z' },
      { since: '2026-11-03T00:00:00Z', until: '2026-11-06T00:00:00Z', user: 'ana' },
    ]) {
      for (const by of ['user', 'day', 'origin', 'model'] as const) {
        const fromRollups = await usage(store, filter, by)
        const exact = await usage(store, filter, by, { exact: true })
        expect(fromRollups.source, `${JSON.stringify(filter)} ${by}`).toBe('rollups')
        expect(exact.source).toBe('node_runs')
        expect(exact.groups.length).toBeGreaterThan(0)
        // Sums of the same durations in another order: equal to the rounding of gpu_seconds.
        const shape = (r: typeof exact) =>
          r.groups.map((g) => ({ ...g, gpu_seconds: Math.round(g.gpu_seconds * 100) / 100 }))
        expect(shape(fromRollups), `${JSON.stringify(filter)} ${by}`).toEqual(shape(exact))
      }
    }
    // A node type or model filter and short windows read raw rows; grouping by model reads model_usage_rollups.
    expect((await usage(store, { nodeType: 'KSampler' })).source).toBe('node_runs')
    expect((await usage(store, { model: 'sd_xl_base_1.0.safetensors' }, 'model')).source).toBe('node_runs')
    expect((await usage(store, {}, 'model')).source).toBe('rollups')
    expect(
      (await usage(store, { since: '2026-11-02T05:30:00Z', until: '2026-11-02T08:00:00Z' })).source,
    ).toBe('node_runs')
  })

  it('reads regressions from rollups: the same findings as the exact samples, percentiles within 1%', async () => {
    const now = new Date(history.end)
    // The split and both window edges fall inside hours, so partial hours come from raw rows.
    const options = {
      now,
      recentMillis: now.getTime() - Date.parse('2026-11-06T00:17:00Z'),
      baselineMillis: 5 * DAY,
    }
    const fromRollups = await regressions(store, {}, options)
    const exact = await regressions(store, {}, { ...options, exact: true })
    expect(fromRollups.source).toBe('rollups')
    expect(exact.source).toBe('node_runs')
    expect(exact.regressions.length).toBeGreaterThan(1)
    expect(fromRollups.compared).toBe(exact.compared)
    const key = (r: { node_type: string | null; workflow: string | null }): string =>
      `${r.node_type}/${r.workflow}`
    expect(fromRollups.regressions.map(key).sort()).toEqual(exact.regressions.map(key).sort())
    const alpha = SKETCH_RELATIVE_ERROR
    for (const r of fromRollups.regressions) {
      const e = exact.regressions.find((x) => key(x) === key(r))!
      expect(r.baseline.n).toBe(e.baseline.n)
      expect(r.recent.n).toBe(e.recent.n)
      expect(r.p_value).toBeLessThan(1e-6)
      const runs = await store.nodeRuns({
        nodeType: r.node_type!,
        since: exact.baseline_window.since!,
        until: exact.recent_window.until!,
      })
      const sessions = new Map((await store.sessions()).map((x) => [x.session_id, x]))
      const durations = (from: string, to: string): number[] =>
        runs
          .filter(
            (x) =>
              x.status === 'success' &&
              x.timestamp_start >= from &&
              x.timestamp_start < to &&
              (r.workflow === null ||
                (sessions.get(x.session_id)?.workflow as { id?: string } | null)?.id === r.workflow),
          )
          .map((x) => x.duration_ms!)
          .sort((a, b) => a - b)
      for (const [side, sorted] of [
        [r.baseline, durations(exact.baseline_window.since!, exact.baseline_window.until!)],
        [r.recent, durations(exact.recent_window.since!, exact.recent_window.until!)],
      ] as const) {
        expect(sorted.length).toBe(side.n)
        for (const [q, got] of [
          [0.5, side.p50],
          [0.95, side.p95],
        ] as const) {
          const lo = sorted[Math.floor(q * (sorted.length - 1))]!
          const hi = sorted[Math.ceil(q * (sorted.length - 1))]!
          expect(got!, `${key(r)} p${q * 100}`).toBeGreaterThanOrEqual(lo * (1 - alpha) - 0.001)
          expect(got!, `${key(r)} p${q * 100}`).toBeLessThanOrEqual(hi * (1 + alpha) + 0.001)
        }
      }
    }
    // The control history: nothing, from rollups too.
    const cnow = new Date(controlHistory.end)
    const control1 = await regressions(
      control,
      {},
      { now: cnow, recentMillis: 2 * DAY, baselineMillis: 5 * DAY },
    )
    expect(control1.source).toBe('rollups')
    expect(control1.compared).toBeGreaterThan(5)
    expect(control1.regressions).toEqual([])
  })

  it('keeps the workflow and usage rollups equal after a rebuild', async () => {
    const workflow = await store.workflowRollups()
    const perUser = await store.usageRollups()
    expect(workflow.length).toBeGreaterThan(0)
    expect(perUser.reduce((n, r) => n + r.sessions, 0)).toBe(history.sessions)
    expect(perUser.reduce((n, r) => n + r.node_runs, 0)).toBe(history.nodeRuns)
    await store.rebuildDerived()
    expect(await store.workflowRollups()).toEqual(workflow)
    const sorted = (rows: typeof perUser) => rows.map((r) => ({ ...r, gpu_ms: Math.round(r.gpu_ms * 1000) }))
    expect(sorted(await store.usageRollups())).toEqual(sorted(perUser))
  })

  it('gives the settings that succeeded at 1024x1024, labelled as past statistics (suggest)', async () => {
    const report = await suggest(store, { nodeType: 'KSampler' }, { width: '1024', height: '1024' })
    expect(report.n).toBeGreaterThan(20)
    expect(report.note).toContain('past')
    const sampler = report.parameters.find((p) => p.name === 'sampler_name')!
    expect(sampler.kind).toBe('choice')
    if (sampler.kind !== 'choice') throw new Error('unreachable')
    expect(sampler.top.reduce((s, t) => s + t.count, 0)).toBe(report.n)
    // p50 at 1024x1024 follows the planted law for the steps that ran.
    const steps = report.parameters.find((p) => p.name === 'steps')!
    if (steps.kind !== 'choice') throw new Error('steps: expected choices')
    for (const t of steps.top) {
      if (t.count < 5) continue
      const batchOne = PLANTED.msPerStepMegapixel * Number(t.value) * 1.048576
      expect(t.p50_duration_ms!).toBeGreaterThan(batchOne * 0.9)
    }
    expect(report.parameters.find((p) => p.name === 'seed')).toBeUndefined()
    expect(report.combinations[0]!.count).toBeGreaterThan(0)
  })
})

import { describe, expect, it } from 'vitest'
import type { NodeRunRow } from '../../../src/query/dashboard-types.js'
import {
  correlationOption,
  ganttBars,
  ganttOption,
  ganttTooltip,
  gpuMemoryPoints,
  MIN_BAR_PX,
  renderGanttItem,
  STATUS_COLORS,
  timingPairsOption,
} from './run-charts.js'

function run(
  id: string,
  type: string,
  start: string,
  durationMs: number | null,
  extra: Partial<NodeRunRow> = {},
): NodeRunRow {
  const startMs = Date.parse(start)
  return {
    session_id: 's',
    node_id: id,
    node_type: type,
    timestamp_start: start,
    timestamp_end: durationMs === null ? null : new Date(startMs + durationMs).toISOString(),
    duration_ms: durationMs,
    inputs: {},
    outputs: null,
    status: 'success',
    error_message: null,
    gpu_memory_used: null,
    exception_type: null,
    traceback: null,
    gpu_memory_torch: null,
    display_node: null,
    real_node_id: null,
    parent_node_id: null,
    progress: null,
    previews: null,
    ...extra,
  }
}

const labels = {
  duration: 'Duration',
  status: 'Status',
  cached: 'cached',
  elapsed: 'elapsed',
  gpuMemory: 'GPU memory',
}

const runs = [
  run('3', 'KSampler', '2026-12-01T10:00:01.000Z', 900, {
    gpu_memory_used: 6100,
    inputs: { seed: 7, model: { node: '4', output: 0 } },
  }),
  run('4', 'CheckpointLoaderSimple', '2026-12-01T10:00:00.000Z', 0, { status: 'cached' }),
  run('8', 'VAEDecode', '2026-12-01T10:00:01.900Z', 120, { status: 'error', gpu_memory_used: 7000 }),
  run('10', 'SaveImage', '2026-12-01T10:00:01.900Z', null),
]

describe('Gantt option builder', () => {
  it('places one bar per node run in start order, lengths from the recorded durations', () => {
    const bars = ganttBars(runs)
    expect(bars.map((b) => [b.row, b.nodeId, b.startMs, b.endMs, b.durationMs])).toEqual([
      [0, '4', 0, 0, 0],
      [1, '3', 1000, 1900, 900],
      [2, '8', 1900, 2020, 120],
      // No duration and no end: a zero-length bar at its start.
      [3, '10', 1900, 1900, null],
    ])
  })

  it('marks cached and failed nodes in the series data', () => {
    const option = ganttOption(runs, labels)
    const series = option.series as {
      type: string
      data: { name: string; value: number[]; itemStyle: Record<string, unknown> }[]
    }[]
    expect(series[0]!.type).toBe('custom')
    expect(series[0]!.data).toHaveLength(4)
    const byName = Object.fromEntries(series[0]!.data.map((d) => [d.name, d]))
    expect(byName['4']!.itemStyle).toMatchObject({ color: STATUS_COLORS.cached, opacity: 0.6 })
    expect(byName['8']!.itemStyle).toMatchObject({ color: STATUS_COLORS.error, borderWidth: 2 })
    expect(byName['3']!.value).toEqual([1, 1000, 1900, 900])
  })

  it('adds the GPU memory line below the timeline only when memory was sampled', () => {
    expect(gpuMemoryPoints(ganttBars(runs), runs)).toEqual([
      [1900, 6100],
      [2020, 7000],
    ])
    const withMemory = ganttOption(runs, labels)
    expect((withMemory.series as unknown[]).length).toBe(2)
    expect((withMemory.grid as unknown[]).length).toBe(2)
    const without = ganttOption(
      runs.map((r) => ({ ...r, gpu_memory_used: null })),
      labels,
    )
    expect((without.series as unknown[]).length).toBe(1)
  })

  it('draws each bar between its start and end, never narrower than the minimum', () => {
    const api = (value: number[]) => ({
      value: (i: number) => value[i]!,
      coord: ([x, y]: number[]) => [x! / 10, y! * 20],
      size: () => [0, 20],
      style: () => ({ fill: 'red' }),
    })
    const call = (value: number[]) =>
      (renderGanttItem as unknown as (p: unknown, a: unknown) => { shape: Record<string, number> })(
        {},
        api(value),
      )
    expect(call([1, 1000, 1900]).shape).toEqual({ x: 100, y: 14, width: 90, height: 12 })
    expect(call([0, 0, 0]).shape.width).toBe(MIN_BAR_PX)
  })

  it('shows a node’s type, status, duration and inputs on hover, links as their source', () => {
    const bar = ganttBars(runs)[1]!
    expect(ganttTooltip(bar, labels).split('\n')).toEqual([
      '#3 KSampler',
      'Status: success',
      'Duration: 900 ms',
      'seed = 7',
      'model = ← #4[0]',
    ])
  })
})

describe('Compare timing bars', () => {
  it('pairs A and B per node, leaving out nodes neither timed', () => {
    const option = timingPairsOption(
      [
        {
          node_id: '3',
          node_type: 'KSampler',
          a: { status: 'success', duration_ms: 900 },
          b: { status: 'success', duration_ms: 1200 },
          delta_ms: 300,
        },
        {
          node_id: '9',
          node_type: 'SaveImage',
          a: null,
          b: { status: 'success', duration_ms: 50 },
          delta_ms: null,
        },
        { node_id: '4', node_type: 'X', a: { status: 'cached', duration_ms: null }, b: null, delta_ms: null },
      ],
      { a: 'A', b: 'B', duration: 'Duration' },
    )
    expect((option.yAxis as { data: string[] }).data).toEqual(['#3 KSampler', '#9 SaveImage'])
    expect((option.series as { data: number[] }[]).map((s) => s.data)).toEqual([
      [900, 0],
      [1200, 50],
    ])
  })
})

describe('correlationOption', () => {
  it('plots every run as a point and the bin medians as a line over them', () => {
    const report = {
      window: { since: null, until: null },
      node_type: 'VAEDecode',
      factors: [{ factor: 'gpu_memory_fraction', n: 4, rho: 0.8, p_value: 0.01 }],
      bins: {
        factor: 'gpu_memory_fraction',
        bins: [
          { from: 0.1, to: 0.2, n: 2, p50: 300, p95: 310 },
          { from: 0.8, to: 0.9, n: 2, p50: null, p95: null },
        ],
      },
      points: {
        factor: 'gpu_memory_fraction',
        of: 4,
        points: [
          [0.1, 290],
          [0.2, 310],
          [0.8, 600],
          [0.9, 700],
        ] as [number, number][],
      },
    }
    const option = correlationOption(report, { runs: 'Runs', p50: 'Median' })
    const series = option.series as { type: string; name: string; data: number[][] }[]
    expect(series.map((x) => [x.type, x.name])).toEqual([
      ['scatter', 'Runs'],
      ['line', 'Median'],
    ])
    expect(series[0]!.data).toEqual(report.points.points)
    // A bin without a median (no executed run) draws no point.
    expect(series[1]!.data).toEqual([[0.15000000000000002, 300, 2]])
    expect((option.xAxis as { name: string }).name).toBe('gpu_memory_fraction')
  })
})

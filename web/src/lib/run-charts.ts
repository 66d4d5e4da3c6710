/**
 * ECharts options for the dashboard's charts, built from API answers by pure functions (unit-tested without a
 * browser). Tooltips use ECharts' rich-text mode: it draws on the canvas, so no HTML with inline styles is
 * made, which the page's CSP would refuse.
 */
import type { CustomSeriesRenderItem, EChartsOption } from 'echarts'
import type {
  CorrelateReport,
  DiffReport,
  NodeRunRow,
  StatsGroup,
  TrendsReport,
  UsageGroup,
} from '../../../src/query/dashboard-types.js'
import { inputLink } from './run-detail.js'

/** Colours by node-run status; cached runs are pale, errors red. */
export const STATUS_COLORS: Readonly<Record<string, string>> = {
  success: '#4a7dff',
  cached: '#9aa4b8',
  error: '#e5484d',
  interrupted: '#f5a524',
}

/** Narrowest bar drawn, px: a cached node (start = end) still shows where it ran. */
export const MIN_BAR_PX = 3

/** One bar of the timeline: a node run placed on its row. */
export interface GanttBar {
  readonly row: number
  readonly nodeId: string
  readonly nodeType: string
  readonly status: string
  /** ms after the first node started. */
  readonly startMs: number
  readonly endMs: number
  /** As recorded (null when the run has no end). */
  readonly durationMs: number | null
  readonly inputs: Readonly<Record<string, unknown>>
}

/**
 * One bar per node run, one row each, in start order. The recorded `duration_ms` sets the bar's length (the
 * end timestamp only when the duration is missing), so the picture shows exactly what was measured.
 */
export function ganttBars(runs: readonly NodeRunRow[]): GanttBar[] {
  if (runs.length === 0) return []
  const sorted = [...runs].sort(
    (a, b) =>
      Date.parse(a.timestamp_start) - Date.parse(b.timestamp_start) ||
      a.node_id.localeCompare(b.node_id, undefined, { numeric: true }),
  )
  const t0 = Date.parse(sorted[0]!.timestamp_start)
  return sorted.map((r, row) => {
    const startMs = Date.parse(r.timestamp_start) - t0
    const endFromTimes = r.timestamp_end === null ? startMs : Date.parse(r.timestamp_end) - t0
    return {
      row,
      nodeId: r.node_id,
      nodeType: r.node_type ?? '?',
      status: r.status,
      startMs,
      endMs: r.duration_ms !== null ? startMs + r.duration_ms : endFromTimes,
      durationMs: r.duration_ms,
      inputs: r.inputs,
    }
  })
}

/** `#3 KSampler` */
export function rowLabel(bar: Pick<GanttBar, 'nodeId' | 'nodeType'>): string {
  return `#${bar.nodeId} ${bar.nodeType}`
}

function shortValue(v: unknown): string {
  const link = inputLink(v)
  if (link) return `← #${link.node}[${link.output}]`
  const text = typeof v === 'string' ? v : JSON.stringify(v)
  return text.length > 60 ? `${text.slice(0, 57)}…` : text
}

/** The hover text of a bar: type, status, duration and the first inputs. */
export function ganttTooltip(
  bar: GanttBar,
  labels: { duration: string; status: string; cached: string },
): string {
  const lines = [
    rowLabel(bar),
    `${labels.status}: ${bar.status === 'cached' ? labels.cached : bar.status}`,
    `${labels.duration}: ${bar.durationMs === null ? '-' : `${bar.durationMs} ms`}`,
  ]
  const entries = Object.entries(bar.inputs).slice(0, 8)
  for (const [k, v] of entries) lines.push(`${k} = ${shortValue(v)}`)
  if (Object.keys(bar.inputs).length > entries.length) lines.push('…')
  return lines.join('\n')
}

/** Draws one bar from `[row, start, end]`, at least {@link MIN_BAR_PX} wide. */
export const renderGanttItem: CustomSeriesRenderItem = (_params, api) => {
  const row = api.value(0) as number
  const from = api.coord([api.value(1), row]) as number[]
  const to = api.coord([api.value(2), row]) as number[]
  const height = (api.size?.([0, 1]) as number[])[1]! * 0.6
  return {
    type: 'rect',
    shape: { x: from[0]!, y: from[1]! - height / 2, width: Math.max(to[0]! - from[0]!, MIN_BAR_PX), height },
    style: api.style(),
  }
}

/** GPU memory (MiB) as sampled while each node ran, placed at the node's end. */
export function gpuMemoryPoints(bars: readonly GanttBar[], runs: readonly NodeRunRow[]): [number, number][] {
  const byId = new Map(runs.map((r) => [r.node_id, r]))
  const points: [number, number][] = []
  for (const b of bars) {
    const used = byId.get(b.nodeId)?.gpu_memory_used
    if (typeof used === 'number') points.push([b.endMs, used])
  }
  return points.sort((a, b) => a[0] - b[0])
}

/** Labels the charts show, in the viewer's language. */
export interface ChartLabels {
  readonly duration: string
  readonly status: string
  readonly cached: string
  readonly elapsed: string
  readonly gpuMemory: string
}

/** The Run page's timeline: a `custom` series of node bars, with GPU memory as a line in a grid below. */
export function ganttOption(runs: readonly NodeRunRow[], labels: ChartLabels): EChartsOption {
  const bars = ganttBars(runs)
  const span = Math.max(1, ...bars.map((b) => b.endMs))
  const memory = gpuMemoryPoints(bars, runs)
  return {
    animation: false,
    aria: { enabled: true },
    tooltip: {
      renderMode: 'richText',
      formatter: (p) => {
        const params = p as { seriesIndex?: number; dataIndex: number; value?: unknown }
        if (params.seriesIndex === 1) {
          const v = params.value as [number, number]
          return `${labels.gpuMemory}: ${v[1]} MiB`
        }
        const bar = bars[params.dataIndex]
        return bar ? ganttTooltip(bar, labels) : ''
      },
    },
    grid: [
      { left: 180, right: 24, top: 12, bottom: memory.length ? 120 : 36 },
      ...(memory.length ? [{ left: 180, right: 24, height: 64, bottom: 28 }] : []),
    ],
    xAxis: [
      {
        type: 'value',
        min: 0,
        max: span,
        gridIndex: 0,
        name: labels.elapsed,
        axisLabel: { formatter: '{value} ms' },
      },
      ...(memory.length
        ? [{ type: 'value' as const, min: 0, max: span, gridIndex: 1, axisLabel: { show: false } }]
        : []),
    ],
    yAxis: [
      {
        type: 'category',
        gridIndex: 0,
        inverse: true,
        data: bars.map(rowLabel),
        axisLabel: { width: 160, overflow: 'truncate' },
      },
      ...(memory.length ? [{ type: 'value' as const, gridIndex: 1, name: 'MiB', splitNumber: 2 }] : []),
    ],
    series: [
      {
        type: 'custom',
        name: 'nodes',
        renderItem: renderGanttItem,
        encode: { x: [1, 2], y: 0 },
        clip: true,
        data: bars.map((b) => ({
          name: b.nodeId,
          value: [b.row, b.startMs, b.endMs, b.durationMs ?? 0],
          itemStyle: {
            color: STATUS_COLORS[b.status] ?? '#888',
            ...(b.status === 'cached' ? { opacity: 0.6 } : {}),
            ...(b.status === 'error' ? { borderColor: '#8b0000', borderWidth: 2 } : {}),
          },
        })),
      },
      ...(memory.length
        ? [
            {
              type: 'line' as const,
              name: labels.gpuMemory,
              xAxisIndex: 1,
              yAxisIndex: 1,
              step: 'end' as const,
              showSymbol: true,
              data: memory,
            },
          ]
        : []),
    ],
  }
}

/** Compare: per-node durations of run A and B as paired horizontal bars, nodes present in either. */
export function timingPairsOption(
  timing: DiffReport['timing'],
  labels: { a: string; b: string; duration: string },
): EChartsOption {
  const rows = timing.filter((t) => t.a?.duration_ms != null || t.b?.duration_ms != null)
  return {
    animation: false,
    aria: { enabled: true },
    tooltip: { trigger: 'axis', renderMode: 'richText' },
    legend: { top: 0, data: [labels.a, labels.b] },
    grid: { left: 180, right: 24, top: 32, bottom: 32 },
    xAxis: { type: 'value', name: labels.duration, axisLabel: { formatter: '{value} ms' } },
    yAxis: {
      type: 'category',
      inverse: true,
      data: rows.map((t) => `#${t.node_id} ${t.node_type ?? '?'}`),
      axisLabel: { width: 160, overflow: 'truncate' },
    },
    series: [
      { type: 'bar', name: labels.a, data: rows.map((t) => t.a?.duration_ms ?? 0) },
      { type: 'bar', name: labels.b, data: rows.map((t) => t.b?.duration_ms ?? 0) },
    ],
  }
}

/** Performance: p50/p95/p99 per node type, slowest p95 first. */
export function percentilesOption(
  groups: readonly StatsGroup[],
  labels: { duration: string },
): EChartsOption {
  const rows = [...groups]
    .filter((g) => g.duration_ms.p50 !== null)
    .sort((a, b) => (b.duration_ms.p95 ?? 0) - (a.duration_ms.p95 ?? 0))
  const name = (g: StatsGroup): string => String(Object.values(g.key)[0] ?? '?')
  return {
    animation: false,
    aria: { enabled: true },
    tooltip: { trigger: 'axis', renderMode: 'richText' },
    legend: { top: 0, data: ['p50', 'p95', 'p99'] },
    grid: { left: 180, right: 24, top: 32, bottom: 32 },
    xAxis: { type: 'value', name: labels.duration, axisLabel: { formatter: '{value} ms' } },
    yAxis: {
      type: 'category',
      inverse: true,
      data: rows.map(name),
      axisLabel: { width: 160, overflow: 'truncate' },
    },
    series: (['p50', 'p95', 'p99'] as const).map((p) => ({
      type: 'bar' as const,
      name: p,
      data: rows.map((g) => g.duration_ms[p] ?? 0),
    })),
  }
}

/** Performance: a node type's p50 and p95 per time bucket. */
export function trendOption(report: TrendsReport, formatTime: (iso: string) => string): EChartsOption {
  return {
    animation: false,
    aria: { enabled: true },
    tooltip: { trigger: 'axis', renderMode: 'richText' },
    legend: { top: 0, data: ['p50', 'p95'] },
    grid: { left: 64, right: 24, top: 32, bottom: 48 },
    xAxis: { type: 'category', data: report.buckets.map((b) => formatTime(b.start)) },
    yAxis: { type: 'value', axisLabel: { formatter: '{value} ms' } },
    series: (['p50', 'p95'] as const).map((p) => ({
      type: 'line' as const,
      name: p,
      connectNulls: true,
      data: report.buckets.map((b) => b[p]),
    })),
  }
}

/** Performance: duration by bins of the strongest factor (or the one asked for). */
export function correlationOption(
  report: CorrelateReport,
  labels: { runs: string; p50: string } = { runs: 'runs', p50: 'p50' },
): EChartsOption {
  const bins = report.bins?.bins ?? []
  const points = report.points?.points ?? []
  return {
    animation: false,
    aria: { enabled: true },
    tooltip: { trigger: 'item', renderMode: 'richText' },
    legend: { top: 0, data: [labels.runs, labels.p50] },
    grid: { left: 64, right: 24, top: 32, bottom: 48 },
    xAxis: { type: 'value', name: report.bins?.factor ?? '', scale: true },
    yAxis: { type: 'value', name: 'ms', scale: true },
    series: [
      // Every run (or an even sample past the API's cap): duration against the factor.
      {
        type: 'scatter',
        name: labels.runs,
        // Light enough to read on the dark page; translucent so that piled-up runs show as denser.
        symbolSize: 6,
        itemStyle: { color: '#8fb4ff', opacity: 0.6 },
        large: points.length > 2000,
        data: points.map(([x, y]) => [x, y]),
      },
      // The median of each equal-count bin, drawn over the cloud: the trend the rank correlation measures.
      {
        type: 'line',
        name: labels.p50,
        symbolSize: 8,
        data: bins.filter((b) => b.p50 !== null).map((b) => [(b.from + b.to) / 2, b.p50!, b.n]),
      },
    ],
  }
}

/** Usage: GPU-seconds and errors per group (person or day). */
export function usageOption(
  groups: readonly UsageGroup[],
  labels: { gpuSeconds: string; runs: string; errors: string },
): EChartsOption {
  const name = (g: UsageGroup): string => String(Object.values(g.key)[0] ?? '?')
  return {
    animation: false,
    aria: { enabled: true },
    tooltip: { trigger: 'axis', renderMode: 'richText' },
    legend: { top: 0, data: [labels.gpuSeconds, labels.runs, labels.errors] },
    grid: { left: 64, right: 64, top: 32, bottom: 48 },
    xAxis: { type: 'category', data: groups.map(name) },
    yAxis: [
      { type: 'value', name: labels.gpuSeconds },
      { type: 'value', name: labels.runs },
    ],
    series: [
      { type: 'bar', name: labels.gpuSeconds, data: groups.map((g) => Math.round(g.gpu_seconds * 10) / 10) },
      { type: 'line', name: labels.runs, yAxisIndex: 1, data: groups.map((g) => g.runs) },
      { type: 'line', name: labels.errors, yAxisIndex: 1, data: groups.map((g) => g.errors) },
    ],
  }
}

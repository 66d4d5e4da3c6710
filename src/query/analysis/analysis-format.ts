/** Terminal text for the analysis answers (the JSON form is the answer object itself). */
import { stringifyJson } from '../../audit/json.js'
import type { JsonValue } from '../../audit/types.js'
import type { AnalysisAnswers, AnalysisCommand } from './analysis-request.js'

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-'
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 1 ? 3 : 1)
  if (typeof v === 'string') return v
  return stringifyJson(v as JsonValue)
}

/** A plain text table: header, then rows, columns padded to their widest cell. */
function textTable(header: readonly string[], rows: readonly (readonly unknown[])[]): string {
  const cells = [header.map(String), ...rows.map((r) => r.map(cell))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)))
  return (
    cells
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  )
}

function keyText(key: Record<string, string | null>): string {
  return Object.values(key)
    .map((v) => v ?? '-')
    .join(' ')
}

/** The text form of one answer. */
export function formatAnalysis<C extends AnalysisCommand>(command: C, answer: AnalysisAnswers[C]): string {
  switch (command) {
    case 'stats':
      return formatStats(answer as AnalysisAnswers['stats'])
    case 'usage':
      return formatUsage(answer as AnalysisAnswers['usage'])
    case 'trends':
      return formatTrends(answer as AnalysisAnswers['trends'])
    case 'regressions':
      return formatRegressions(answer as AnalysisAnswers['regressions'])
    case 'correlate':
      return formatCorrelate(answer as AnalysisAnswers['correlate'])
    case 'diff':
      return formatDiff(answer as AnalysisAnswers['diff'])
    case 'suggest':
      return formatSuggest(answer as AnalysisAnswers['suggest'])
  }
  return ''
}

function formatStats(r: AnalysisAnswers['stats']): string {
  return textTable(
    [r.by, 'runs', 'exec', 'cached', 'errors', 'err%', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'gpu p95 MiB'],
    r.groups.map((g) => [
      keyText(g.key),
      g.runs,
      g.executed,
      g.cached,
      g.errors,
      (g.error_rate * 100).toFixed(1),
      g.duration_ms.p50,
      g.duration_ms.p95,
      g.duration_ms.p99,
      g.duration_ms.max,
      g.gpu_memory_used.p95,
    ]),
  )
}

function formatUsage(r: AnalysisAnswers['usage']): string {
  return textTable(
    [r.by, 'runs', 'successes', 'errors', 'gpu s', 'node runs', 'outputs'],
    r.groups.map((g) => [
      keyText(g.key),
      g.runs,
      g.successes,
      g.errors,
      g.gpu_seconds,
      g.node_runs,
      g.outputs,
    ]),
  )
}

function formatTrends(r: AnalysisAnswers['trends']): string {
  return (
    `${r.node_type} per ${r.bucket}\n` +
    textTable(
      ['start', 'runs', 'p50 ms', 'p95 ms', 'errors'],
      r.buckets.map((b) => [b.start, b.runs, b.p50, b.p95, b.errors]),
    )
  )
}

function formatRegressions(r: AnalysisAnswers['regressions']): string {
  const head =
    `baseline ${r.baseline_window.since} .. ${r.baseline_window.until}, recent .. ${r.recent_window.until}; ` +
    `${r.compared} groups with >= ${r.min_samples} runs each compared (p < ${r.alpha}, ratio >= ${r.min_ratio})\n`
  if (r.regressions.length === 0) return head + 'no regressions\n'
  return (
    head +
    textTable(
      ['node type', 'workflow', 'base n', 'base p50', 'recent n', 'recent p50', 'recent p95', 'ratio', 'p'],
      r.regressions.map((x) => [
        x.node_type,
        x.workflow ?? '(all)',
        x.baseline.n,
        x.baseline.p50,
        x.recent.n,
        x.recent.p50,
        x.recent.p95,
        x.ratio,
        x.p_value.toExponential(1),
      ]),
    )
  )
}

function formatCorrelate(r: AnalysisAnswers['correlate']): string {
  let text =
    `${r.node_type}: Spearman correlation of duration with each factor\n` +
    textTable(
      ['factor', 'n', 'rho', 'p'],
      r.factors.map((f) => [f.factor, f.n, f.rho, f.p_value === null ? null : f.p_value.toExponential(1)]),
    )
  if (r.bins) {
    text +=
      `\nduration by ${r.bins.factor}\n` +
      textTable(
        ['from', 'to', 'n', 'p50 ms', 'p95 ms'],
        r.bins.bins.map((b) => [b.from, b.to, b.n, b.p50, b.p95]),
      )
  }
  return text
}

function formatDiff(r: AnalysisAnswers['diff']): string {
  const lines = [`A ${r.a.session_id} (${r.a.status})  B ${r.b.session_id} (${r.b.status})`]
  for (const n of r.nodes_added) lines.push(`+ node ${n.node_id} ${n.node_type ?? ''}`)
  for (const n of r.nodes_removed) lines.push(`- node ${n.node_id} ${n.node_type ?? ''}`)
  for (const c of r.inputs_changed)
    lines.push(`~ ${c.node_id} ${c.node_type ?? ''}.${c.input}: ${cell(c.before)} -> ${cell(c.after)}`)
  for (const m of r.models_changed) {
    const side = (x: typeof m.before): string =>
      x ? `${x.name} (${x.sha256?.slice(0, 10) ?? 'unhashed'})` : '-'
    lines.push(`~ model ${m.node_id}.${m.input_name}: ${side(m.before)} -> ${side(m.after)}`)
  }
  for (const s of r.seeds_changed)
    lines.push(`~ seed ${s.node_id}.${s.input_name}: ${cell(s.before)} -> ${cell(s.after)}`)
  return (
    lines.join('\n') +
    '\n\n' +
    textTable(
      ['node', 'type', 'A status', 'A ms', 'B status', 'B ms', 'delta ms'],
      r.timing.map((t) => [
        t.node_id,
        t.node_type,
        t.a?.status,
        t.a?.duration_ms,
        t.b?.status,
        t.b?.duration_ms,
        t.delta_ms,
      ]),
    ) +
    `total delta: ${cell(r.total_delta_ms)} ms\n`
  )
}

function formatSuggest(r: AnalysisAnswers['suggest']): string {
  const lines = [`${r.node_type}: ${r.note} (n=${r.n} of ${r.runs} matching runs)`]
  for (const p of r.parameters) {
    if (p.kind === 'number')
      lines.push(`${p.name}: p10 ${cell(p.p10)}  p50 ${cell(p.p50)}  p90 ${cell(p.p90)}  (n=${p.n})`)
    else
      lines.push(
        `${p.name}: ` +
          p.top
            .map(
              (t) =>
                `${cell(t.value)} ${(t.share * 100).toFixed(0)}% (ok ${(t.success_rate * 100).toFixed(0)}%, p50 ${cell(t.p50_duration_ms)} ms)`,
            )
            .join(', '),
      )
  }
  lines.push('most common combinations:')
  for (const c of r.combinations)
    lines.push(
      `  ${c.count}x (${(c.share * 100).toFixed(0)}%, p50 ${cell(c.p50_duration_ms)} ms) ${stringifyJson(c.values)}`,
    )
  return lines.join('\n') + '\n'
}

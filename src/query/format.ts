import { stringifyJson } from '../audit/json.js'
import { asJsonValue } from '../audit/json-value.js'
import { formatDuration } from './format-duration.js'
import {
  RECORD_SCHEMA_VERSION,
  type JsonValue,
  type NodeRunRecord,
  type OutputRecord,
  type SessionRecord,
} from '../audit/types.js'

/** Columns of `export --table sessions`, in order. */
export const SESSION_EXPORT_FIELDS = [
  'origin',
  'session_id',
  'status',
  'http_status',
  'user',
  'auth_method',
  'client_address',
  'user_agent',
  'client_id',
  'number',
  'queued_at',
  'started_at',
  'ended_at',
  'duration_ms',
  'prompt_sha256',
  'workflow_sha256',
  'models',
  'seeds',
  'outputs',
  'error',
  'status_reason',
  'flags',
  'extra_data',
  'environment',
  'schema_version',
] as const

/** Columns of `export --table node_runs`: the seed's field names first, then the extras. */
export const NODE_RUN_EXPORT_FIELDS = [
  'session_id',
  'node_id',
  'node_type',
  'timestamp_start',
  'timestamp_end',
  'duration_ms',
  'inputs',
  'outputs',
  'status',
  'error_message',
  'gpu_memory_used',
  'exception_type',
  'traceback',
  'gpu_memory_torch',
  'display_node',
  'real_node_id',
  'parent_node_id',
  'progress',
  'previews',
  'schema_version',
] as const

/** Columns of `export --table outputs`, in order: the output record's fields. */
export const OUTPUT_EXPORT_FIELDS = [
  'origin',
  'session_id',
  'node_id',
  'type',
  'subfolder',
  'filename',
  'sha256',
  'bytes',
  'width',
  'height',
  'time',
  'schema_version',
] as const

/** One output file as an export row. */
export function outputExportRow(o: OutputRecord): Record<string, JsonValue> {
  const row: Record<string, JsonValue> = {}
  for (const field of OUTPUT_EXPORT_FIELDS)
    row[field] = field === 'schema_version' ? RECORD_SCHEMA_VERSION : (o[field] ?? null)
  return row
}

/** One session as an export row (flat fields, nested values kept as JSON values). */
export function sessionExportRow(s: SessionRecord): Record<string, JsonValue> {
  return {
    origin: s.origin,
    session_id: s.session_id,
    status: s.status,
    http_status: s.http_status,
    user: s.submitter?.user ?? null,
    auth_method: s.submitter?.auth_method ?? null,
    client_address: s.submitter?.client_address ?? null,
    user_agent: s.submitter?.user_agent ?? null,
    client_id: s.client_id ?? s.submitter?.client_id ?? null,
    number: s.number,
    queued_at: s.queued_at,
    started_at: s.started_at,
    ended_at: s.ended_at,
    duration_ms: s.duration_ms,
    prompt_sha256: s.prompt_sha256,
    workflow_sha256: s.workflow_sha256,
    models: asJsonValue(s.models),
    seeds: asJsonValue(s.seeds),
    outputs: asJsonValue(s.outputs),
    error: s.error,
    status_reason: s.status_reason,
    flags: s.flags,
    extra_data: s.extra_data,
    environment: asJsonValue(s.environment),
    schema_version: RECORD_SCHEMA_VERSION,
  }
}

/** One node run as an export row, under exactly the seed's field names. */
export function nodeRunExportRow(r: NodeRunRecord): Record<string, JsonValue> {
  const row: Record<string, JsonValue> = {}
  for (const field of NODE_RUN_EXPORT_FIELDS)
    row[field] = field === 'schema_version' ? RECORD_SCHEMA_VERSION : ((r[field] ?? null) as JsonValue)
  return row
}

/**
 * A JSON line in the record format: standard JSON, big integers keep their digits, numbers keep ComfyUI's
 * spelling, NaN/Infinity as `{"$float": "NaN"}` (read back with `parseJson(line, { tagged: true })`).
 */
export function jsonLine(row: Record<string, JsonValue>): string {
  return stringifyJson(row, { tagged: true }) + '\n'
}

function csvCell(value: JsonValue): string {
  if (value === null || value === undefined) return ''
  const text =
    typeof value === 'string'
      ? value
      : typeof value === 'object'
        ? stringifyJson(value, { tagged: true })
        : String(value)
  return /[",\r\n]/.test(text) || /^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** RFC 4180 CSV: a header line, then rows; nested values as JSON text. */
export function csvHeader(fields: readonly string[]): string {
  return fields.join(',') + '\r\n'
}
export function csvRow(fields: readonly string[], row: Record<string, JsonValue>): string {
  return fields.map((f) => csvCell(row[f] ?? null)).join(',') + '\r\n'
}

function pad(text: string, width: number): string {
  return text.length >= width ? text.slice(0, width) : text + ' '.repeat(width - text.length)
}
function padStart(text: string, width: number): string {
  return text.length >= width ? text : ' '.repeat(width - text.length) + text
}

/** The `sessions` table for a terminal. */
export function formatSessionsTable(sessions: readonly SessionRecord[]): string {
  if (sessions.length === 0) return 'no sessions\n'
  const lines = [
    `${pad('SESSION', 38)} ${pad('STATUS', 11)} ${pad('USER', 12)} ${pad('QUEUED (UTC)', 24)} ${padStart('DURATION', 10)}  NODES/ERROR`,
  ]
  for (const s of sessions) {
    const err =
      s.error && typeof s.error === 'object' && !Array.isArray(s.error)
        ? String((s.error as Record<string, JsonValue>).exception_message ?? '').trim()
        : s.status === 'rejected' &&
            s.validation &&
            typeof s.validation === 'object' &&
            !Array.isArray(s.validation)
          ? String(
              ((s.validation as Record<string, JsonValue>).error as Record<string, JsonValue> | null)?.type ??
                '',
            )
          : ''
    lines.push(
      `${pad(s.session_id, 38)} ${pad(s.status + (s.flags.includes('bypass') ? '*' : ''), 11)} ${pad(s.submitter?.user ?? '-', 12)} ${pad(s.queued_at ?? '-', 24)} ${padStart(formatDuration(s.duration_ms), 10)}  ${err.split('\n')[0]!.slice(0, 60)}`,
    )
  }
  return lines.join('\n') + '\n'
}

/** A readable per-node timeline of one session. */
export function formatSessionTimeline(s: SessionRecord, runs: readonly NodeRunRecord[], width = 30): string {
  const out: string[] = []
  out.push(`session   ${s.session_id}  (${s.origin})`)
  out.push(
    `status    ${s.status}${s.http_status ? `  HTTP ${s.http_status}` : ''}${s.status_reason ? `  — ${s.status_reason}` : ''}${s.flags.length ? `  [${s.flags.join(', ')}]` : ''}`,
  )
  if (s.submitter) {
    const who = s.submitter
    out.push(
      `submitter ${who.user} (${who.auth_method})  from ${who.client_address ?? '?'}  ${who.user_agent ? `"${who.user_agent}"` : ''}`.trimEnd(),
    )
  }
  out.push(
    `times     queued ${s.queued_at ?? '-'}  started ${s.started_at ?? '-'}  ended ${s.ended_at ?? '-'}  (${formatDuration(s.duration_ms)})`,
  )
  if (s.environment) {
    const e = s.environment
    out.push(
      `env       ComfyUI ${e.comfyui_version ?? '?'}  PyTorch ${e.pytorch_version ?? '?'}  Python ${e.python_version?.split(' ')[0] ?? '?'}${e.os ? `  ${e.os}` : ''}${e.embedded_python ? ' (embedded Python)' : ''}`,
    )
    const devices = e.devices ?? (e.gpu_name ? [{ name: e.gpu_name, vram_total_mib: e.vram_total_mib }] : [])
    for (const d of devices)
      out.push(`device    ${d.name}${d.vram_total_mib ? `  ${d.vram_total_mib} MiB` : ''}`)
    if (e.ram_total_mib) out.push(`ram       ${e.ram_total_mib} MiB`)
    if (e.custom_node_packs.length > 0) out.push(`packs     ${e.custom_node_packs.join(', ')}`)
  }
  for (const m of s.models) {
    out.push(`model     ${m.folder}/${m.name}  ${m.sha256 ? `sha256 ${m.sha256}` : '(not hashed)'}`)
  }
  for (const seed of s.seeds)
    out.push(`seed      node ${seed.node_id}.${seed.input_name} = ${stringifyJson(seed.value)}`)
  if (s.error && typeof s.error === 'object' && !Array.isArray(s.error)) {
    const e = s.error as Record<string, JsonValue>
    out.push(
      `error     node ${String(e.node_id)} (${String(e.node_type)}): ${String(e.exception_type)}: ${String(e.exception_message ?? '').trim()}`,
    )
  }
  if (s.status === 'rejected' && s.validation)
    out.push(`rejected  ${stringifyJson(s.validation, { strict: true }).slice(0, 400)}`)
  if (runs.length > 0) {
    const t0 = Math.min(...runs.map((r) => Date.parse(r.timestamp_start)))
    const t1 = Math.max(...runs.map((r) => Date.parse(r.timestamp_end ?? r.timestamp_start)))
    const span = Math.max(1, t1 - t0)
    out.push('')
    out.push(
      `${pad('NODE', 6)} ${pad('TYPE', 24)} ${pad('STATUS', 11)} ${padStart('START', 9)} ${padStart('DURATION', 9)} ${padStart('GPU MiB', 8)}  TIMELINE`,
    )
    const sorted = [...runs].sort(
      (a, b) =>
        Date.parse(a.timestamp_start) - Date.parse(b.timestamp_start) || a.node_id.localeCompare(b.node_id),
    )
    for (const r of sorted) {
      const start = Date.parse(r.timestamp_start) - t0
      const dur = r.duration_ms ?? 0
      const from = Math.floor((start / span) * width)
      const len = Math.max(1, Math.round((dur / span) * width))
      const bar =
        ' '.repeat(Math.min(from, width - 1)) +
        (r.status === 'cached' ? '·' : '█').repeat(Math.min(len, width - Math.min(from, width - 1)))
      out.push(
        `${pad(r.node_id, 6)} ${pad(r.node_type ?? '?', 24)} ${pad(r.status, 11)} ${padStart(`+${start} ms`, 9)} ${padStart(formatDuration(r.duration_ms), 9)} ${padStart(r.gpu_memory_used === null ? '-' : String(Math.round(r.gpu_memory_used)), 8)}  ${bar}`,
      )
      if (r.error_message)
        out.push(`       ${r.exception_type ?? 'error'}: ${r.error_message.trim().split('\n')[0]}`)
    }
  } else {
    out.push('')
    out.push('no node runs recorded')
  }
  return out.join('\n') + '\n'
}

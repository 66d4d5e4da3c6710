import { readFile } from 'node:fs/promises'
import type { Json } from './python-values.js'

/**
 * One row of a `trace.jsonl` recording, as record.py (and `recordScenarios`) write it. Every row has the four
 * fields below; the rest depend on `kind` (see the fixture README):
 * - `ws`: `client`, `msg`; `ws_binary`: `client`, `event_type`, `bytes`, `sha256`, `head_hex`, and `node_id` +
 *   `text`, `metadata` or `image_format`; `ws_open`: `client`, `client_id`; `ws_sent`: `client`, `msg`;
 *   `ws_closed`: `client`; `ws_error`/`ws_other`: `client`, `error`/`type`
 * - `http`: `method`, `path`, `request`, `status`, `ms`, `content_type`, `bytes`, then `saved_as`, `response`
 *   or `response_text`
 * - `vram`: `ms`, `vram_total`, `vram_free`, `torch_vram_total`, `torch_vram_free`, `ram_free`; `vram_error`: `error`
 * - `scenario_start`; `scenario_end`: `ok`, and `error` when not ok
 */
export interface TraceRow {
  /** Milliseconds since the recorder started (two decimals). */
  t_ms: number
  /** Unix time in seconds (four decimals). */
  wall: number
  /** The scenario running when the row was written. */
  scenario: string
  /** What the row records. */
  kind: string
  [field: string]: Json
}

/** The outcome of parsing a trace. */
export type ParseTraceResult = { ok: true; value: TraceRow[] } | { ok: false; reason: string }

/** Parses `trace.jsonl` text: one JSON object per line (line ends as Python's text mode reads them). */
export function parseTrace(text: string): ParseTraceResult {
  const lines = text.split(/\r\n|\r|\n/)
  if (lines.at(-1) === '') lines.pop()
  const rows: TraceRow[] = []
  for (const [i, line] of lines.entries()) {
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch (e) {
      return { ok: false, reason: `line ${i + 1}: ${(e as Error).message}` }
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return { ok: false, reason: `line ${i + 1}: not a JSON object` }
    }
    const row = value as Record<string, Json>
    for (const [field, type] of [
      ['t_ms', 'number'],
      ['wall', 'number'],
      ['scenario', 'string'],
      ['kind', 'string'],
    ] as const) {
      if (typeof row[field] !== type) return { ok: false, reason: `line ${i + 1}: ${field} is not a ${type}` }
    }
    rows.push(row as TraceRow)
  }
  return { ok: true, value: rows }
}

/** Reads and parses a trace file; throws naming the file when it is not a valid trace. */
export async function readTraceFile(path: string): Promise<TraceRow[]> {
  const parsed = parseTrace(await readFile(path, 'utf8'))
  if (!parsed.ok) throw new Error(`${path}: ${parsed.reason}`)
  return parsed.value
}

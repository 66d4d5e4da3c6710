import { readFileSync } from 'node:fs'
import type { EnvironmentSnapshot } from '../../src/audit/types.js'
import { environmentFromSystemStats } from '../../src/capture/environment.js'
import { parseTrace, type TraceRow } from '../../src/capture/trace-replay.js'
import { parseWith, zObjectInfo, zSystemStats } from '../../src/comfyui/schemas.js'

/** The files recorded from a real ComfyUI 0.8.0. */
export const FIXTURES = new URL('../../fixtures/comfyui-0.8.0/', import.meta.url)

/** The rows of the recorded trace; throws with the parser's reason if the fixture does not parse. */
export function fixtureTraceRows(): TraceRow[] {
  const trace = parseTrace(readFileSync(new URL('trace.jsonl', FIXTURES), 'utf8'))
  if (!trace.ok) throw new Error(trace.reason)
  return trace.rows
}

/** The environment snapshot capture makes of the recording's `/system_stats` and `object_info.json`. */
export function fixtureEnvironment(rows: readonly TraceRow[]): EnvironmentSnapshot {
  const systemStatsRow = rows.find((r) => r.kind === 'http' && r.path === '/system_stats')
  const systemStats = parseWith(zSystemStats, systemStatsRow?.response ?? null)
  const objectInfo = parseWith(zObjectInfo, readFileSync(new URL('object_info.json', FIXTURES)))
  if (!systemStats.ok || !objectInfo.ok) throw new Error('fixtures do not parse')
  return environmentFromSystemStats(systemStats.value, objectInfo.value)
}

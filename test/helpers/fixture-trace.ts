import { readFileSync } from 'node:fs'
import { parseTrace, type TraceRow } from '../../src/capture/trace-replay.js'

/** The files recorded from a real ComfyUI 0.8.0. */
export const FIXTURES = new URL('../../fixtures/comfyui-0.8.0/', import.meta.url)

/** The rows of the recorded trace; throws with the parser's reason if the fixture does not parse. */
export function fixtureTraceRows(): TraceRow[] {
  const trace = parseTrace(readFileSync(new URL('trace.jsonl', FIXTURES), 'utf8'))
  if (!trace.ok) throw new Error(trace.reason)
  return trace.rows
}

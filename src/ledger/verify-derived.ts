/**
 * The derived-table half of `verify`: the stored sessions, node runs, outputs and rollups against a replay of
 * the log. Kept apart from the log checks because it only reads rows, never hashes.
 */
import { canonicalJson } from '../audit/json.js'
import { asJsonObject } from '../audit/json-value.js'
import { firstAnalysisRollupDifference, replayAnalysisRollups } from '../store/analysis-rollups.js'
import { firstRollupDifference, replayRollups, type RollupRow } from '../store/rollups.js'
import { firstCoarseRollupDifference, type CoarseRollupReader } from '../store/rollup-replay.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import type { DerivedRows } from '../store/store.js'

function rowKey(table: string, row: Readonly<Record<string, unknown>>): string {
  const parts =
    table === 'sessions'
      ? [row.origin, row.session_id]
      : table === 'node_runs'
        ? [row.origin, row.session_id, row.node_id]
        : [row.origin, row.session_id, row.node_id, row.type, row.subfolder, row.filename]
  return parts.map(String).join(' / ')
}

/**
 * Compares the stored derived rows with a replay of the readable events of the origin: the first difference
 * as a sentence naming the row, or undefined when they agree.
 */
export async function firstDerivedDifference(
  store: Pick<RuntimeStore, 'derivedRows' | 'rollups' | 'workflowRollups' | 'usageRollups'> &
    CoarseRollupReader,
  replay: DerivedRows,
  origin: string,
): Promise<string | undefined> {
  const stored = await store.derivedRows(origin)
  const tables: [string, keyof DerivedRows][] = [
    ['sessions', 'sessions'],
    ['node_runs', 'nodeRuns'],
    ['outputs', 'outputs'],
  ]
  for (const [table, field] of tables) {
    const want = new Map(replay[field].map((r) => [rowKey(table, r as never), asJsonObject(r)]))
    const have = new Map(stored[field].map((r) => [rowKey(table, r as never), asJsonObject(r)]))
    const keys = [...new Set([...want.keys(), ...have.keys()])].sort()
    for (const key of keys) {
      const w = want.get(key)
      const h = have.get(key)
      if (!w) return `${table} row (${key}) is not produced by any event in the log`
      if (!h) return `${table} row (${key}) is missing, though the log produces it`
      const fields = [...new Set([...Object.keys(w), ...Object.keys(h)])].sort()
      for (const f of fields) {
        if (canonicalJson(w[f] ?? null) !== canonicalJson(h[f] ?? null)) {
          return `${table} row (${key}) field ${f} is ${canonicalJson(h[f] ?? null).slice(0, 80)}, the log says ${canonicalJson(w[f] ?? null).slice(0, 80)}`
        }
      }
    }
  }
  // Rollups are derived from the node runs the log gives (not the stored ones: those are checked above).
  let storedRollups: RollupRow[]
  try {
    storedRollups = await store.rollups({ origin })
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  const replayedRollups = replayRollups(replay.nodeRuns)
  const rollups = firstRollupDifference(replayedRollups, storedRollups)
  if (rollups !== undefined) return rollups
  let storedAnalysis: Parameters<typeof firstAnalysisRollupDifference>[1]
  try {
    storedAnalysis = {
      workflow: await store.workflowRollups({ origin }),
      usage: await store.usageRollups({ origin }),
    }
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  const replayedAnalysis = replayAnalysisRollups(replay.sessions, replay.nodeRuns)
  const analysis = firstAnalysisRollupDifference(replayedAnalysis, storedAnalysis)
  if (analysis !== undefined) return analysis
  // The model usage and daily rollups (src/store/rollup-replay.ts).
  try {
    return await firstCoarseRollupDifference(store, origin, replay, {
      node: replayedRollups,
      ...replayedAnalysis,
    })
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

/**
 * The derived-table half of `verify`: the stored sessions, node runs, outputs and rollups against a replay of
 * the log. Kept apart from the log checks because it only reads rows, never hashes.
 */
import { canonicalJson } from '../audit/json.js'
import { asJsonObject } from '../audit/json-value.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
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

function keyed(table: string, rows: readonly object[]): Map<string, JsonObject> {
  const byKey = new Map<string, JsonObject>()
  for (const row of rows) byKey.set(rowKey(table, row as never), asJsonObject(row))
  return byKey
}

/**
 * Same members with identical values, recursively: enough for equal canonical forms, and far cheaper than
 * writing them. False only sends the caller to the canonical comparison (`1` and `1n` are equal there).
 */
function identical(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!identical(a[i] as JsonValue, b[i] as JsonValue)) return false
    return true
  }
  if (Array.isArray(b)) return false
  let count = 0
  for (const key in a) {
    if (!Object.prototype.hasOwnProperty.call(b, key)) return false
    if (!identical(a[key] as JsonValue, b[key] as JsonValue)) return false
    count++
  }
  return Object.keys(b).length === count
}

/** Canonical equality of two field values, writing canonical forms only for values not found identical. */
function sameField(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  const x = a ?? null
  const y = b ?? null
  return identical(x, y) || canonicalJson(x) === canonicalJson(y)
}

/** Whether every field of either row has the same canonical value in the other. */
function sameRow(w: JsonObject, h: JsonObject): boolean {
  for (const f in w) if (!sameField(w[f], h[f])) return false
  for (const f in h) if (!Object.prototype.hasOwnProperty.call(w, f) && !sameField(null, h[f])) return false
  return true
}

/**
 * The first difference of one table, in the order of the rows' keys as text and then of the field names: the
 * rows are matched by key and only a differing row is looked at field by field, so equal tables cost one
 * lookup and one pass over each row's fields.
 */
function firstTableDifference(
  table: string,
  replayed: readonly object[],
  storedRows: readonly object[],
): string | undefined {
  const want = keyed(table, replayed)
  const have = keyed(table, storedRows)
  let first: string | undefined
  const consider = (key: string): void => {
    if (first === undefined || key < first) first = key
  }
  for (const [key, w] of want) {
    const h = have.get(key)
    if (!h || !sameRow(w, h)) consider(key)
  }
  for (const key of have.keys()) if (!want.has(key)) consider(key)
  if (first === undefined) return undefined
  const w = want.get(first)
  const h = have.get(first)
  if (!w) return `${table} row (${first}) is not produced by any event in the log`
  if (!h) return `${table} row (${first}) is missing, though the log produces it`
  const fields = [...new Set([...Object.keys(w), ...Object.keys(h)])].sort()
  for (const f of fields) {
    if (!sameField(w[f], h[f])) {
      return `${table} row (${first}) field ${f} is ${canonicalJson(h[f] ?? null).slice(0, 80)}, the log says ${canonicalJson(w[f] ?? null).slice(0, 80)}`
    }
  }
  return undefined
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
    const difference = firstTableDifference(table, replay[field], stored[field])
    if (difference !== undefined) return difference
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

/**
 * Schema of the analysis rollups (migrations 6 and 7): the same statement text for both dialects, given their
 * text, integer and double column types.
 */
/** The migration statements (same text for both dialects: text, integer and double columns). */
export function analysisRollupMigration(types: { text: string; int: string; real: string }): string[] {
  return [
    `CREATE TABLE workflow_rollups (
      origin ${types.text} NOT NULL,
      node_type ${types.text} NOT NULL,
      workflow ${types.text} NOT NULL,
      hour ${types.text} NOT NULL,
      successes ${types.int} NOT NULL,
      duration_sketch text NOT NULL,
      PRIMARY KEY (origin, node_type, workflow, hour)
    )`,
    `CREATE INDEX workflow_rollups_hour ON workflow_rollups (hour)`,
    `CREATE TABLE usage_rollups (
      origin ${types.text} NOT NULL,
      submitter_user ${types.text} NOT NULL,
      hour ${types.text} NOT NULL,
      sessions ${types.int} NOT NULL,
      successes ${types.int} NOT NULL,
      errors ${types.int} NOT NULL,
      gpu_ms ${types.real} NOT NULL,
      node_runs ${types.int} NOT NULL,
      outputs ${types.int} NOT NULL,
      PRIMARY KEY (origin, submitter_user, hour)
    )`,
    `CREATE INDEX usage_rollups_hour ON usage_rollups (hour)`,
    // Dropped again by migration 7 (see ANALYSIS_INDEX_FIX): they made session-scoped reads scan an origin.
    `CREATE INDEX node_runs_origin_start ON node_runs (origin, timestamp_start)`,
    `CREATE INDEX sessions_origin_queued_at ON sessions (origin, queued_at)`,
  ]
}

/** Migration 7: drops the (origin, time) indexes of migration 6, which the planner also chose for reads of one
 * session's node runs (ordering by start time), scanning the whole origin; the bucket reads use the time
 * indexes instead (see WORKFLOW_BUCKET_SQL). */
export const ANALYSIS_INDEX_FIX = [
  'DROP INDEX node_runs_origin_start',
  'DROP INDEX sessions_origin_queued_at',
] as const

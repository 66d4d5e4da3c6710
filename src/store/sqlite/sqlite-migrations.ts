/**
 * SQLite schema. Text keys compare as bytes (BINARY), the same order as PostgreSQL's "C" collation, so both
 * dialects list rows identically. JSON fields are lossless JSON text (see derived-columns.ts).
 */
import type { Migration } from '../migrations.js'

import { EVENT_PAYLOAD_FORMAT_MIGRATION } from '../sql-common.js'
import { ANALYSIS_INDEX_FIX, analysisRollupMigration } from '../analysis-rollups.js'
import { rollupMigration } from '../rollups.js'
import { DAILY_ROLLUPS_VERSION, dailyRollupMigration } from '../daily-rollups.js'
import { QUERY_INDEXES_MIGRATION } from '../query-indexes.js'

/** The migration creating workflow_rollups and usage_rollups; the driver fills them when it is applied. */
export const ANALYSIS_ROLLUPS_VERSION = 6

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    statements: [
      `CREATE TABLE events (
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        time TEXT NOT NULL,
        session_id TEXT,
        payload TEXT NOT NULL,
        PRIMARY KEY (origin, seq)
      ) WITHOUT ROWID`,
      `CREATE INDEX events_session_id ON events (session_id)`,
      `CREATE INDEX events_time ON events (time)`,
      `CREATE TABLE sessions (
        origin TEXT NOT NULL,
        session_id TEXT NOT NULL,
        status TEXT NOT NULL,
        http_status INTEGER,
        number INTEGER,
        client_id TEXT,
        submitter TEXT,
        prompt TEXT,
        workflow TEXT,
        prompt_sha256 TEXT,
        workflow_sha256 TEXT,
        extra_data TEXT,
        validation TEXT,
        queued_at TEXT,
        started_at TEXT,
        ended_at TEXT,
        duration_ms REAL,
        environment TEXT,
        models TEXT,
        seeds TEXT,
        outputs TEXT,
        error TEXT,
        status_reason TEXT,
        flags TEXT,
        submitter_user TEXT,
        PRIMARY KEY (origin, session_id)
      )`,
      `CREATE INDEX sessions_queued_at ON sessions (queued_at)`,
      `CREATE INDEX sessions_status ON sessions (status)`,
      `CREATE INDEX sessions_submitter_user ON sessions (submitter_user)`,
      `CREATE TABLE node_runs (
        origin TEXT NOT NULL,
        session_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        node_type TEXT,
        timestamp_start TEXT NOT NULL,
        timestamp_end TEXT,
        duration_ms REAL,
        inputs TEXT,
        outputs TEXT,
        status TEXT NOT NULL,
        error_message TEXT,
        exception_type TEXT,
        traceback TEXT,
        gpu_memory_used REAL,
        gpu_memory_torch REAL,
        display_node TEXT,
        real_node_id TEXT,
        parent_node_id TEXT,
        progress TEXT,
        PRIMARY KEY (origin, session_id, node_id)
      )`,
      `CREATE INDEX node_runs_node_type ON node_runs (node_type, timestamp_start)`,
      `CREATE INDEX node_runs_timestamp_start ON node_runs (timestamp_start)`,
      `CREATE TABLE outputs (
        origin TEXT NOT NULL,
        session_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        type TEXT NOT NULL,
        subfolder TEXT NOT NULL,
        filename TEXT NOT NULL,
        sha256 TEXT,
        bytes INTEGER,
        width INTEGER,
        height INTEGER,
        time TEXT NOT NULL,
        PRIMARY KEY (origin, session_id, node_id, type, subfolder, filename)
      )`,
      `CREATE INDEX outputs_sha256 ON outputs (sha256)`,
      `CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'ledger',
    statements: [
      // The leaf hash stays when retention removes a payload, so old checkpoints still verify.
      `ALTER TABLE events ADD COLUMN leaf_hash TEXT`,
      `ALTER TABLE events ADD COLUMN pruned INTEGER`,
      `CREATE TABLE checkpoints (
        origin TEXT NOT NULL,
        size INTEGER NOT NULL,
        root_hash TEXT NOT NULL,
        note TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (origin, size)
      )`,
    ],
  },
  {
    version: 3,
    name: 'node run rollups',
    // Per origin x node type x hour: counts and duration / GPU memory sketches (src/store/rollups.ts).
    statements: rollupMigration({ text: 'TEXT', int: 'INTEGER', real: 'REAL' }),
  },
  {
    version: 4,
    name: 'node run previews',
    // How many preview frames a node sent (issue 15 item 3); rows from before stay null (not known).
    statements: [`ALTER TABLE node_runs ADD COLUMN previews INTEGER`],
  },
  {
    version: 5,
    name: 'analysis indexes',
    statements: [
      // The UI workflow's id copied out of the JSON (see derived-columns.ts), filled for existing rows here;
      // workflow text that SQLite's JSON cannot read (NaN, Infinity) stays null until `comfy-audit rebuild`.
      `ALTER TABLE sessions ADD COLUMN workflow_id TEXT`,
      `UPDATE sessions SET workflow_id = json_extract(workflow, '$.id')
        WHERE json_valid(workflow) AND json_type(workflow, '$.id') = 'text'`,
      // --workflow filters and `diff --workflow W --last N` (newest first by queue time).
      `CREATE INDEX sessions_workflow_id ON sessions (workflow_id, queued_at)`,
      // `diff A B` (and `show`) name a session without its origin: the primary key starts with the origin.
      `CREATE INDEX sessions_session_id ON sessions (session_id)`,
    ],
  },
  {
    version: ANALYSIS_ROLLUPS_VERSION,
    name: 'analysis rollups',
    // Per workflow and per person (src/store/analysis-rollups.ts), for regressions and usage.
    statements: analysisRollupMigration({ text: 'TEXT', int: 'INTEGER', real: 'REAL' }),
  },
  {
    version: 7,
    name: 'analysis index fix',
    statements: ANALYSIS_INDEX_FIX,
  },
  EVENT_PAYLOAD_FORMAT_MIGRATION,
  {
    version: DAILY_ROLLUPS_VERSION,
    name: 'daily and model usage rollups',
    // Per day for every hourly rollup table, and usage per model (src/store/daily-rollups.ts).
    statements: dailyRollupMigration({ text: 'TEXT', int: 'INTEGER', real: 'REAL' }),
  },
  QUERY_INDEXES_MIGRATION,
]

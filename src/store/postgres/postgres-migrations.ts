/**
 * PostgreSQL schema, the same tables and columns as SQLite's.
 *
 * Payloads and JSON fields are TEXT holding lossless JSON, not JSONB: JSONB cannot hold NaN or Infinity
 * (ComfyUI's JSON can), and it rewrites the text (key order, whitespace, number spelling), while the ledger
 * hashes and `verify` compares exactly what was stored. Bigints stay exact digits in the text.
 * Key and ordering columns use the "C" collation so rows sort by bytes, as in SQLite, whatever the
 * database's locale. Derived numbers are double precision: a fractional value in a field capture meant as
 * an integer must never make a commit (and its events) fail.
 */
import type { Migration } from '../migrations.js'
import { EVENT_PAYLOAD_FORMAT_MIGRATION } from '../sql-common.js'
import { ANALYSIS_INDEX_FIX, analysisRollupMigration } from '../analysis-rollups.js'
import { rollupMigration } from '../rollups.js'
import { DAILY_ROLLUPS_VERSION, dailyRollupMigration } from '../daily-rollups.js'
import { QUERY_INDEXES_MIGRATION } from '../query-indexes.js'

/** The migration creating workflow_rollups and usage_rollups; the driver fills them when it is applied. */
export const ANALYSIS_ROLLUPS_VERSION = 6

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    statements: [
      `CREATE TABLE events (
        origin text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        kind text NOT NULL,
        time text COLLATE "C" NOT NULL,
        session_id text COLLATE "C",
        payload text NOT NULL,
        PRIMARY KEY (origin, seq)
      )`,
      `CREATE INDEX events_session_id ON events (session_id)`,
      `CREATE INDEX events_time ON events (time)`,
      `CREATE TABLE sessions (
        origin text COLLATE "C" NOT NULL,
        session_id text COLLATE "C" NOT NULL,
        status text NOT NULL,
        http_status double precision,
        number double precision,
        client_id text,
        submitter text,
        prompt text,
        workflow text,
        prompt_sha256 text,
        workflow_sha256 text,
        extra_data text,
        validation text,
        queued_at text COLLATE "C",
        started_at text COLLATE "C",
        ended_at text COLLATE "C",
        duration_ms double precision,
        environment text,
        models text,
        seeds text,
        outputs text,
        error text,
        status_reason text,
        flags text,
        submitter_user text,
        PRIMARY KEY (origin, session_id)
      )`,
      `CREATE INDEX sessions_queued_at ON sessions (queued_at)`,
      `CREATE INDEX sessions_status ON sessions (status)`,
      `CREATE INDEX sessions_submitter_user ON sessions (submitter_user)`,
      `CREATE TABLE node_runs (
        origin text COLLATE "C" NOT NULL,
        session_id text COLLATE "C" NOT NULL,
        node_id text COLLATE "C" NOT NULL,
        node_type text,
        timestamp_start text COLLATE "C" NOT NULL,
        timestamp_end text COLLATE "C",
        duration_ms double precision,
        inputs text,
        outputs text,
        status text NOT NULL,
        error_message text,
        exception_type text,
        traceback text,
        gpu_memory_used double precision,
        gpu_memory_torch double precision,
        display_node text,
        real_node_id text,
        parent_node_id text,
        progress text,
        PRIMARY KEY (origin, session_id, node_id)
      )`,
      `CREATE INDEX node_runs_node_type ON node_runs (node_type, timestamp_start)`,
      `CREATE INDEX node_runs_timestamp_start ON node_runs (timestamp_start)`,
      `CREATE TABLE outputs (
        origin text COLLATE "C" NOT NULL,
        session_id text COLLATE "C" NOT NULL,
        node_id text COLLATE "C" NOT NULL,
        type text COLLATE "C" NOT NULL,
        subfolder text COLLATE "C" NOT NULL,
        filename text COLLATE "C" NOT NULL,
        sha256 text,
        bytes double precision,
        width double precision,
        height double precision,
        time text NOT NULL,
        PRIMARY KEY (origin, session_id, node_id, type, subfolder, filename)
      )`,
      `CREATE INDEX outputs_sha256 ON outputs (sha256)`,
      `CREATE TABLE state (
        key text PRIMARY KEY,
        value text NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'ledger',
    statements: [
      // The leaf hash stays when retention removes a payload, so old checkpoints still verify.
      `ALTER TABLE events ADD COLUMN leaf_hash text`,
      `ALTER TABLE events ADD COLUMN pruned bigint`,
      `CREATE TABLE checkpoints (
        origin text COLLATE "C" NOT NULL,
        size bigint NOT NULL,
        root_hash text NOT NULL,
        note text NOT NULL,
        created_at text NOT NULL,
        PRIMARY KEY (origin, size)
      )`,
    ],
  },
  {
    version: 3,
    name: 'node run rollups',
    // Per origin x node type x hour: counts and duration / GPU memory sketches (src/store/rollups.ts).
    statements: rollupMigration({ text: 'text COLLATE "C"', int: 'bigint', real: 'double precision' }),
  },
  {
    version: 4,
    name: 'node run previews',
    // How many preview frames a node sent (issue 15 item 3); rows from before stay null (not known).
    statements: [`ALTER TABLE node_runs ADD COLUMN previews bigint`],
  },
  {
    version: 5,
    name: 'analysis indexes',
    statements: [
      // The UI workflow's id copied out of the JSON (see derived-columns.ts), filled for existing rows here.
      // Row by row, because workflow text PostgreSQL's json cannot read (NaN, Infinity) must not stop the
      // migration: such a row stays null until `comfy-audit rebuild`.
      `ALTER TABLE sessions ADD COLUMN workflow_id text COLLATE "C"`,
      `DO $$
      DECLARE r record;
      BEGIN
        FOR r IN SELECT origin, session_id, workflow FROM sessions WHERE workflow IS NOT NULL LOOP
          BEGIN
            UPDATE sessions SET workflow_id = r.workflow::json ->> 'id'
              WHERE origin = r.origin AND session_id = r.session_id
                AND json_typeof(r.workflow::json) = 'object'
                AND json_typeof(r.workflow::json -> 'id') = 'string';
          EXCEPTION WHEN others THEN NULL;
          END;
        END LOOP;
      END $$`,
      // --workflow filters and diff --workflow W --last N (newest first by queue time).
      `CREATE INDEX sessions_workflow_id ON sessions (workflow_id, queued_at)`,
      // `diff A B` (and `show`) name a session without its origin: the primary key starts with the origin.
      `CREATE INDEX sessions_session_id ON sessions (session_id)`,
    ],
  },
  {
    version: ANALYSIS_ROLLUPS_VERSION,
    name: 'analysis rollups',
    // Per workflow and per person (src/store/analysis-rollups.ts), for regressions and usage.
    statements: analysisRollupMigration({
      text: 'text COLLATE "C"',
      int: 'bigint',
      real: 'double precision',
    }),
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
    statements: dailyRollupMigration({ text: 'text COLLATE "C"', int: 'bigint', real: 'double precision' }),
  },
  QUERY_INDEXES_MIGRATION,
]

/**
 * The shapes the dashboard (web/) reads from the audit API, in one place it imports types from. Routes that
 * answer with a record's export row say so; the rest are the analysis and run-table answers as defined beside
 * their code.
 */
import type { JsonObject, JsonValue, SessionStatus } from '../audit/types.js'
import type { LedgerProblem, OriginReport } from '../ledger/verify-ledger.js'

export type {
  CorrelateReport,
  DiffReport,
  RegressionsReport,
  StatsGroup,
  StatsReport,
  TrendsReport,
  UsageGroup,
  UsageReport,
} from './analysis/analysis.js'
export type { FacetCount, RunFacet, RunsPage } from './runs-query.js'
export type { TraceResult } from '../provenance/trace.js'
export type { JsonValue, SessionStatus } from '../audit/types.js'

/** A model as `GET /_audit/api/sessions/{id}` lists it. */
interface ModelRow {
  readonly folder: string
  readonly name: string
  readonly node_id: string
  readonly input_name: string
  readonly sha256?: string | null
  readonly autov2?: string | null
  readonly bytes?: number | null
}

/** A file a node wrote, as ComfyUI's `/view` names it. */
interface OutputFile {
  readonly filename: string
  readonly subfolder: string
  readonly type: string
  readonly node_id: string
  readonly sha256?: string | null
}

/** `session` of `GET /_audit/api/sessions/{id}`: the export row plus the prompt and the UI workflow. */
interface SessionDetail {
  readonly origin: string
  readonly session_id: string
  readonly status: SessionStatus
  readonly http_status: number | null
  readonly user: string | null
  readonly auth_method: string | null
  readonly client_address: string | null
  readonly user_agent: string | null
  readonly client_id: string | null
  readonly number: number | null
  readonly queued_at: string | null
  readonly started_at: string | null
  readonly ended_at: string | null
  readonly duration_ms: number | null
  readonly prompt_sha256: string | null
  readonly workflow_sha256: string | null
  readonly models: ModelRow[]
  readonly seeds: { readonly node_id: string; readonly input_name: string; readonly value: JsonValue }[]
  readonly outputs: OutputFile[]
  readonly error: JsonValue
  readonly status_reason: string | null
  readonly flags: string[]
  readonly extra_data: JsonValue
  readonly prompt: JsonValue
  readonly workflow: JsonValue
  /** The environment snapshot (ComfyUI and PyTorch versions, GPU), when known. */
  readonly environment?: JsonValue
}

/** One node run as the API returns it (the export row). */
export interface NodeRunRow {
  readonly session_id: string
  readonly node_id: string
  readonly node_type: string | null
  readonly timestamp_start: string
  readonly timestamp_end: string | null
  readonly duration_ms: number | null
  readonly inputs: JsonObject
  readonly outputs: JsonObject | null
  readonly status: string
  readonly error_message: string | null
  readonly gpu_memory_used: number | null
  readonly exception_type: string | null
  readonly traceback: string[] | null
  readonly gpu_memory_torch: number | null
  readonly display_node: string | null
  readonly real_node_id: string | null
  readonly parent_node_id: string | null
  readonly progress: JsonValue
  readonly previews: JsonValue
}

/** The answer of `GET /_audit/api/sessions/{id}`. */
export interface SessionAnswer {
  readonly session: SessionDetail
  readonly node_runs: NodeRunRow[]
}

/** `GET /_audit/api/sessions/{id}/integrity`: whether a signed checkpoint covers the run, checked just now. */
export interface SessionIntegrity {
  /** `verified`: proven against a signed checkpoint; `pending`: not yet covered by one; `failed`: it did not verify. */
  readonly state: 'verified' | 'pending' | 'failed'
  /** Tree size of the checkpoint the proof ran against. */
  readonly checkpoint_size: number | null
  /** Events of the session proven. */
  readonly events: number | null
  readonly verified_at: string
  readonly reason: string | null
}

/** `GET /_audit/api/integrity`: `comfy-audit verify` run now, with each origin's latest checkpoints. */
export interface IntegrityReport {
  readonly ok: boolean
  readonly verified_at: string
  readonly origins: (OriginReport & {
    readonly latest_checkpoints: {
      readonly size: number
      readonly root_hash: string
      readonly created_at: string
      readonly note: string
    }[]
  })[]
  readonly problems: LedgerProblem[]
}

/** The `sessions` message of `GET /_audit/api/live`: sessions whose events were just committed. */
export interface LiveSessionsEvent {
  readonly session_ids: string[]
}

/** `GET /_audit/whoami`. */
export interface WhoAmI {
  readonly user: string
  readonly role: 'admin' | 'artist' | 'auditor'
  readonly auth_method: string
}

/** A person as `GET /_audit/api/people` lists them (never a secret). */
export interface PersonRow {
  readonly name: string
  readonly role: 'admin' | 'artist' | 'auditor'
  readonly disabled: boolean
  readonly created_at: string
  readonly created_by: string
  readonly tokens: number
  readonly token_created_at: string | null
}

/**
 * The shared vocabulary of comfy-audit: audit events (the append-only log) and the derived records
 * (sessions, node runs, outputs) that answer queries. This module imports nothing.
 *
 * Field names of the derived records are the export format: snake_case, exactly as the studio asked for
 * them (see docs/architecture.md, "Records").
 */

/** Every kind of event the audit log holds. */
export const AUDIT_EVENT_KINDS = [
  // gateway lifecycle and configuration
  'gateway.started',
  'gateway.stopped',
  'environment.snapshot',
  // one prompt's life
  'prompt.submitted', // a POST /prompt arrived (always, accepted or not); opens the session
  'prompt.accepted', // ComfyUI answered 200
  'prompt.rejected', // ComfyUI answered 400/500 (or the gateway refused it)
  'prompt.refused', // the gateway refused a POST /prompt whose prompt_id another session holds; no session of its own
  'execution.started',
  'execution.cached',
  'node.started',
  'node.finished', // payload carries the complete NodeRunRecord
  'node.error_blocked', // ExecutionBlocked: not fatal for the run
  'execution.finished', // success | error | interrupted; closes the session
  'session.cancelled', // deleted from ComfyUI's queue before it ran
  'session.reconciled', // closed or completed from /history after a gap (no per-node timing for the gap)
  'session.lost', // ComfyUI lost it (restart) or it vanished
  'session.bypass', // seen in ComfyUI's history without having passed the gateway
  'session.corrected', // a session closed by reconciliation (lost) that ComfyUI later showed finished; payload says from what
  'output.hashed', // an output file was hashed (may arrive after execution.finished)
  'models.hashed', // the run's model files were resolved and hashed (payload.session.models)
  // user actions on ComfyUI
  'action.interrupt',
  'action.queue_delete',
  'action.queue_clear',
  'action.history_delete',
  'action.history_clear',
  'action.upload',
  'action.free',
  // security and administration
  'security.login', // a browser login succeeded
  'security.login_failed', // a login was refused (no secret recorded)
  'security.logout',
  'security.person_changed', // a person was added, provisioned, disabled, enabled or re-tokened (payload.by)
  'access.refused', // the gateway refused a request or WebSocket (401, 403, ...): who, from where, route, reason
  'access.refused.summary', // refusals past the per-(person|address, reason) rate: their count and a sample
  // the audit trail itself
  'audit.read', // who read what through the audit API
  'audit.pruned', // retention removed old payloads (leaf hashes kept); payload lists the seq ranges
  'audit.erased', // one session's payloads removed on request; payload lists the seq ranges and the reason
] as const
export type AuditEventKind = (typeof AUDIT_EVENT_KINDS)[number]

/**
 * Version of the record format: the fields of every exported and shipped session, node-run, action and output
 * record (`schema_version` in each), described by the JSON Schemas under `schemas/`. It changes only when a
 * field is removed, renamed or changes meaning; new optional fields keep it.
 */
export const RECORD_SCHEMA_VERSION = 1

/** A JSON value as comfy-audit stores it: integers beyond 2^53 are `bigint`, NaN/Infinity are numbers. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue }
export type JsonObject = { [key: string]: JsonValue }

/** One entry of the audit log, as produced by capture (before the store assigns its sequence number). */
export interface AuditEventInput {
  /** What happened. */
  readonly kind: AuditEventKind
  /** When it happened: ISO 8601 UTC with milliseconds (`2026-11-26T04:34:00.123Z`). */
  readonly time: string
  /** The session (ComfyUI `prompt_id`) this event belongs to, or null for gateway-wide events. */
  readonly session_id: string | null
  /** Kind-specific data; secrets already redacted. */
  readonly payload: JsonObject
}

/** One stored entry of the audit log. */
export interface AuditEvent extends AuditEventInput {
  /** The log this event belongs to: one per gateway (e.g. `comfy-audit/host-a`). */
  readonly origin: string
  /** Position in the origin's log, starting at 0, without gaps. */
  readonly seq: number
}

/** Final and open session states. */
export const SESSION_STATUSES = [
  'queued',
  'running',
  'success',
  'error',
  'interrupted',
  'cancelled',
  'rejected',
  'lost',
] as const
export type SessionStatus = (typeof SESSION_STATUSES)[number]
export const FINAL_SESSION_STATUSES: readonly SessionStatus[] = [
  'success',
  'error',
  'interrupted',
  'cancelled',
  'rejected',
  'lost',
]

export const NODE_RUN_STATUSES = ['success', 'cached', 'error', 'interrupted'] as const
export type NodeRunStatus = (typeof NODE_RUN_STATUSES)[number]

/** Who submitted a prompt or took an action. */
export interface Submitter {
  /** Person's name (`local` without authentication). */
  readonly user: string
  /** `none` | `token` | `cookie` | `trusted-header` | `cli`. */
  readonly auth_method: string
  readonly client_address: string | null
  readonly user_agent: string | null
  /** The client id the downstream client chose (before the gateway namespaced it). */
  readonly client_id: string | null
}

/** A file a node produced, read or uploaded. */
export interface FileRef {
  readonly filename: string
  readonly subfolder: string
  /** `output` | `temp` | `input`. */
  readonly type: string
  readonly sha256?: string | null
  readonly bytes?: number | null
  readonly width?: number | null
  readonly height?: number | null
}

/** A model file a run used. */
export interface ModelRef {
  /** ComfyUI model folder (`checkpoints`, `loras`, ...). */
  readonly folder: string
  /** Name as the prompt gives it (relative path). */
  readonly name: string
  readonly node_id: string
  readonly input_name: string
  readonly sha256?: string | null
  /** Civitai/A1111 AutoV2 short hash: the first 10 hex digits of the SHA-256. */
  readonly autov2?: string | null
  readonly bytes?: number | null
}

/** One node execution (or cache hit) within a session. The export format uses exactly these names. */
export interface NodeRunRecord {
  readonly session_id: string
  readonly node_id: string
  readonly node_type: string | null
  /** ISO 8601 UTC, ms. For cached nodes start == end. */
  readonly timestamp_start: string
  readonly timestamp_end: string | null
  readonly duration_ms: number | null
  /** Literal widget values plus links as `{node, output}`; long values truncated; secrets redacted. */
  readonly inputs: JsonObject
  /** UI outputs: `{images: [FileRef]}` etc., files with sha256 once hashed. */
  readonly outputs: JsonObject | null
  readonly status: NodeRunStatus
  readonly error_message: string | null
  readonly exception_type: string | null
  readonly traceback: string[] | null
  /** MiB (2^20 bytes): highest device-wide use (total - free) sampled while the node ran. */
  readonly gpu_memory_used: number | null
  /** MiB: highest PyTorch-reserved memory sampled while the node ran. */
  readonly gpu_memory_torch: number | null
  readonly display_node: string | null
  readonly real_node_id: string | null
  readonly parent_node_id: string | null
  /** Last progress seen: `{value, max}`. */
  readonly progress: { readonly value: number; readonly max: number } | null
  /**
   * Preview frames (binary types 1 and 4) ComfyUI sent for the node: counted, the image bytes are never
   * kept. Null where not known (records from before this field, runs rebuilt by reconciliation).
   */
  readonly previews?: number | null
}

/** Environment snapshot taken at the start of a session. */
export interface EnvironmentSnapshot {
  readonly comfyui_version: string | null
  readonly python_version: string | null
  readonly pytorch_version: string | null
  readonly os: string | null
  readonly gpu_name: string | null
  readonly vram_total_mib: number | null
  readonly custom_node_packs: string[]
  /** Every device `/system_stats` lists (`gpu_name` is the first one's). Absent in records before it. */
  readonly devices?: readonly EnvironmentDevice[]
  /** Host RAM, MiB. Absent in records before it. */
  readonly ram_total_mib?: number | null
  /** Whether ComfyUI runs on its portable (embedded) Python. Absent in records before it. */
  readonly embedded_python?: boolean | null
  /** The front-end version this ComfyUI requires (`required_frontend_version`). Absent in records before it. */
  readonly frontend_version?: string | null
}

/** One torch device of an {@link EnvironmentSnapshot}. */
interface EnvironmentDevice {
  /** ComfyUI's device name as sent, e.g. `cuda:0 NVIDIA H200 : cudaMallocAsync`. */
  readonly name: string
  /** `cuda`, `cpu`, `mps`, ... */
  readonly type: string | null
  readonly index: number | null
  readonly vram_total_mib: number | null
}

/** One prompt run. */
export interface SessionRecord {
  readonly origin: string
  readonly session_id: string
  readonly status: SessionStatus
  /** HTTP status ComfyUI answered to POST /prompt (null until known). */
  readonly http_status: number | null
  /** ComfyUI queue number. */
  readonly number: number | null
  readonly client_id: string | null
  readonly submitter: Submitter | null
  readonly prompt: JsonValue | null
  readonly workflow: JsonValue | null
  readonly prompt_sha256: string | null
  readonly workflow_sha256: string | null
  readonly extra_data: JsonValue | null
  /** `error` and `node_errors` of a refused or partly refused prompt. */
  readonly validation: JsonValue | null
  readonly queued_at: string | null
  readonly started_at: string | null
  readonly ended_at: string | null
  readonly duration_ms: number | null
  readonly environment: EnvironmentSnapshot | null
  readonly models: ModelRef[]
  readonly seeds: { readonly node_id: string; readonly input_name: string; readonly value: JsonValue }[]
  readonly outputs: (FileRef & { readonly node_id: string })[]
  /** Error of the failing node (execution_error data, redacted), if any. */
  readonly error: JsonValue | null
  /** Why the status is what it is when the gateway inferred it (reconciled, lost, bypass). */
  readonly status_reason: string | null
  /** `bypass`, `reconciled` (a gap without per-node timing), ... */
  readonly flags: string[]
}

/** A file output row, indexed by hash. */
export interface OutputRecord extends FileRef {
  readonly origin: string
  readonly session_id: string
  readonly node_id: string
  readonly time: string
}

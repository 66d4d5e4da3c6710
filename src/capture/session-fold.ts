/**
 * The fold of one prompt's node changes into node records and session events: nodes start, finish, are
 * cached or fail; a session starts once and ends once (then retires to the recent map, where only a late
 * answer or a correction can still reach it). Timing rules: comfyui-protocol.md §7.7.
 */
import { canonicalJson } from '../audit/json.js'
import {
  environmentSnapshotEvent,
  executionFinishedEvent,
  executionStartedEvent,
  nodeFinishedEvent,
  nodeStartedEvent,
  type SessionPatch,
} from '../audit/audit-events.js'
import type {
  AuditEventInput,
  EnvironmentSnapshot,
  JsonObject,
  JsonValue,
  NodeRunRecord,
  NodeRunStatus,
} from '../audit/types.js'
import { type GpuSample } from './gpu-sampler.js'
import { isoTime, toJsonObject } from './json-value.js'
import { nodeInputs } from './prompt-analysis.js'
import { type OpenNodeRun } from './reconcile.js'
import { type ExecutionErrorData } from '../comfyui/schemas.js'
import {
  applySample,
  newNode,
  runningNodes,
  MAX_RECENT_SESSIONS,
  type CaptureCore,
  type Change,
  type NodeState,
  type OutputFile,
  type SessionState,
} from './capture-state.js'

/**
 * What the shell fetched before a frame's step: the environment snapshot (asked only when the frame starts a
 * queued session) and one GPU sample (taken only when the frame starts or ends a node). Null when there was
 * none to have or it was not needed.
 */
export interface Resources {
  readonly environment: EnvironmentSnapshot | null
  readonly sample: GpuSample | null
}

/** Node records of a session: how a node's state becomes its `node.finished` record. */
export type NodeRecords = ReturnType<typeof nodeRecords>

export function nodeRecords(c: CaptureCore) {
  const { sessions, recent, lostIds, maxLen } = c
  const retire = (s: SessionState, status: string): void => {
    s.phase = 'closed'
    s.finalStatus = status
    if (status === 'lost') lostIds.add(s.id)
    if (status !== 'cancelled') {
      // Only a late answer can still concern it: drop what only a running session needs.
      s.graph = null
      s.nodes.clear()
      s.progressState.clear()
    }
    sessions.delete(s.id)
    recent.delete(s.id)
    recent.set(s.id, s)
    if (recent.size > MAX_RECENT_SESSIONS) {
      const oldest = recent.keys().next().value
      if (oldest !== undefined) recent.delete(oldest)
    }
  }

  const nodeRun = (s: SessionState, n: NodeState): OpenNodeRun => {
    const realId = n.realId ?? (s.graph?.[n.id] ? n.id : null)
    return {
      session_id: s.id,
      node_id: n.id,
      // Ephemeral (expanded) nodes are in no prompt: their type is that of the prompt node they came from.
      node_type: s.graph?.[realId ?? n.id]?.class_type ?? null,
      timestamp_start: isoTime(n.startMs),
      timestamp_end: n.endMs === null ? null : isoTime(n.endMs),
      duration_ms:
        n.status === 'cached'
          ? 0
          : n.endMs === null || n.startUnknown
            ? null
            : Math.trunc(n.endMs) - Math.trunc(n.startMs),
      inputs: nodeInputs(s.graph?.[n.id], maxLen),
      outputs: n.outputs,
      error_message: n.errorMessage,
      exception_type: n.exceptionType,
      traceback: n.traceback,
      gpu_memory_used: n.gpuUsed,
      gpu_memory_torch: n.gpuTorch,
      display_node: n.displayId ?? n.id,
      real_node_id: realId,
      parent_node_id: n.parentId,
      progress: n.progress,
      previews: n.previews,
    }
  }

  const emitNode = (out: AuditEventInput[], s: SessionState, n: NodeState, timeMs: number): void => {
    if (n.status === 'running') return
    const record: NodeRunRecord = { ...nodeRun(s, n), status: n.status }
    n.emitted = true
    out.push(nodeFinishedEvent(isoTime(timeMs), record, n.files))
  }

  const closeNode = (
    out: AuditEventInput[],
    s: SessionState,
    n: NodeState,
    status: NodeRunStatus,
    timeMs: number,
  ): void => {
    n.status = status
    n.endMs = timeMs
    emitNode(out, s, n, timeMs)
  }

  return { retire, nodeRun, emitNode, closeNode }
}

/** Node changes of a running session: starts, finishes, output files. */
export type NodeChanges = ReturnType<typeof nodeChanges>

/** Whether a change really starts or ends a node: then the shell takes one GPU sample before it. */
export function isTransition(s: SessionState, c: Change): boolean {
  const n = s.nodes.get(c.id)
  if (c.kind === 'start') return !n || (n.status === 'cached' && !n.emitted)
  if (c.kind === 'finish') return !n || n.status === 'running'
  return !n
}

export function nodeChanges(c: CaptureCore & NodeRecords) {
  const { sessions, envLog, emitNode, closeNode } = c
  /** The session's start; `environment` is the snapshot the shell fetched for it (see Resources). */
  const startSession = (
    out: AuditEventInput[],
    s: SessionState,
    timeMs: number,
    environment: EnvironmentSnapshot | null,
  ): void => {
    if (s.phase !== 'queued') return
    s.phase = 'running'
    s.startedAtMs = timeMs
    // One log event each time the environment changes (each session carries its own copy in its start patch).
    const envJson = environment ? canonicalJson(toJsonObject(environment)) : null
    if (environment && envJson !== envLog.emittedJson) {
      envLog.emittedJson = envJson
      out.push(environmentSnapshotEvent(isoTime(timeMs), environment))
    }
    const patch: SessionPatch = { status: 'running', started_at: isoTime(timeMs), environment }
    out.push(executionStartedEvent(isoTime(timeMs), s.id, patch))
  }

  /**
   * Applies node changes of one frame. When one of them really starts or ends a node, `sample` is the GPU
   * sample the shell took just before (see Resources): it goes to every running node and to the new ones.
   */
  const applyChanges = (
    out: AuditEventInput[],
    s: SessionState,
    changes: readonly Change[],
    timeMs: number,
    sample: GpuSample | null,
  ): void => {
    if (!changes.some((ch) => isTransition(s, ch))) {
      for (const ch of changes) applyChange(out, s, ch, timeMs, null)
      return
    }
    if (sample) applySample(sample, runningNodes(sessions))
    for (const ch of changes) applyChange(out, s, ch, timeMs, sample)
  }

  const applyChange = (
    out: AuditEventInput[],
    s: SessionState,
    c: Change,
    timeMs: number,
    sample: GpuSample | null,
  ): void => {
    let n = s.nodes.get(c.id)
    if (!n || (c.kind === 'start' && n.status === 'cached' && !n.emitted)) {
      if (c.kind === 'finish' && !n) {
        // Finished without our seeing it start (frames lost in a reconnect): no duration.
        n = newNode(c.id, timeMs, 'running')
        n.startUnknown = true
      } else {
        n = newNode(c.id, timeMs, 'running')
      }
      s.nodes.set(c.id, n)
      if (sample) applySample(sample, [n])
      if (!n.startUnknown) {
        out.push(
          nodeStartedEvent(isoTime(timeMs), s.id, {
            node_id: c.id,
            node_type: s.graph?.[c.realId ?? c.id]?.class_type ?? null,
            display_node: c.displayId ?? null,
            real_node_id: c.realId ?? null,
            parent_node_id: c.parentId ?? null,
          }),
        )
      }
    }
    if (c.realId !== undefined && c.realId !== null) n.realId = c.realId
    if (c.displayId !== undefined && c.displayId !== null) n.displayId = c.displayId
    if (c.parentId !== undefined && c.parentId !== null) n.parentId = c.parentId
    if (c.progress && n.status === 'running') n.progress = c.progress
    if (c.kind === 'finish') {
      if (n.status === 'running') closeNode(out, s, n, 'success', timeMs)
      // A cached output node replays its UI and reports "finished": its record is complete now.
      else if (n.status === 'cached' && !n.emitted) emitNode(out, s, n, timeMs)
    }
  }

  const addFiles = (s: SessionState, n: NodeState, files: OutputFile[]): void => {
    const key = (f: OutputFile) => `${f.node_id}\u0000${f.type}\u0000${f.subfolder}\u0000${f.filename}`
    const seenNode = new Set(n.files.map(key))
    const seenSession = new Set(s.files.map(key))
    for (const f of files) {
      if (!seenNode.has(key(f))) n.files.push(f)
      if (!seenSession.has(key(f))) s.files.push(f)
    }
  }

  return { startSession, applyChanges, addFiles }
}

/** The end of a session. */
export type SessionEnd = ReturnType<typeof sessionEnd>

/** The end of a session: success, error or interrupted, closing every node still open. */
export function sessionEnd(c: CaptureCore & NodeRecords & NodeChanges) {
  const { closeNode, emitNode, retire, startSession } = c
  /**
   * Ends a session. `res` holds what the shell fetched for this frame: the environment if the session had
   * not started yet, one GPU sample if nodes were still running (see `needs` in message-fold.ts).
   */
  const finishSession = (
    out: AuditEventInput[],
    s: SessionState,
    end: { status: 'success' | 'error' | 'interrupted'; failedNodeId: string | null; extra: JsonObject },
    timeMs: number,
    error: JsonValue,
    errorData: ExecutionErrorData | null,
    res: Resources,
  ): void => {
    const { status, failedNodeId, extra } = end
    startSession(out, s, timeMs, res.environment)
    const open = [...s.nodes.values()].filter((n) => n.status === 'running')
    if (open.length > 0 && res.sample) applySample(res.sample, open)
    let failedSeen = false
    for (const n of open) {
      const failed = failedNodeId !== null && (n.id === failedNodeId || n.realId === failedNodeId)
      failedSeen ||= failed
      if (failed && status === 'error' && errorData) {
        n.errorMessage = errorData.exception_message ?? null
        n.exceptionType = errorData.exception_type ?? null
        n.traceback = errorData.traceback ?? null
        closeNode(out, s, n, 'error', timeMs)
      } else if (failed || status !== 'success') {
        closeNode(out, s, n, 'interrupted', timeMs)
      } else if (n.blocked !== null) {
        n.errorMessage = n.blocked
        n.exceptionType = 'ExecutionBlocked'
        closeNode(out, s, n, 'error', timeMs)
      } else {
        closeNode(out, s, n, 'success', timeMs)
      }
    }
    if (failedNodeId !== null && !failedSeen && !s.nodes.get(failedNodeId)?.emitted) {
      // The failing node was never seen running (it failed at once, or its frames were lost).
      const n = s.nodes.get(failedNodeId) ?? newNode(failedNodeId, timeMs, 'running')
      s.nodes.set(failedNodeId, n)
      n.startUnknown = true
      if (status === 'error' && errorData) {
        n.errorMessage = errorData.exception_message ?? null
        n.exceptionType = errorData.exception_type ?? null
        n.traceback = errorData.traceback ?? null
        closeNode(out, s, n, 'error', timeMs)
      } else {
        closeNode(out, s, n, 'interrupted', timeMs)
      }
    }
    for (const n of s.nodes.values()) {
      if (n.status === 'cached' && !n.emitted) emitNode(out, s, n, timeMs)
    }
    const startedAt = s.startedAtMs
    const patch: SessionPatch = {
      status,
      started_at: startedAt === null ? null : isoTime(startedAt),
      ended_at: isoTime(timeMs),
      duration_ms: startedAt === null ? null : Math.trunc(timeMs) - Math.trunc(startedAt),
      error,
      outputs: s.files,
    }
    out.push(executionFinishedEvent(isoTime(timeMs), s.id, patch, extra))
    retire(s, status)
  }

  return { finishSession }
}

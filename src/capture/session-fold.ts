/**
 * The fold of one prompt's node changes into node records and session events: nodes start, finish, are
 * cached or fail; a session starts once and ends once (then retires to the recent map, where only a late
 * answer or a correction can still reach it). Timing rules: comfyui-protocol.md §7.7.
 */
import { canonicalJson } from '../audit/json.js'
import type { AuditEventInput, JsonObject, JsonValue, NodeRunRecord, NodeRunStatus } from '../audit/types.js'
import { type GpuSample } from './gpu-sampler.js'
import { isoTime, toJsonObject, toJsonValue } from './json-value.js'
import { nodeInputs } from './prompt-analysis.js'
import { type OpenNodeRun } from './reconcile.js'
import { type ExecutionErrorData } from '../comfyui/schemas.js'
import {
  newNode,
  MAX_RECENT_SESSIONS,
  type CaptureCore,
  type Change,
  type NodeState,
  type OutputFile,
  type SessionPatch,
  type SessionState,
} from './capture-state.js'
import type { CaptureEnvironment } from './capture-environment.js'

/** Node records of a session: how a node's state becomes its `node.finished` record. */
export type NodeRecords = ReturnType<typeof nodeRecords>

export function nodeRecords(c: CaptureCore) {
  const { sessions, recent, lostIds, push, maxLen } = c
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
    push(out, 'node.finished', timeMs, s.id, {
      node_run: toJsonObject(record),
      outputs: toJsonValue(n.files),
    })
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

export function nodeChanges(c: CaptureCore & CaptureEnvironment & NodeRecords) {
  const { push, getEnvironment, sampleNow, applySample, runningNodes, emitNode, closeNode } = c
  // The environment last written to the log: a snapshot event only when it changes.
  let envEmittedJson: string | null = null
  const startSession = async (out: AuditEventInput[], s: SessionState, timeMs: number): Promise<void> => {
    if (s.phase !== 'queued') return
    s.phase = 'running'
    s.startedAtMs = timeMs
    const environment = await getEnvironment()
    // One log event each time the environment changes (each session carries its own copy in its start patch).
    const envJson = environment ? canonicalJson(toJsonObject(environment)) : null
    if (environment && envJson !== envEmittedJson) {
      envEmittedJson = envJson
      push(out, 'environment.snapshot', timeMs, null, { environment: toJsonObject(environment) })
    }
    const patch: SessionPatch = { status: 'running', started_at: isoTime(timeMs), environment }
    push(out, 'execution.started', timeMs, s.id, { session: toJsonObject(patch) })
  }

  /** Applies node changes of one frame; takes one GPU sample first when a node really starts or ends. */
  const applyChanges = async (
    out: AuditEventInput[],
    s: SessionState,
    changes: readonly Change[],
    timeMs: number,
  ): Promise<void> => {
    const isTransition = (c: Change): boolean => {
      const n = s.nodes.get(c.id)
      if (c.kind === 'start') return !n || (n.status === 'cached' && !n.emitted)
      if (c.kind === 'finish') return !n || n.status === 'running'
      return !n
    }
    if (!changes.some(isTransition)) {
      for (const c of changes) applyChange(out, s, c, timeMs, null)
      return
    }
    const sample = await sampleNow()
    if (sample) applySample(sample, runningNodes())
    for (const c of changes) applyChange(out, s, c, timeMs, sample)
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
        push(out, 'node.started', timeMs, s.id, {
          node_id: c.id,
          node_type: s.graph?.[c.realId ?? c.id]?.class_type ?? null,
          display_node: c.displayId ?? null,
          real_node_id: c.realId ?? null,
          parent_node_id: c.parentId ?? null,
        })
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
export function sessionEnd(c: CaptureCore & CaptureEnvironment & NodeRecords & NodeChanges) {
  const { push, sampleNow, applySample, closeNode, emitNode, retire, startSession } = c
  const finishSession = async (
    out: AuditEventInput[],
    s: SessionState,
    status: 'success' | 'error' | 'interrupted',
    timeMs: number,
    failedNodeId: string | null,
    extra: JsonObject,
    error: JsonValue,
    errorData: ExecutionErrorData | null,
  ): Promise<void> => {
    await startSession(out, s, timeMs)
    const open = [...s.nodes.values()].filter((n) => n.status === 'running')
    if (open.length > 0) {
      const sample = await sampleNow()
      if (sample) applySample(sample, open)
    }
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
    push(out, 'execution.finished', timeMs, s.id, { ...extra, session: toJsonObject(patch) })
    retire(s, status)
  }

  return { finishSession }
}

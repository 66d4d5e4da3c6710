/**
 * Typed WebSocket messages into a session: a message of a known prompt is dispatched to the fold; one of a
 * prompt not yet submitted waits (bounded, for `pendingFrameTtlMs`) for its submission; a late end of a prompt
 * already closed as lost becomes a `session.corrected`.
 */
import type { AuditEventInput } from '../audit/types.js'
import { isoTime, toJsonObject } from './json-value.js'
import { redactString } from './redact-event.js'
import { outputFiles, truncateLongStrings } from './prompt-analysis.js'
import { storedError } from './reconcile.js'
import { isJsonObject, type ExecutionErrorData, type WsMessage } from '../comfyui/schemas.js'
import {
  newNode,
  MAX_PENDING_FRAMES,
  MAX_PENDING_PROMPTS,
  type CaptureCore,
  type Change,
  type SessionState,
} from './capture-state.js'
import type { CaptureEnvironment } from './capture-environment.js'
import type { NodeChanges, NodeRecords, SessionEnd } from './session-fold.js'

/** What the dispatch of a message needs. */
export type FoldContext = CaptureCore & CaptureEnvironment & NodeRecords & NodeChanges & SessionEnd

function startsExecution(msg: WsMessage): boolean {
  return (
    msg.type === 'execution_start' ||
    msg.type === 'execution_cached' ||
    (msg.type === 'executing' && msg.data.node !== null)
  )
}

function isEnd(msg: WsMessage): boolean {
  return (
    msg.type === 'execution_success' ||
    (msg.type === 'execution_error' && msg.data.exception_type !== 'ExecutionBlocked') ||
    msg.type === 'execution_interrupted'
  )
}

/** Outputs and errors of a session's nodes. */
type OutputsAndErrors = ReturnType<typeof outputsAndErrors>

export function outputsAndErrors(c: FoldContext) {
  const { options, onError, maxLen, redactText, push, redactValue, applyChanges, addFiles, finishSession } = c
  /** A node's UI output: stored (redacted, truncated) and its files added to node and session. */
  const recordExecuted = async (
    out: AuditEventInput[],
    s: SessionState,
    msg: Extract<WsMessage, { type: 'executed' }>,
    timeMs: number,
  ): Promise<void> => {
    await applyChanges(
      out,
      s,
      [{ id: msg.data.node, kind: 'touch', displayId: msg.data.display_node ?? null }],
      timeMs,
    )
    const n = s.nodes.get(msg.data.node)
    if (!n) return
    const ui = msg.data.output ?? null
    // A custom node's UI output may hold anything, secret-named keys too: the whole policy applies.
    const stored = ui === null ? null : truncateLongStrings(redactValue(ui, ['output', n.id]), maxLen)
    n.outputs = isJsonObject(stored) ? stored : null
    const files = outputFiles(msg.data.node, ui)
    if (redactText && options.onRedactedFile) {
      for (const f of files) {
        // The same function the emitted event goes through, so `recorded` is the name the log will hold.
        const recorded = {
          ...f,
          filename: redactString(f.filename, redactText),
          subfolder: redactString(f.subfolder, redactText),
        }
        if (recorded.filename === f.filename && recorded.subfolder === f.subfolder) continue
        try {
          options.onRedactedFile({ sessionId: s.id, nodeId: f.node_id, recorded, real: f })
        } catch (err) {
          onError(err)
        }
      }
    }
    addFiles(s, n, files)
  }

  /** `execution_error`: a blocked node is noted (the run goes on), any other error ends the session. */
  const recordError = async (
    out: AuditEventInput[],
    s: SessionState,
    data: ExecutionErrorData,
    timeMs: number,
  ): Promise<void> => {
    const nodeId = data.node_id ?? null
    if (data.exception_type === 'ExecutionBlocked') {
      // Not fatal: the run goes on and may still succeed (§1.3).
      const n = nodeId === null ? undefined : s.nodes.get(nodeId)
      if (n && n.status === 'running') n.blocked = data.exception_message ?? 'ExecutionBlocked'
      push(out, 'node.error_blocked', timeMs, s.id, {
        node_id: nodeId,
        node_type: data.node_type ?? null,
        exception_message: truncateLongStrings(data.exception_message ?? null, maxLen),
      })
      return
    }
    const error = storedError(toJsonObject(data), options.redact, maxLen)
    await finishSession(out, s, 'error', timeMs, nodeId, { error_node: nodeId }, error, data)
  }

  return { recordExecuted, recordError }
}

/** The dispatch of one typed message to its session's fold. */
type MessageDispatch = ReturnType<typeof messageDispatch>

export function messageDispatch(c: FoldContext & OutputsAndErrors) {
  const { push, startSession, applyChanges, finishSession, recordExecuted, recordError } = c
  const dispatch = async (
    out: AuditEventInput[],
    s: SessionState,
    msg: WsMessage,
    timeMs: number,
  ): Promise<void> => {
    switch (msg.type) {
      case 'execution_start':
        await startSession(out, s, timeMs)
        return
      case 'execution_cached': {
        await startSession(out, s, timeMs)
        for (const id of msg.data.nodes) {
          if (!s.nodes.has(id)) s.nodes.set(id, newNode(id, timeMs, 'cached'))
        }
        push(out, 'execution.cached', timeMs, s.id, { nodes: msg.data.nodes })
        return
      }
      case 'executing': {
        const node = msg.data.node
        if (node === null) {
          // End marker: ComfyUI wrote its history entry. A session still open here ended unseen.
          s.ended = true
          s.currentNode = null
          return
        }
        s.currentNode = node
        await startSession(out, s, timeMs)
        await applyChanges(
          out,
          s,
          [{ id: node, kind: 'start', displayId: msg.data.display_node ?? null }],
          timeMs,
        )
        return
      }
      case 'progress': {
        const node = msg.data.node
        if (node === null || node === undefined) return
        s.currentNode = node
        await startSession(out, s, timeMs)
        await applyChanges(
          out,
          s,
          [
            {
              id: node,
              kind: s.nodes.has(node) ? 'touch' : 'start',
              progress: { value: msg.data.value, max: msg.data.max },
            },
          ],
          timeMs,
        )
        return
      }
      case 'progress_state': {
        const changes: Change[] = []
        for (const [id, entry] of Object.entries(msg.data.nodes)) {
          const fingerprint = `${entry.state}\u0000${entry.value}\u0000${entry.max}`
          if (s.progressState.get(id) === fingerprint) continue
          s.progressState.set(id, fingerprint)
          changes.push({
            id,
            kind: entry.state === 'finished' ? 'finish' : entry.state === 'running' ? 'start' : 'touch',
            realId: entry.real_node_id ?? null,
            displayId: entry.display_node_id ?? null,
            parentId: entry.parent_node_id ?? null,
            progress: { value: entry.value, max: entry.max },
          })
        }
        if (changes.length === 0) return
        if (changes.some((c) => c.kind === 'start')) await startSession(out, s, timeMs)
        await applyChanges(out, s, changes, timeMs)
        return
      }
      case 'executed':
        await recordExecuted(out, s, msg, timeMs)
        return
      case 'execution_success':
        await finishSession(out, s, 'success', timeMs, null, {}, null, null)
        return
      case 'execution_error':
        await recordError(out, s, msg.data, timeMs)
        return
      case 'execution_interrupted': {
        const nodeId = msg.data.node_id ?? null
        await finishSession(
          out,
          s,
          'interrupted',
          timeMs,
          nodeId,
          {
            interrupted: toJsonObject({
              node_id: nodeId,
              node_type: msg.data.node_type ?? null,
              executed: msg.data.executed ?? [],
            }),
          },
          null,
          null,
        )
        return
      }
    }
  }

  return { dispatch }
}

/** Messages in: to their session, or held until their prompt is submitted. */
export type MessageIntake = ReturnType<typeof messageIntake>

export function messageIntake(c: FoldContext & MessageDispatch) {
  const { sessions, recent, pending, lostIds, ttl, push, dispatch } = c
  const bufferFrame = (promptId: string, msg: WsMessage, timeMs: number): void => {
    for (const [id, p] of pending) {
      if (p.firstMs < timeMs - ttl) pending.delete(id)
      else break
    }
    let p = pending.get(promptId)
    if (!p) {
      p = { firstMs: timeMs, frames: [] }
      pending.set(promptId, p)
      if (pending.size > MAX_PENDING_PROMPTS) {
        const oldest = pending.keys().next().value
        if (oldest !== undefined) pending.delete(oldest)
      }
    }
    if (p.frames.length < MAX_PENDING_FRAMES) p.frames.push({ msg, timeMs })
  }

  const handleMessage = async (out: AuditEventInput[], msg: WsMessage, timeMs: number): Promise<void> => {
    if (msg.type === 'status' || msg.type === 'feature_flags' || msg.type === 'logs') return
    const promptId = msg.data.prompt_id
    // The reconnect form of `executing` names no prompt; nothing to attribute.
    if (promptId === undefined) return
    let s = sessions.get(promptId)
    if (!s) {
      const old = recent.get(promptId)
      if (old && old.finalStatus === 'cancelled' && startsExecution(msg)) {
        // The queue deletion lost the race against the worker: the prompt runs after all.
        recent.delete(promptId)
        old.phase = 'queued'
        old.finalStatus = null
        sessions.set(promptId, old)
        s = old
      } else if (old && old.finalStatus === 'lost' && isEnd(msg)) {
        // Reconciliation called it lost, yet ComfyUI finished it: say so with a new event, never silently.
        const status =
          msg.type === 'execution_success'
            ? 'success'
            : msg.type === 'execution_error'
              ? 'error'
              : 'interrupted'
        old.finalStatus = status
        lostIds.delete(promptId)
        push(out, 'session.corrected', timeMs, promptId, {
          session: {
            status,
            ended_at: isoTime(timeMs),
            status_reason: `closed as lost by reconciliation, then ComfyUI reported ${msg.type} on the socket`,
          },
          from: 'lost',
          to: status,
          source: 'socket',
        })
        return
      } else if (old) {
        return
      } else {
        bufferFrame(promptId, msg, timeMs)
        return
      }
    }
    await dispatch(out, s, msg, timeMs)
  }

  /** Replays the frames that arrived before the prompt's submission, now that its session exists. */
  const replayPending = async (out: AuditEventInput[], promptId: string): Promise<void> => {
    const early = pending.get(promptId)
    if (!early) return
    pending.delete(promptId)
    for (const f of early.frames) {
      const current = sessions.get(promptId)
      if (!current) break
      await dispatch(out, current, f.msg, f.timeMs)
    }
  }

  return { handleMessage, replayPending }
}

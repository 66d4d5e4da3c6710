/**
 * Typed WebSocket messages into a session: a message of a known prompt is dispatched to the fold; one of a
 * prompt not yet submitted waits (bounded, for `pendingFrameTtlMillis`) for its submission; a late end of a prompt
 * already closed as lost becomes a `session.corrected`. Synchronous: what a message needs from outside (the
 * environment, a GPU sample) the shell fetches first, asking {@link MessageIntake.needs}, and passes in.
 */
import { executionCachedEvent, nodeErrorBlockedEvent, sessionCorrectedEvent } from '../audit/audit-events.js'
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
  type PendingFrame,
  type SessionState,
} from './capture-state.js'
import {
  isTransition,
  type NodeChanges,
  type NodeRecords,
  type Resources,
  type SessionEnd,
} from './session-fold.js'

/** What the dispatch of a message needs. */
export type FoldContext = CaptureCore & NodeRecords & NodeChanges & SessionEnd

/** What the shell must fetch before a message's step (see {@link Resources}). */
export interface Needs {
  readonly environment: boolean
  readonly sample: boolean
}

const NOTHING: Needs = { environment: false, sample: false }

/** The `progress_state` entries that changed since the session's last one, and their new fingerprints. */
function progressChanges(
  s: SessionState,
  msg: Extract<WsMessage, { type: 'progress_state' }>,
): { changes: Change[]; fingerprints: [string, string][] } {
  const changes: Change[] = []
  const fingerprints: [string, string][] = []
  for (const [id, entry] of Object.entries(msg.data.nodes)) {
    const fingerprint = `${entry.state}\u0000${entry.value}\u0000${entry.max}`
    if (s.progressState.get(id) === fingerprint) continue
    fingerprints.push([id, fingerprint])
    changes.push({
      id,
      kind: entry.state === 'finished' ? 'finish' : entry.state === 'running' ? 'start' : 'touch',
      realId: entry.real_node_id ?? null,
      displayId: entry.display_node_id ?? null,
      parentId: entry.parent_node_id ?? null,
      progress: { value: entry.value, max: entry.max },
    })
  }
  return { changes, fingerprints }
}

/**
 * What dispatching `msg` to `s` will use, read off the same rules the dispatch follows: the environment when
 * it starts a queued session, a sample when it starts or ends a node (or ends a session with nodes running).
 * `queued` is the phase the session will have (a cancelled one that runs after all is queued again).
 */
function dispatchNeeds(s: SessionState, queued: boolean, msg: WsMessage): Needs {
  const hasNode = (id: string): boolean => s.nodes.has(id)
  switch (msg.type) {
    case 'execution_start':
    case 'execution_cached':
      return { environment: queued, sample: false }
    case 'executing': {
      const node = msg.data.node
      if (node === null) return NOTHING
      return { environment: queued, sample: isTransition(s, { id: node, kind: 'start' }) }
    }
    case 'progress': {
      const node = msg.data.node
      if (node === null || node === undefined) return NOTHING
      return { environment: queued, sample: !hasNode(node) }
    }
    case 'progress_state': {
      const { changes } = progressChanges(s, msg)
      return {
        environment: queued && changes.some((c) => c.kind === 'start'),
        sample: changes.some((c) => isTransition(s, c)),
      }
    }
    case 'executed':
      return { environment: false, sample: !hasNode(msg.data.node) }
    case 'execution_error':
      if (msg.data.exception_type === 'ExecutionBlocked') return NOTHING
      return endNeeds(s, queued)
    case 'execution_success':
    case 'execution_interrupted':
      return endNeeds(s, queued)
    default:
      return NOTHING
  }
}

function endNeeds(s: SessionState, queued: boolean): Needs {
  return { environment: queued, sample: [...s.nodes.values()].some((n) => n.status === 'running') }
}

/** The prompt a message names; none for the socket-wide ones. */
function promptIdOf(msg: WsMessage): string | undefined {
  if (msg.type === 'status' || msg.type === 'feature_flags' || msg.type === 'logs') return undefined
  return msg.data.prompt_id
}

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
  const { config, notes, maxLen, redactText, redactValue, applyChanges, addFiles, finishSession } = c
  /** A node's UI output: stored (redacted, truncated) and its files added to node and session. */
  const recordExecuted = (
    out: AuditEventInput[],
    s: SessionState,
    msg: Extract<WsMessage, { type: 'executed' }>,
    timeMs: number,
    res: Resources,
  ): void => {
    applyChanges(
      out,
      s,
      [{ id: msg.data.node, kind: 'touch', displayId: msg.data.display_node ?? null }],
      timeMs,
      res.sample,
    )
    const n = s.nodes.get(msg.data.node)
    if (!n) return
    const ui = msg.data.output ?? null
    // A custom node's UI output may hold anything, secret-named keys too: the whole policy applies.
    const stored = ui === null ? null : truncateLongStrings(redactValue(ui, ['output', n.id]), maxLen)
    n.outputs = isJsonObject(stored) ? stored : null
    const files = outputFiles(msg.data.node, ui)
    if (redactText && config.reportRedactedFiles) {
      for (const f of files) {
        // The same function the emitted event goes through, so `recorded` is the name the log will hold.
        const recorded = {
          ...f,
          filename: redactString(f.filename, redactText),
          subfolder: redactString(f.subfolder, redactText),
        }
        if (recorded.filename === f.filename && recorded.subfolder === f.subfolder) continue
        notes.redactedFiles.push({ sessionId: s.id, nodeId: f.node_id, recorded, real: f })
      }
    }
    addFiles(s, n, files)
  }

  /** `execution_error`: a blocked node is noted (the run goes on), any other error ends the session. */
  const recordError = (
    out: AuditEventInput[],
    s: SessionState,
    data: ExecutionErrorData,
    timeMs: number,
    res: Resources,
  ): void => {
    const nodeId = data.node_id ?? null
    if (data.exception_type === 'ExecutionBlocked') {
      // Not fatal: the run goes on and may still succeed (§1.3).
      const n = nodeId === null ? undefined : s.nodes.get(nodeId)
      if (n && n.status === 'running') n.blocked = data.exception_message ?? 'ExecutionBlocked'
      out.push(
        nodeErrorBlockedEvent(isoTime(timeMs), s.id, {
          node_id: nodeId,
          node_type: data.node_type ?? null,
          exception_message: truncateLongStrings(data.exception_message ?? null, maxLen),
        }),
      )
      return
    }
    const error = storedError(toJsonObject(data), config.redact, maxLen)
    const end = { status: 'error', failedNodeId: nodeId, extra: { error_node: nodeId } } as const
    finishSession(out, s, end, timeMs, error, data, res)
  }

  return { recordExecuted, recordError }
}

/** The dispatch of one typed message to its session's fold. */
type MessageDispatch = ReturnType<typeof messageDispatch>

export function messageDispatch(c: FoldContext & OutputsAndErrors) {
  const { startSession, applyChanges, finishSession, recordExecuted, recordError } = c
  const dispatch = (
    out: AuditEventInput[],
    s: SessionState,
    msg: WsMessage,
    timeMs: number,
    res: Resources,
  ): void => {
    const env = res.environment
    switch (msg.type) {
      case 'execution_start':
        startSession(out, s, timeMs, env)
        return
      case 'execution_cached': {
        startSession(out, s, timeMs, env)
        for (const id of msg.data.nodes) {
          if (!s.nodes.has(id)) s.nodes.set(id, newNode(id, timeMs, 'cached'))
        }
        out.push(executionCachedEvent(isoTime(timeMs), s.id, msg.data.nodes))
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
        startSession(out, s, timeMs, env)
        const change: Change = { id: node, kind: 'start', displayId: msg.data.display_node ?? null }
        applyChanges(out, s, [change], timeMs, res.sample)
        return
      }
      case 'progress': {
        const node = msg.data.node
        if (node === null || node === undefined) return
        s.currentNode = node
        startSession(out, s, timeMs, env)
        const progress = { value: msg.data.value, max: msg.data.max }
        const change: Change = { id: node, kind: s.nodes.has(node) ? 'touch' : 'start', progress }
        applyChanges(out, s, [change], timeMs, res.sample)
        return
      }
      case 'progress_state': {
        const { changes, fingerprints } = progressChanges(s, msg)
        for (const [id, fingerprint] of fingerprints) s.progressState.set(id, fingerprint)
        if (changes.length === 0) return
        if (changes.some((ch) => ch.kind === 'start')) startSession(out, s, timeMs, env)
        applyChanges(out, s, changes, timeMs, res.sample)
        return
      }
      case 'executed':
        recordExecuted(out, s, msg, timeMs, res)
        return
      case 'execution_success':
        finishSession(out, s, { status: 'success', failedNodeId: null, extra: {} }, timeMs, null, null, res)
        return
      case 'execution_error':
        recordError(out, s, msg.data, timeMs, res)
        return
      case 'execution_interrupted': {
        const nodeId = msg.data.node_id ?? null
        const interrupted = toJsonObject({
          node_id: nodeId,
          node_type: msg.data.node_type ?? null,
          executed: msg.data.executed ?? [],
        })
        const end = { status: 'interrupted', failedNodeId: nodeId, extra: { interrupted } } as const
        finishSession(out, s, end, timeMs, null, null, res)
        return
      }
    }
  }

  return { dispatch }
}

/** Where a message goes: to a session (reopened first when cancelled), a correction, the buffer, or nowhere. */
type Route =
  | { readonly to: 'session'; readonly s: SessionState; readonly reopen: boolean }
  | { readonly to: 'correct'; readonly s: SessionState }
  | { readonly to: 'buffer'; readonly promptId: string }
  | { readonly to: 'drop' }

/** Messages in: to their session, or held until their prompt is submitted. */
export type MessageIntake = ReturnType<typeof messageIntake>

export function messageIntake(c: FoldContext & MessageDispatch) {
  const { sessions, recent, pending, lostIds, ttl, dispatch } = c
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

  /** Reads, without changing anything, where a message goes. */
  const route = (msg: WsMessage): Route => {
    const promptId = promptIdOf(msg)
    // The reconnect form of `executing` names no prompt; nothing to attribute.
    if (promptId === undefined) return { to: 'drop' }
    const s = sessions.get(promptId)
    if (s) return { to: 'session', s, reopen: false }
    const old = recent.get(promptId)
    // The queue deletion lost the race against the worker: the prompt runs after all.
    if (old && old.finalStatus === 'cancelled' && startsExecution(msg))
      return { to: 'session', s: old, reopen: true }
    if (old && old.finalStatus === 'lost' && isEnd(msg)) return { to: 'correct', s: old }
    return old ? { to: 'drop' } : { to: 'buffer', promptId }
  }

  /** What the shell must fetch before {@link handleMessage} (a replayed frame goes the same way). */
  const needs = (msg: WsMessage): Needs => {
    const r = route(msg)
    return r.to === 'session' ? dispatchNeeds(r.s, r.reopen || r.s.phase === 'queued', msg) : NOTHING
  }

  const handleMessage = (out: AuditEventInput[], msg: WsMessage, timeMs: number, res: Resources): void => {
    const r = route(msg)
    switch (r.to) {
      case 'drop':
        return
      case 'buffer':
        bufferFrame(r.promptId, msg, timeMs)
        return
      case 'correct': {
        // Reconciliation called it lost, yet ComfyUI finished it: say so with a new event, never silently.
        const old = r.s
        const status: 'success' | 'error' | 'interrupted' =
          msg.type === 'execution_success'
            ? 'success'
            : msg.type === 'execution_error'
              ? 'error'
              : 'interrupted'
        old.finalStatus = status
        lostIds.delete(old.id)
        const patch = {
          status,
          ended_at: isoTime(timeMs),
          status_reason: `closed as lost by reconciliation, then ComfyUI reported ${msg.type} on the socket`,
        }
        out.push(
          sessionCorrectedEvent(isoTime(timeMs), old.id, patch, {
            from: 'lost',
            to: status,
            source: 'socket',
          }),
        )
        return
      }
      case 'session': {
        const s = r.s
        if (r.reopen) {
          recent.delete(s.id)
          s.phase = 'queued'
          s.finalStatus = null
          sessions.set(s.id, s)
        }
        dispatch(out, s, msg, timeMs, res)
        return
      }
    }
  }

  /**
   * The frames that arrived before the prompt's submission, taken out of the buffer now that its session
   * exists: the shell feeds them back one by one ({@link replayMessage}), fetching what each needs.
   */
  const takePending = (promptId: string): PendingFrame[] => {
    const early = pending.get(promptId)
    if (!early) return []
    pending.delete(promptId)
    return early.frames
  }

  /** A frame taken by {@link takePending}: dispatched while its session is open, dropped once it closed. */
  const replayMessage = (out: AuditEventInput[], frame: PendingFrame, res: Resources): void => {
    const promptId = promptIdOf(frame.msg)
    const current = promptId === undefined ? undefined : sessions.get(promptId)
    if (current) dispatch(out, current, frame.msg, frame.timeMs, res)
  }

  /** What the shell must fetch before {@link replayMessage}. */
  const replayNeeds = (frame: PendingFrame): Needs => {
    const promptId = promptIdOf(frame.msg)
    const current = promptId === undefined ? undefined : sessions.get(promptId)
    return current ? dispatchNeeds(current, current.phase === 'queued', frame.msg) : NOTHING
  }

  return { needs, handleMessage, takePending, replayMessage, replayNeeds }
}

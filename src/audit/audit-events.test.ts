import { describe, expect, it } from 'vitest'
import {
  nodeFinishedEvent,
  outputHashedEvent,
  sessionBypassEvent,
  sessionLostEvent,
  sessionReconciledEvent,
} from './audit-events.js'
import { decodeEvent } from './decode-event.js'
import type { AuditEventInput, NodeRunRecord } from './types.js'

const TIME = '2026-11-26T05:00:00.000Z'
const SESSION = 'bb98f9c0-a979-46e3-a4d6-83dac6ea3753'
const FILE = { node_id: '9', filename: 'out_00001_.png', subfolder: '', type: 'output' }

const RUN: NodeRunRecord = {
  session_id: SESSION,
  node_id: '7',
  node_type: 'KSampler',
  timestamp_start: TIME,
  timestamp_end: null,
  duration_ms: null,
  inputs: {},
  outputs: null,
  status: 'interrupted',
  error_message: 'ComfyUI restarted: the prompt is neither queued nor in history',
  exception_type: null,
  traceback: null,
  gpu_memory_used: null,
  gpu_memory_torch: null,
  display_node: '7',
  real_node_id: '7',
  parent_node_id: null,
  progress: null,
}

function decoded(e: AuditEventInput) {
  const result = decodeEvent({ ...e, origin: 'test', seq: 0 })
  if (!result.ok) throw new Error(result.reason)
  return result.event
}

describe('reconciliation event constructors', () => {
  it('session.reconciled decodes to its kind, patch first, then outputs and interruption', () => {
    const e = sessionReconciledEvent(
      TIME,
      SESSION,
      { status: 'interrupted', outputs: [FILE], flags: ['reconciled'] },
      { outputs: [FILE], interrupted: { node_id: '7' } },
    )
    const d = decoded(e)
    expect(d.kind).toBe('session.reconciled')
    expect(d.session_id).toBe(SESSION)
    expect(Object.keys(d.payload)).toEqual(['session', 'outputs', 'interrupted'])
    expect(d.payload.outputs).toEqual([FILE])
  })

  it('session.lost decodes to its kind and keeps its evidence in order', () => {
    const e = sessionLostEvent(
      TIME,
      SESSION,
      { status: 'lost', ended_at: TIME, status_reason: 'gone' },
      {
        reason: 'gone',
        evidence: {
          queue_running: 0,
          queue_pending: 1,
          history_entries: 3,
          in_queue: false,
          in_history: false,
          accepted: false,
          orphaned: true,
          comfy_restarted: false,
          decided_at: TIME,
        },
      },
    )
    const d = decoded(e)
    expect(d.kind).toBe('session.lost')
    expect(Object.keys(d.payload)).toEqual(['session', 'reason', 'evidence'])
    expect(Object.keys(d.payload.evidence as object)).toEqual([
      'queue_running',
      'queue_pending',
      'history_entries',
      'in_queue',
      'in_history',
      'accepted',
      'orphaned',
      'comfy_restarted',
      'decided_at',
    ])
  })

  it('session.bypass decodes to its kind and writes seal_rejected only when a seal was rejected', () => {
    const patch = { status: 'success' as const, submitter: null, flags: ['bypass'] }
    const plain = decoded(sessionBypassEvent(TIME, SESSION, patch, { outputs: [FILE], sealRejected: null }))
    expect(plain.kind).toBe('session.bypass')
    expect(Object.keys(plain.payload)).toEqual(['session', 'outputs'])
    const sealed = decoded(sessionBypassEvent(TIME, SESSION, patch, { outputs: [], sealRejected: 'forged' }))
    expect(sealed.kind).toBe('session.bypass')
    expect(sealed.payload).toMatchObject({ seal_rejected: 'forged' })
    expect(Object.keys(sealed.payload)).toEqual(['session', 'outputs', 'seal_rejected'])
  })

  it('node.finished without files (a reconciled run) decodes with no outputs key', () => {
    const d = decoded(nodeFinishedEvent(TIME, RUN))
    expect(d.kind).toBe('node.finished')
    expect(d.session_id).toBe(SESSION)
    expect(Object.keys(d.payload)).toEqual(['node_run'])
    const withFiles = decoded(nodeFinishedEvent(TIME, RUN, [FILE]))
    expect(Object.keys(withFiles.payload)).toEqual(['node_run', 'outputs'])
  })

  it('output.hashed decodes to its kind with its rows', () => {
    const row = { ...FILE, sha256: 'ab'.repeat(32), bytes: 12, width: 8, height: 8 }
    const d = decoded(outputHashedEvent(TIME, SESSION, [row]))
    expect(d.kind).toBe('output.hashed')
    expect(d.payload.outputs).toEqual([row])
  })

  it('the decoder is what these checks rest on: a payload off its schema does not decode', () => {
    const e = sessionLostEvent(
      TIME,
      SESSION,
      { status: 'lost' },
      {
        reason: 'gone',
        evidence: {
          queue_running: 0,
          queue_pending: 0,
          history_entries: 0,
          in_queue: false,
          in_history: false,
          accepted: true,
          comfy_restarted: false,
          decided_at: TIME,
        },
      },
    )
    const off = { ...e, origin: 'test', seq: 0, payload: { ...e.payload, session: { status: 'vanished' } } }
    expect(decodeEvent(off).ok).toBe(false)
  })
})

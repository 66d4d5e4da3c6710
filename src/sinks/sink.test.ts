import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../audit/types.js'
import {
  createSessionMerger,
  isoToUnixNanos,
  parseRecord,
  recordError,
  serializeRecord,
  toSinkRecords,
} from './sink.js'
import { nodeRun, recordsOf, sessionEvents } from './sink-test-kit.js'

describe('toSinkRecords', () => {
  it('maps a session to session, node-run and action records with origin:seq ids', () => {
    const records = recordsOf(
      sessionEvents({ nodes: [{ node_id: '3' }, { node_id: '8', node_type: 'VAEDecode' }] }),
    )
    expect(records.map((r) => [r.record_type, r.id, r.kind])).toEqual([
      ['session', 'comfy-audit/test:0', 'prompt.submitted'],
      ['session', 'comfy-audit/test:1', 'execution.started'],
      ['node_run', 'comfy-audit/test:2', 'node.finished'],
      ['node_run', 'comfy-audit/test:3', 'node.finished'],
      ['action', 'comfy-audit/test:4', 'action.interrupt'],
      ['session', 'comfy-audit/test:5', 'execution.finished'],
    ])
    const run = records[3]!
    expect(run).toMatchObject({
      session_id: 'prompt-1',
      node_id: '8',
      node_type: 'VAEDecode',
      timestamp_start: '2026-11-26T04:34:00.123Z',
      timestamp_end: '2026-11-26T04:34:02.623Z',
      duration_ms: 2500,
      status: 'success',
      error_message: null,
      gpu_memory_used: 6144,
      origin: 'comfy-audit/test',
      seq: 3,
    })
    expect(records[4]).toMatchObject({ action: 'interrupt', user: 'ada', session_id: 'prompt-1' })
  })

  it('merges every session patch into the closing session record when given a merger', () => {
    const records = recordsOf(sessionEvents({}))
    const closing = records.at(-1)!
    expect(closing).toMatchObject({
      record_type: 'session',
      status: 'success',
      queued_at: '2026-11-26T04:33:59.000Z',
      started_at: '2026-11-26T04:34:00.000Z',
      ended_at: '2026-11-26T04:34:05.000Z',
      client_id: 'c1',
    })
  })

  it('carries only the patch without a merger', () => {
    const events = sessionEvents({})
    const closing = toSinkRecords(events.at(-1)!)
    expect(closing).toHaveLength(1)
    expect(closing[0]).toMatchObject({ status: 'success', ended_at: '2026-11-26T04:34:05.000Z' })
    expect(closing[0]).not.toHaveProperty('queued_at')
  })

  it('numbers the second record of one event id.1', () => {
    const event: AuditEvent = {
      origin: 'o',
      seq: 7,
      kind: 'node.finished',
      time: '2026-11-26T04:34:02.623Z',
      session_id: 'prompt-1',
      payload: { node_run: nodeRun() as never, session: { status: 'running' } },
    }
    expect(toSinkRecords(event).map((r) => r.id)).toEqual(['o:7', 'o:7.1'])
  })

  it('emits nothing for events without a status change, node run or action', () => {
    const merger = createSessionMerger()
    const event: AuditEvent = {
      origin: 'o',
      seq: 1,
      kind: 'output.hashed',
      time: '2026-11-26T04:34:02.623Z',
      session_id: 'prompt-1',
      payload: { session: { outputs: [] } },
    }
    expect(toSinkRecords(event, merger)).toEqual([])
    expect(merger.size).toBe(1)
  })

  it('issue 10 item 10: ships output SHA-256s and model hashes that arrive after the run as session records', () => {
    const events = sessionEvents({})
    const last = events[events.length - 1]!
    const later = (seq: number, kind: AuditEvent['kind'], payload: AuditEvent['payload']): AuditEvent => ({
      origin: last.origin,
      seq,
      kind,
      time: '2026-11-26T04:34:09.000Z',
      session_id: last.session_id,
      payload,
    })
    const file = { node_id: '9', filename: 'out_00001_.png', subfolder: 'audit', type: 'output' }
    events.push(
      later(last.seq + 1, 'models.hashed', {
        session: { models: [{ folder: 'checkpoints', name: 'sd15.safetensors', sha256: 'a'.repeat(64) }] },
      }),
      later(last.seq + 2, 'output.hashed', { outputs: [{ ...file, sha256: 'b'.repeat(64), bytes: 1234 }] }),
    )
    const records = recordsOf(events)
    const [models, outputs] = records.slice(-2)
    expect(models).toMatchObject({
      record_type: 'session',
      kind: 'models.hashed',
      status: 'success',
      submitter: { user: 'ada' },
      models: [{ name: 'sd15.safetensors', sha256: 'a'.repeat(64) }],
    })
    expect(outputs).toMatchObject({
      record_type: 'session',
      kind: 'output.hashed',
      id: `${last.origin}:${last.seq + 2}`,
      status: 'success',
      models: [{ sha256: 'a'.repeat(64) }],
      outputs: [{ ...file, sha256: 'b'.repeat(64), bytes: 1234 }],
    })
  })

  it('forgets the least recently used session past maxSessions', () => {
    const merger = createSessionMerger({ maxSessions: 2 })
    merger.merge('o', 'a', { queued_at: 'x' })
    merger.merge('o', 'b', {})
    merger.merge('o', 'c', {})
    expect(merger.size).toBe(2)
    expect(merger.merge('o', 'a', {})).toEqual({})
  })
})

describe('record helpers', () => {
  it('serializes seeds beyond 2^53 without losing digits and reads them back', () => {
    const record = recordsOf(sessionEvents({}))[2]!
    const line = serializeRecord(record)
    expect(line).toContain('"seed":18446744073709551615')
    const back = parseRecord(line)
    expect(back.ok && back.value).toEqual(record)
  })

  it('describes the error of a failed node run and session', () => {
    const records = recordsOf(
      sessionEvents({
        status: 'error',
        nodes: [
          { status: 'error', error_message: 'boom', exception_type: 'ValueError', traceback: ['x\n', 'y\n'] },
        ],
      }),
    )
    expect(recordError(records[2]!)).toEqual({ message: 'boom', type: 'ValueError', stacktrace: 'x\ny\n' })
    expect(recordError(records.at(-1)!)).toEqual({
      message: 'CUDA out of memory',
      type: 'RuntimeError',
      stacktrace: 'a\nb\n',
    })
    expect(recordError(records[0]!)).toBeNull()
  })

  it('converts ISO times to exact epoch nanoseconds', () => {
    expect(isoToUnixNanos('2026-11-26T04:34:00.123Z')).toBe('1795667640123000000')
  })
})

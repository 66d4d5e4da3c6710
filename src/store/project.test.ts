import { describe, expect, it } from 'vitest'
import type { AuditEvent, JsonObject } from '../audit/types.js'
import { applyOutputChange, applySessionChange, projectEvents, replayDerived } from './project.js'

function event(seq: number, payload: JsonObject, sessionId: string | null = 's1'): AuditEvent {
  return {
    origin: 'gw/a',
    seq,
    kind: 'node.finished',
    time: `2026-01-01T00:00:0${seq}.000Z`,
    session_id: sessionId,
    payload,
  }
}

describe('projectEvents', () => {
  it('folds session patches of one session in log order, later keys overwriting', () => {
    const changes = projectEvents([
      event(0, { session: { status: 'queued', queued_at: 'q', http_status: null } }),
      event(1, { session: { status: 'running', http_status: 200 } }),
    ])
    expect(changes.sessions).toEqual([
      { origin: 'gw/a', session_id: 's1', patch: { status: 'running', queued_at: 'q', http_status: 200 } },
    ])
    expect(applySessionChange(undefined, changes.sessions[0]!).flags).toEqual([])
  })

  it('merges output patches and keeps the time the output was first seen', () => {
    const file = { node_id: '9', type: 'output', subfolder: '', filename: 'a.png' }
    const changes = projectEvents([
      event(1, { outputs: [file] }),
      event(2, { outputs: [{ ...file, sha256: 'ff' }] }),
    ])
    expect(changes.outputs).toHaveLength(1)
    const row = applyOutputChange(undefined, changes.outputs[0]!)
    expect(row).toMatchObject({ sha256: 'ff', bytes: null, time: '2026-01-01T00:00:01.000Z' })
    const later = applyOutputChange(row, { ...changes.outputs[0]!, patch: { bytes: 10 }, time: 'later' })
    expect(later).toMatchObject({ sha256: 'ff', bytes: 10, time: '2026-01-01T00:00:01.000Z' })
  })

  it.each([
    [{ session: [1] }, 'payload.session is not an object'],
    [{ session: { status: 'done' } }, 'payload.session.status'],
    [{ session: { models: null } }, 'payload.session.models: expected an array'],
    [{ session: { duration_ms: NaN } }, 'payload.session.duration_ms: expected a finite number'],
    [{ session: { origin: 'x' } }, 'payload.session.origin is not a session field'],
    [{ node_run: { node_id: '3' } }, 'payload.node_run.session_id'],
    [
      { node_run: { session_id: 's1', node_id: '3', timestamp_start: 't', status: 'ok' } },
      'payload.node_run.status',
    ],
    [{ outputs: {} }, 'payload.outputs is not an array'],
    [{ outputs: [{ node_id: '9', type: 'output', subfolder: '' }] }, 'payload.outputs[0].filename'],
  ] satisfies [JsonObject, string][])('reports %j as a problem and skips it', (payload, problem) => {
    const changes = projectEvents([event(4, payload)])
    expect(changes.problems).toHaveLength(1)
    expect(changes.problems[0]).toContain('gw/a#4: ')
    expect(changes.problems[0]).toContain(problem)
    expect(changes.nodeRuns).toEqual([])
    expect(changes.outputs).toEqual([])
  })

  it('ignores projected session fields on events without a session', () => {
    const replay = replayDerived([event(0, { session: { status: 'running' } }, null)])
    expect(replay.sessions).toEqual([])
    expect(replay.problems).toEqual(['gw/a#0: payload.session without a session_id'])
  })

  it('fills a node run with defaults for fields it leaves out', () => {
    const replay = replayDerived([
      event(0, { node_run: { session_id: 's1', node_id: '3', timestamp_start: 't', status: 'cached' } }),
    ])
    expect(replay.nodeRuns[0]).toMatchObject({
      origin: 'gw/a',
      inputs: {},
      outputs: null,
      error_message: null,
    })
  })
})

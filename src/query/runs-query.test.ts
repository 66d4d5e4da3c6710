import { describe, expect, it } from 'vitest'
import type { SessionRecord, SessionStatus } from '../audit/types.js'
import { parseRunsQuery, queryRuns, type RunsQuery } from './runs-query.js'

function session(
  id: string,
  user: string,
  status: SessionStatus,
  queuedAt: string,
  opts: {
    types?: string[]
    text?: string
    model?: string
    sha?: string
    workflow?: string
    ms?: number | null
  } = {},
): SessionRecord {
  const prompt: Record<string, unknown> = {}
  ;(opts.types ?? ['KSampler']).forEach((t, i) => {
    prompt[String(i + 1)] = { class_type: t, inputs: i === 0 && opts.text ? { text: opts.text } : {} }
  })
  return {
    origin: 'o',
    session_id: id,
    status,
    http_status: 200,
    number: 1,
    client_id: null,
    submitter: { user, auth_method: 'token', client_address: null, user_agent: null, client_id: null },
    prompt: prompt as SessionRecord['prompt'],
    workflow: opts.workflow ? { id: opts.workflow } : null,
    prompt_sha256: null,
    workflow_sha256: null,
    extra_data: null,
    validation: null,
    queued_at: queuedAt,
    started_at: queuedAt,
    ended_at: queuedAt,
    duration_ms: opts.ms === undefined ? 100 : opts.ms,
    environment: null,
    models: opts.model
      ? [
          {
            folder: 'checkpoints',
            name: opts.model,
            node_id: '1',
            input_name: 'ckpt_name',
            sha256: opts.sha ?? null,
            autov2: opts.sha?.slice(0, 10) ?? null,
          },
        ]
      : [],
    seeds: [],
    outputs: [],
    error: status === 'error' ? { exception_message: 'boom\nmore', node_id: '1' } : null,
    status_reason: null,
    flags: [],
  }
}

const SHA = 'ab'.repeat(32)
const sessions = [
  session('s1', 'alice', 'success', '2026-12-01T10:00:00Z', {
    text: 'A red fox',
    model: 'sd15.safetensors',
    sha: SHA,
    workflow: 'wf-a',
    ms: 900,
  }),
  session('s2', 'alice', 'error', '2026-12-01T11:00:00Z', { types: ['LoadImage', 'AuditFail'], ms: 50 }),
  session('s3', 'bob', 'success', '2026-12-01T12:00:00Z', {
    text: 'a lighthouse',
    model: 'sdxl.safetensors',
    workflow: 'wf-a',
    ms: 300,
  }),
  session('s4', 'bob', 'running', '2026-12-01T13:00:00Z', { ms: null }),
]

function q(params: string): RunsQuery {
  const r = parseRunsQuery(new URLSearchParams(params), new Date('2026-12-01T14:00:00Z'))
  if (!r.ok) throw new Error(r.reason)
  return r.value
}

describe('queryRuns', () => {
  it('lists newest first by default with the table fields', () => {
    const page = queryRuns(sessions, q(''))
    expect(page.runs.map((r) => r.session_id)).toEqual(['s4', 's3', 's2', 's1'])
    expect(page.runs[2]).toMatchObject({
      user: 'alice',
      nodes: 2,
      node_types: ['AuditFail', 'LoadImage'],
      error: 'boom',
    })
  })

  it('counts each facet within the other filters, not its own', () => {
    const page = queryRuns(sessions, q('person=alice'))
    expect(page.total).toBe(2)
    // The person facet still offers bob, with what picking him would give.
    expect(page.facets.user).toEqual([
      { value: 'alice', count: 2 },
      { value: 'bob', count: 2 },
    ])
    expect(page.facets.status).toEqual([
      { value: 'error', count: 1 },
      { value: 'success', count: 1 },
    ])
    expect(page.facets.model).toEqual([{ value: 'sd15.safetensors', count: 1 }])
  })

  it.each([
    ['status=error', ['s2']],
    ['node_type=AuditFail', ['s2']],
    [`model=${SHA.toUpperCase()}`, ['s1']],
    [`model=${SHA.slice(0, 10)}`, ['s1']],
    ['model=sdxl.safetensors', ['s3']],
    ['workflow=wf-a', ['s3', 's1']],
    ['q=RED FOX', ['s1']],
    ['q=s4', ['s4']],
    ['since=2h', ['s4', 's3']],
    ['until=2026-12-01T11:00:00Z', ['s1']],
    ['person=bob&status=success', ['s3']],
  ])('filters by %s', (params, expected) => {
    expect(queryRuns(sessions, q(params)).runs.map((r) => r.session_id)).toEqual(expected)
  })

  it('sorts either way with missing values last, and pages', () => {
    expect(queryRuns(sessions, q('sort=duration_ms&order=asc')).runs.map((r) => r.session_id)).toEqual([
      's2',
      's3',
      's1',
      's4',
    ])
    expect(queryRuns(sessions, q('sort=duration_ms')).runs.map((r) => r.session_id)).toEqual([
      's1',
      's3',
      's2',
      's4',
    ])
    const page = queryRuns(sessions, q('limit=2&offset=2'))
    expect([page.total, page.runs.map((r) => r.session_id)]).toEqual([4, ['s2', 's1']])
  })

  it.each([
    ['status=done', 'status: unknown status "done"'],
    ['sort=password', 'sort: "password" is not one of'],
    ['order=up', 'order: expected asc or desc'],
    ['limit=0', 'limit: expected 1..500'],
    ['limit=1e2', 'limit: expected 1..500'],
    ['offset=-1', 'offset: expected 0..'],
    ['since=yesterday', 'since: not a time: "yesterday"'],
  ])('refuses %s, naming the parameter', (params, reason) => {
    const r = parseRunsQuery(new URLSearchParams(params))
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toContain(reason)
  })
})

import { describe, expect, it } from 'vitest'
import { SESSION_STATUSES } from '../../../src/audit/types.js'
import { parseRunsQuery } from '../../../src/query/runs-query.js'
import {
  DEFAULT_FILTERS,
  filtersFromQuery,
  filtersToQuery,
  pageCount,
  runsApiParams,
  STATUSES,
  toggleSort,
  withFilter,
  type RunFilters,
} from './run-filters.js'

const busy: RunFilters = {
  person: 'alice',
  status: ['error', 'interrupted'],
  since: '7d',
  nodeType: 'KSampler',
  model: 'sd15.safetensors',
  workflow: 'wf-portrait',
  text: 'red fox',
  sort: 'duration_ms',
  order: 'asc',
  page: 3,
}

describe('run table URL state', () => {
  it('leaves defaults out of the URL', () => {
    expect(filtersToQuery(DEFAULT_FILTERS)).toEqual({})
  })

  it('round-trips every filter through the URL', () => {
    const q = filtersToQuery(busy)
    expect(q).toEqual({
      person: 'alice',
      status: 'error,interrupted',
      since: '7d',
      node_type: 'KSampler',
      model: 'sd15.safetensors',
      workflow: 'wf-portrait',
      q: 'red fox',
      sort: 'duration_ms',
      order: 'asc',
      page: '3',
    })
    expect(filtersFromQuery(q)).toEqual(busy)
  })

  it.each([
    [{ status: 'error,nonsense' }, { status: ['error'] }],
    [{ since: '3y' }, { since: '' }],
    [{ sort: 'password' }, { sort: 'queued_at' }],
    [{ order: 'sideways' }, { order: 'desc' }],
    [{ page: '0' }, { page: 1 }],
    [{ page: '2.5' }, { page: 1 }],
    [{ page: ['4', '5'] }, { page: 4 }],
  ])('reads a malformed query %j as the default it falls back to', (query, expected) => {
    expect(filtersFromQuery(query)).toEqual({ ...DEFAULT_FILTERS, ...expected })
  })

  it('asks the API for the page the URL names, with parameters the API accepts', () => {
    const p = runsApiParams(busy, 25)
    expect(p.get('offset')).toBe('50')
    expect(p.get('limit')).toBe('25')
    expect(p.get('page')).toBeNull()
    const parsed = parseRunsQuery(p, new Date('2026-12-01T00:00:00Z'))
    expect(parsed).toEqual({
      ok: true,
      value: {
        user: 'alice',
        status: ['error', 'interrupted'],
        since: '2026-11-24T00:00:00.000Z',
        nodeType: 'KSampler',
        model: 'sd15.safetensors',
        workflow: 'wf-portrait',
        text: 'red fox',
        sort: 'duration_ms',
        order: 'asc',
        limit: 25,
        offset: 50,
      },
    })
  })

  it('goes back to page 1 when a filter changes, not when the page does', () => {
    expect(withFilter(busy, 'person', 'bob').page).toBe(1)
    expect(withFilter(busy, 'page', 4).page).toBe(4)
  })

  it('sorts by a new column, then flips the order on a second click', () => {
    const byUser = toggleSort(DEFAULT_FILTERS, 'user')
    expect([byUser.sort, byUser.order]).toEqual(['user', 'asc'])
    const flipped = toggleSort(byUser, 'user')
    expect([flipped.sort, flipped.order]).toEqual(['user', 'desc'])
    expect(toggleSort(busy, 'duration_ms').order).toBe('desc')
  })

  it('counts pages, at least one', () => {
    expect([pageCount(0, 25), pageCount(25, 25), pageCount(26, 25)]).toEqual([1, 1, 2])
  })

  it('offers exactly the statuses the API knows', () => {
    expect([...STATUSES]).toEqual([...SESSION_STATUSES])
  })
})

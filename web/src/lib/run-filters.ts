/**
 * The run table's state as it lives in the URL, so a filtered view is a link someone can send. Defaults are
 * left out of the URL; unknown or malformed values fall back to the default instead of breaking the page.
 */
import { SESSION_STATUSES } from '../../../src/audit/types.js'
import type { SessionStatus } from '../../../src/query/dashboard-types.js'

/** Time ranges offered, as the API's relative time syntax (empty: all time). */
export const TIME_RANGES = ['', '1h', '24h', '7d', '30d'] as const
export type TimeRange = (typeof TIME_RANGES)[number]

export const SORT_KEYS = ['queued_at', 'duration_ms', 'status', 'user', 'nodes'] as const
export type SortKey = (typeof SORT_KEYS)[number]

/** Session statuses, in the API's order: the store's own list (audit/types.ts imports nothing, so it bundles). */
export const STATUSES: readonly SessionStatus[] = SESSION_STATUSES

/** Rows per page. */
export const PAGE_SIZE = 25

/** Everything the run table is filtered, sorted and paged by. */
export interface RunFilters {
  readonly person: string
  readonly status: readonly string[]
  readonly since: TimeRange
  readonly nodeType: string
  readonly model: string
  readonly workflow: string
  readonly text: string
  readonly sort: SortKey
  readonly order: 'asc' | 'desc'
  /** 1-based. */
  readonly page: number
}

export const DEFAULT_FILTERS: RunFilters = {
  person: '',
  status: [],
  since: '',
  nodeType: '',
  model: '',
  workflow: '',
  text: '',
  sort: 'queued_at',
  order: 'desc',
  page: 1,
}

/** A route query as vue-router gives it. */
export type QueryLike = Readonly<Record<string, string | null | readonly (string | null)[] | undefined>>

function first(query: QueryLike, key: string): string {
  const v = query[key]
  const s = Array.isArray(v) ? v[0] : v
  return typeof s === 'string' ? s : ''
}

function oneOf<T extends string>(value: string, allowed: readonly T[], fallback: T): T {
  return (allowed as readonly string[]).includes(value) ? (value as T) : fallback
}

/** Reads the filters from the URL query. */
export function filtersFromQuery(query: QueryLike): RunFilters {
  const page = Number(first(query, 'page'))
  return {
    person: first(query, 'person'),
    status: first(query, 'status')
      .split(',')
      .filter((s) => (STATUSES as readonly string[]).includes(s)),
    since: oneOf(first(query, 'since'), TIME_RANGES, ''),
    nodeType: first(query, 'node_type'),
    model: first(query, 'model'),
    workflow: first(query, 'workflow'),
    text: first(query, 'q'),
    sort: oneOf(first(query, 'sort'), SORT_KEYS, DEFAULT_FILTERS.sort),
    order: first(query, 'order') === 'asc' ? 'asc' : 'desc',
    page: Number.isSafeInteger(page) && page >= 1 ? page : 1,
  }
}

/** The URL query for the filters: only what differs from the defaults, under the API's names. */
export function filtersToQuery(f: RunFilters): Record<string, string> {
  const q: Record<string, string> = {}
  if (f.person) q.person = f.person
  if (f.status.length) q.status = f.status.join(',')
  if (f.since) q.since = f.since
  if (f.nodeType) q.node_type = f.nodeType
  if (f.model) q.model = f.model
  if (f.workflow) q.workflow = f.workflow
  if (f.text.trim()) q.q = f.text.trim()
  if (f.sort !== DEFAULT_FILTERS.sort) q.sort = f.sort
  if (f.order !== DEFAULT_FILTERS.order) q.order = f.order
  if (f.page !== 1) q.page = String(f.page)
  return q
}

/** Parameters of `GET /_audit/api/runs` for the filters. */
export function runsApiParams(f: RunFilters, pageSize: number = PAGE_SIZE): URLSearchParams {
  const { page, ...rest } = filtersToQuery(f)
  void page
  const p = new URLSearchParams(rest)
  if (!p.has('sort')) p.set('sort', f.sort)
  if (!p.has('order')) p.set('order', f.order)
  p.set('limit', String(pageSize))
  p.set('offset', String((f.page - 1) * pageSize))
  return p
}

/** The filters with one field changed; any change but paging goes back to page 1. */
export function withFilter<K extends keyof RunFilters>(
  f: RunFilters,
  key: K,
  value: RunFilters[K],
): RunFilters {
  return { ...f, [key]: value, ...(key === 'page' ? {} : { page: 1 }) }
}

/** Clicking a column header: sort by it, or flip the order when it already is. */
export function toggleSort(f: RunFilters, key: SortKey): RunFilters {
  return f.sort === key
    ? { ...f, order: f.order === 'asc' ? 'desc' : 'asc', page: 1 }
    : { ...f, sort: key, order: key === 'user' || key === 'status' ? 'asc' : 'desc', page: 1 }
}

/** Pages for `total` rows. */
export function pageCount(total: number, pageSize: number = PAGE_SIZE): number {
  return Math.max(1, Math.ceil(total / pageSize))
}

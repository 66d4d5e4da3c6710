/** Dates and durations for people: dates in the viewer's own time zone and language. */
import { formatDuration } from '../../../src/query/format-duration.js'

/** `2 Dec 2026, 14:05:09` (en) / `2026年12月2日 14:05:09` (zh-CN), in the browser's time zone. */
export function formatDateTime(iso: string | null | undefined, locale: string, timeZone?: string): string {
  if (!iso) return '-'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return new Intl.DateTimeFormat(locale, {
    dateStyle: 'medium',
    timeStyle: 'medium',
    ...(timeZone ? { timeZone } : {}),
  }).format(d)
}

export { formatDuration }

/** The first 12 characters of a hash or id, for tables. */
export function short(id: string | null | undefined, n = 12): string {
  if (!id) return '-'
  return id.length > n ? `${id.slice(0, n)}…` : id
}

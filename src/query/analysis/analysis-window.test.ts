import { describe, expect, it } from 'vitest'
import { planWindow } from './analysis-window.js'

const t = (iso: string): number => Date.parse(iso)

describe('planWindow', () => {
  it('reads whole days from daily rollups, the hours at the ends hourly, the partial hours raw', () => {
    const plan = planWindow(t('2026-11-02T05:30:00Z'), t('2026-11-07T18:45:00Z'), true)
    expect(plan.days).toEqual({ since: t('2026-11-03T00:00:00Z'), until: t('2026-11-07T00:00:00Z') })
    expect(plan.hours).toEqual([
      { since: t('2026-11-02T06:00:00Z'), until: t('2026-11-03T00:00:00Z') },
      { since: t('2026-11-07T00:00:00Z'), until: t('2026-11-07T18:00:00Z') },
    ])
    expect(plan.raw).toEqual([
      { since: t('2026-11-02T05:30:00Z'), until: t('2026-11-02T06:00:00Z') },
      { since: t('2026-11-07T18:00:00Z'), until: t('2026-11-07T18:45:00Z') },
    ])
  })

  it('keeps whole hours as hours without days or when no whole day fits', () => {
    const since = t('2026-11-02T05:30:00Z')
    const until = t('2026-11-03T04:00:00Z')
    for (const useDays of [true, false]) {
      expect(planWindow(since, until, useDays)).toEqual({
        days: null,
        hours: [{ since: t('2026-11-02T06:00:00Z'), until }],
        raw: [{ since, until: t('2026-11-02T06:00:00Z') }],
      })
    }
  })

  it('reads a window inside one hour raw, and open ends from the tables', () => {
    const since = t('2026-11-02T05:10:00Z')
    expect(planWindow(since, t('2026-11-02T05:50:00Z'), true)).toEqual({
      days: null,
      hours: [],
      raw: [{ since, until: t('2026-11-02T05:50:00Z') }],
    })
    expect(planWindow(undefined, undefined, true)).toEqual({ days: {}, hours: [], raw: [] })
    expect(planWindow(undefined, t('2026-11-02T05:00:00Z'), true)).toEqual({
      days: { until: t('2026-11-02T00:00:00Z') },
      hours: [{ since: t('2026-11-02T00:00:00Z'), until: t('2026-11-02T05:00:00Z') }],
      raw: [],
    })
  })
})

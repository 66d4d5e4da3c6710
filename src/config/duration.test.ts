import { describe, expect, it } from 'vitest'
import { parseDurationMillis, parseTimeSpec } from './duration.js'

describe('parseDurationMillis', () => {
  it.each([
    ['90d', 90 * 86_400_000],
    ['12h', 12 * 3_600_000],
    ['1h30m', 5_400_000],
    ['45s', 45_000],
    ['2w', 14 * 86_400_000],
    ['250ms', 250],
  ])('parses %s', (text, millis) => {
    expect(parseDurationMillis(text)).toEqual({ ok: true, value: millis })
  })

  it.each(['', 'd', '12', '12x', '1h 30m', 'abc'])('rejects %j with a reason', (text) => {
    const r = parseDurationMillis(text)
    expect(r.ok).toBe(false)
  })
})

describe('parseTimeSpec', () => {
  const now = new Date('2026-11-26T12:00:00.000Z')
  it('counts a duration back from now', () => {
    expect(parseTimeSpec('12h', now)).toEqual({ ok: true, value: new Date('2026-11-26T00:00:00.000Z') })
  })
  it('accepts an ISO date as midnight UTC', () => {
    expect(parseTimeSpec('2026-11-01', now)).toEqual({
      ok: true,
      value: new Date('2026-11-01T00:00:00.000Z'),
    })
  })
  it('accepts an ISO date-time with zone', () => {
    expect(parseTimeSpec('2026-11-01T10:00:00+02:00', now)).toEqual({
      ok: true,
      value: new Date('2026-11-01T08:00:00.000Z'),
    })
  })
  it('names the bad value and the expected forms', () => {
    const r = parseTimeSpec('yesterday', now)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toMatch(/"yesterday".*90d.*ISO/)
  })
})

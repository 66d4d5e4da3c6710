import { describe, expect, it } from 'vitest'
import { seededRandom } from '../../../test/helpers/history-generator.js'
import { mannWhitneyGreater, mannWhitneyGreaterGrouped } from './statistics.js'

describe('mannWhitneyGreaterGrouped', () => {
  it.each([1, 2, 3, 4, 5])(
    'equals the test over the values themselves when groups are tied values (seed %i)',
    (seed) => {
      const rnd = seededRandom(seed)
      // Few distinct values, so most values tie; the recent sample shifted up a little.
      const baseline = Array.from({ length: 40 + Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 12))
      const recent = Array.from({ length: 30 + Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 12) + 1)
      const groups: [number, number][] = Array.from({ length: 14 }, (_, v) => [
        baseline.filter((x) => x === v).length,
        recent.filter((x) => x === v).length,
      ])
      const grouped = mannWhitneyGreaterGrouped(groups.filter(([a, b]) => a + b > 0))
      const exact = mannWhitneyGreater(baseline, recent)
      expect(grouped.u).toBeCloseTo(exact.u, 9)
      expect(grouped.p_value).toBeCloseTo(exact.p_value, 12)
    },
  )

  it('gives p = 1 without values on one side', () => {
    expect(mannWhitneyGreaterGrouped([[3, 0]]).p_value).toBe(1)
  })
})

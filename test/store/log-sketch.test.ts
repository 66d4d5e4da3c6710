import { describe, expect, it } from 'vitest'
import { seededRandom } from '../helpers/history-generator.js'
import { LogSketch, SKETCH_RELATIVE_ERROR } from '../../src/store/log-sketch.js'

function exactAt(sorted: number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))]!
}

describe('log sketch (issue 12: rollup quantiles within the stated error)', () => {
  it.each([
    ['log-normal durations', (r: () => number) => Math.exp(5 + 1.5 * (r() + r() + r() - 1.5))],
    ['uniform 1..100000 ms', (r: () => number) => 1 + r() * 99_999],
    ['heavy tail', (r: () => number) => 10 / (1 - r() * 0.999)],
    ['integers with many ties', (r: () => number) => Math.round(r() * 20)],
  ])('keeps every percentile of %s within 1%% of the exact one', (_name, draw) => {
    const r = seededRandom(42)
    const values = Array.from({ length: 20_000 }, () => draw(r))
    const sketch = new LogSketch()
    for (const v of values) sketch.add(v)
    const sorted = [...values].sort((a, b) => a - b)
    for (const q of [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1]) {
      const exact = exactAt(sorted, q)
      const est = sketch.quantile(q)!
      if (exact === 0) expect(est).toBe(0)
      else expect(Math.abs(est - exact) / exact, `q=${q}`).toBeLessThanOrEqual(SKETCH_RELATIVE_ERROR + 1e-12)
    }
  })

  it('merges hourly sketches into exactly the sketch of all values, and survives its stored form', () => {
    const r = seededRandom(9)
    const all = new LogSketch()
    const merged = new LogSketch()
    for (let hour = 0; hour < 48; hour++) {
      const h = new LogSketch()
      for (let i = 0; i < 100; i++) {
        const v = Math.round(50 + r() * 5000)
        h.add(v)
        all.add(v)
      }
      merged.merge(LogSketch.from(JSON.parse(JSON.stringify(h.toJSON()))))
    }
    expect(merged.toJSON()).toEqual(all.toJSON())
    expect(merged.count).toBe(4800)
  })

  it('removes a replaced value again', () => {
    const s = new LogSketch()
    s.add(100)
    s.add(250)
    s.add(100, -1)
    expect(s.count).toBe(1)
    expect(Object.values(s.toJSON().bins)).toEqual([1])
    expect(Math.abs(s.quantile(0.5)! - 250) / 250).toBeLessThanOrEqual(SKETCH_RELATIVE_ERROR)
  })

  it('names a bad stored sketch', () => {
    expect(() => LogSketch.from({ zero: 0, bins: { x: 1 } })).toThrow(/bin "x"/)
    expect(() => new LogSketch().add(Number.NaN)).toThrow(/NaN/)
  })
})

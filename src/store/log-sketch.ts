/**
 * A mergeable quantile sketch for durations and memory figures: DDSketch's logarithmic bucket mapping
 * (Masson, Rim, Lee: "DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees",
 * VLDB 2019) with sparse counts.
 *
 * Why this one: a value x > 0 falls in bucket i = ceil(log_γ x) with γ = (1+α)/(1-α), and every value of a
 * bucket is within relative error α of the bucket's representative 2γ^i/(γ+1). So any quantile read from the
 * sketch is within α (here 1%) of the exact quantile's value, whatever the distribution: durations span 1 ms to
 * hours, and a fixed relative error suits them where an absolute one (t-digest's rank error, fixed-width
 * histograms) does not. Two sketches merge by adding counts per bucket, exactly (the merge of hourly sketches
 * equals the sketch of all the values), which is what per-hour rollups summed over a 30-day window need; and
 * counts can be subtracted again when a stored row is replaced. A duration from 1 ms to 24 h needs at most
 * ~850 buckets at α = 1%; real hours use a few dozen.
 */

/** Relative accuracy of every sketch here: quantiles within 1% of the exact value. */
export const SKETCH_RELATIVE_ERROR = 0.01

const GAMMA = (1 + SKETCH_RELATIVE_ERROR) / (1 - SKETCH_RELATIVE_ERROR)
const LOG_GAMMA = Math.log(GAMMA)

/** A sketch as stored: `zero` counts values <= 0 (cached runs, idle memory), `bins` bucket index -> count. */
export interface LogSketchData {
  readonly zero: number
  readonly bins: Readonly<Record<string, number>>
}

/** A mutable sketch. */
export class LogSketch {
  #zero = 0
  readonly #bins = new Map<number, number>()
  #count = 0

  /** Total values added (minus those removed). */
  get count(): number {
    return this.#count
  }

  /** Adds a value `times` times (negative `times` removes: a replaced row's old value). */
  add(value: number, times = 1): void {
    if (!Number.isFinite(value)) throw new Error(`log sketch: cannot add ${value}`)
    this.#count += times
    if (value <= 0) {
      this.#zero += times
      return
    }
    const i = Math.ceil(Math.log(value) / LOG_GAMMA)
    const next = (this.#bins.get(i) ?? 0) + times
    if (next === 0) this.#bins.delete(i)
    else this.#bins.set(i, next)
  }

  /** Adds every count of another sketch. */
  merge(other: LogSketch | LogSketchData): void {
    const data = other instanceof LogSketch ? other.toJSON() : other
    this.#zero += data.zero
    this.#count += data.zero
    for (const [k, c] of Object.entries(data.bins)) {
      const i = Number(k)
      const next = (this.#bins.get(i) ?? 0) + c
      if (next === 0) this.#bins.delete(i)
      else this.#bins.set(i, next)
      this.#count += c
    }
  }

  /**
   * The value at quantile q (0..1), within {@link SKETCH_RELATIVE_ERROR} of the exact order statistic of rank
   * floor(q·(n-1)) (the lower one of an interpolated percentile); null when empty.
   */
  quantile(q: number): number | null {
    if (this.#count <= 0) return null
    const rank = Math.floor(Math.min(1, Math.max(0, q)) * (this.#count - 1))
    if (rank < this.#zero) return 0
    let seen = this.#zero
    for (const i of [...this.#bins.keys()].sort((a, b) => a - b)) {
      seen += this.#bins.get(i)!
      if (seen > rank) return (2 * GAMMA ** i) / (GAMMA + 1)
    }
    const last = Math.max(...this.#bins.keys())
    return (2 * GAMMA ** last) / (GAMMA + 1)
  }

  /**
   * Counts per bucket in ascending value order, `[index, count]`, the zero bucket first as index -Infinity:
   * two sketches' buckets line up by index, which is how a rank test compares them (values in one bucket tie).
   */
  buckets(): [number, number][] {
    const out: [number, number][] = this.#zero !== 0 ? [[-Infinity, this.#zero]] : []
    for (const i of [...this.#bins.keys()].sort((a, b) => a - b)) out.push([i, this.#bins.get(i)!])
    return out
  }

  /** The stored form (bucket indexes as keys, sorted). */
  toJSON(): LogSketchData {
    const bins: Record<string, number> = {}
    for (const i of [...this.#bins.keys()].sort((a, b) => a - b)) bins[String(i)] = this.#bins.get(i)!
    return { zero: this.#zero, bins }
  }

  /** A sketch from its stored form; throws naming the bad field. */
  static from(data: LogSketchData): LogSketch {
    const s = new LogSketch()
    if (!Number.isInteger(data.zero))
      throw new Error(`log sketch: zero must be an integer, got ${String(data.zero)}`)
    for (const [k, c] of Object.entries(data.bins)) {
      if (!Number.isInteger(Number(k)) || !Number.isInteger(c)) {
        throw new Error(
          `log sketch: bin ${JSON.stringify(k)} holds ${String(c)}; expected integer index and count`,
        )
      }
    }
    s.merge(data)
    return s
  }
}

/**
 * A stored sketch's text back as data, checked field by field (integer zero count, integer bin indexes and
 * counts) without building a sketch: analysis reads thousands of these per answer and merges them itself.
 * Throws naming the bad field.
 */
export function parseSketch(text: string): LogSketchData {
  const data = JSON.parse(text) as LogSketchData
  if (typeof data !== 'object' || data === null || typeof data.bins !== 'object' || data.bins === null)
    throw new Error(`log sketch: expected {"zero":n,"bins":{...}}, got ${text.slice(0, 40)}`)
  if (!Number.isInteger(data.zero))
    throw new Error(`log sketch: zero must be an integer, got ${String(data.zero)}`)
  for (const k in data.bins) {
    const c = data.bins[k]
    if (!Number.isInteger(Number(k)) || !Number.isInteger(c)) {
      throw new Error(
        `log sketch: bin ${JSON.stringify(k)} holds ${String(c)}; expected integer index and count`,
      )
    }
  }
  return data
}

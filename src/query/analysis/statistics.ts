/**
 * The statistics the analysis commands use, written out so that their behaviour (ties, small samples) is
 * documented and tested here rather than hidden in a dependency.
 */

/** Percentile by linear interpolation between closest ranks (R type 7, numpy's default). */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null
  const pos = (sorted.length - 1) * Math.min(1, Math.max(0, q))
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  const a = sorted[lo] as number
  const b = sorted[hi] as number
  return a + (b - a) * (pos - lo)
}

/** Sorted copy, ascending. */
export function sortedNumbers(values: Iterable<number>): number[] {
  return [...values].sort((a, b) => a - b)
}

/** Arithmetic mean, or null for no values. */
export function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null
  let sum = 0
  for (const v of values) sum += v
  return sum / values.length
}

/** Ranks from 1, ties sharing their average rank. */
function ranks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0])
  const out = new Array<number>(values.length)
  let i = 0
  while (i < order.length) {
    let j = i
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++
    const rank = (i + j) / 2 + 1
    for (let k = i; k <= j; k++) out[order[k]![1]] = rank
    i = j + 1
  }
  return out
}

/** Spearman's rank correlation (Pearson correlation of the ranks); null below 3 pairs or for constant data. */
export function spearman(xs: readonly number[], ys: readonly number[]): number | null {
  if (xs.length !== ys.length) throw new Error(`spearman: ${xs.length} x values but ${ys.length} y values`)
  if (xs.length < 3) return null
  return pearson(ranks(xs), ranks(ys))
}

function pearson(xs: readonly number[], ys: readonly number[]): number | null {
  const mx = mean(xs) as number
  const my = mean(ys) as number
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < xs.length; i++) {
    const dx = xs[i]! - mx
    const dy = ys[i]! - my
    sxy += dx * dy
    sxx += dx * dx
    syy += dy * dy
  }
  if (sxx === 0 || syy === 0) return null
  return sxy / Math.sqrt(sxx * syy)
}

/**
 * Two-sided p-value of Spearman's rho under independence, from the t approximation
 * t = rho·sqrt((n-2)/(1-rho²)) with n-2 degrees of freedom (normal beyond 30, which the sample sizes here exceed).
 */
export function spearmanPValue(rho: number, n: number): number {
  if (n < 4) return 1
  if (Math.abs(rho) >= 1) return 0
  const t = rho * Math.sqrt((n - 2) / (1 - rho * rho))
  return 2 * (1 - normalCdf(Math.abs(t)))
}

/** Standard normal CDF (Abramowitz–Stegun 7.1.26 erf approximation, error < 1.5e-7). */
function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2
  const t = 1 / (1 + 0.3275911 * x)
  const poly =
    t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
  const erf = 1 - poly * Math.exp(-x * x)
  return z >= 0 ? (1 + erf) / 2 : (1 - erf) / 2
}

/** Result of {@link mannWhitneyGreater}. */
interface MannWhitneyResult {
  /** U of the second sample (`recent`): how often a recent value beats a baseline one (ties count half). */
  readonly u: number
  /** One-sided p-value that `recent` is stochastically greater than `baseline`. */
  readonly p_value: number
}

/**
 * Mann-Whitney U test, one-sided (is `recent` slower?), with the normal approximation, tie correction and
 * continuity correction. It compares ranks, so a few outliers cannot fake a regression the way a mean can.
 */
export function mannWhitneyGreater(
  baseline: readonly number[],
  recent: readonly number[],
): MannWhitneyResult {
  const n1 = baseline.length
  const n2 = recent.length
  if (n1 === 0 || n2 === 0) return { u: 0, p_value: 1 }
  const all = [...baseline, ...recent]
  const r = ranks(all)
  let rankSum2 = 0
  for (let i = n1; i < all.length; i++) rankSum2 += r[i]!
  const u = rankSum2 - (n2 * (n2 + 1)) / 2
  const n = n1 + n2
  // Tie correction: sum of t³ - t over groups of tied values.
  const counts = new Map<number, number>()
  for (const v of all) counts.set(v, (counts.get(v) ?? 0) + 1)
  let ties = 0
  for (const t of counts.values()) ties += t * t * t - t
  const variance = ((n1 * n2) / 12) * (n + 1 - ties / (n * (n - 1)))
  if (variance <= 0) return { u, p_value: 1 }
  const z = (u - (n1 * n2) / 2 - 0.5) / Math.sqrt(variance)
  return { u, p_value: 1 - normalCdf(z) }
}

/**
 * {@link mannWhitneyGreater} over grouped data: `groups` lists, in ascending value order, how many baseline and
 * how many recent values share each value (a sketch bucket). Values in one group tie; the statistic, tie and
 * continuity corrections are the same as over the raw values rounded to their groups.
 */
export function mannWhitneyGreaterGrouped(
  groups: readonly (readonly [baseline: number, recent: number])[],
): MannWhitneyResult {
  let n1 = 0
  let n2 = 0
  for (const [a, b] of groups) {
    n1 += a
    n2 += b
  }
  if (n1 === 0 || n2 === 0) return { u: 0, p_value: 1 }
  let below = 0
  let rankSum2 = 0
  let ties = 0
  for (const [a, b] of groups) {
    const t = a + b
    // The tied values take ranks below+1 .. below+t, each the average of those.
    rankSum2 += b * (below + (t + 1) / 2)
    ties += t * t * t - t
    below += t
  }
  const u = rankSum2 - (n2 * (n2 + 1)) / 2
  const n = n1 + n2
  const variance = ((n1 * n2) / 12) * (n + 1 - ties / (n * (n - 1)))
  if (variance <= 0) return { u, p_value: 1 }
  const z = (u - (n1 * n2) / 2 - 0.5) / Math.sqrt(variance)
  return { u, p_value: 1 - normalCdf(z) }
}

/**
 * A strict reader of the Prometheus text exposition format (0.0.4) for tests: every line must be a
 * `# HELP`/`# TYPE` comment or a sample, so a malformed exposition fails the test that reads it.
 */

/** One sample: metric name, labels and value. */
export interface PrometheusSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** What {@link parsePrometheusText} found. */
export interface PrometheusExposition {
  readonly samples: readonly PrometheusSample[]
  /** `# TYPE` of each metric family. */
  readonly types: ReadonlyMap<string, string>
  /** Sum of the values of the samples named `name` whose labels include `labels`. */
  sum(name: string, labels?: Readonly<Record<string, string>>): number
  /** Whether any sample is named `name`. */
  has(name: string): boolean
}

const SAMPLE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|\+Inf|-Inf)(?: -?\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {}
  LABEL.lastIndex = 0
  let consumed = 0
  for (let m = LABEL.exec(text); m !== null; m = LABEL.exec(text)) {
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c))
    consumed = LABEL.lastIndex
  }
  if (consumed !== text.length) throw new Error(`malformed labels in: ${line}`)
  return labels
}

/** Parses exposition text; throws on any line that is neither a comment nor a sample. */
export function parsePrometheusText(text: string): PrometheusExposition {
  const samples: PrometheusSample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue
    if (line.startsWith('# TYPE ')) {
      const parts = line.slice('# TYPE '.length).split(' ')
      if (parts.length !== 2) throw new Error(`malformed TYPE line: ${line}`)
      types.set(parts[0]!, parts[1]!)
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`not a sample line: ${line}`)
    samples.push({ name: m[1]!, labels: m[2] ? parseLabels(m[2], line) : {}, value: Number(m[3]) })
  }
  return {
    samples,
    types,
    sum: (name, labels = {}) =>
      samples
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((total, s) => total + s.value, 0),
    has: (name) => samples.some((s) => s.name === name),
  }
}

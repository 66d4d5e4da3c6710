import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { compareTraces } from './compare-traces.js'
import type { Json, JsonObject } from './python-values.js'
import { isDict } from './python-values.js'
import { parseTrace, readTraceFile } from './trace-row.js'
import type { TraceRow } from './trace-row.js'

const FIXTURE = new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url).pathname
const SCENARIOS = [
  'startup',
  'image_pipeline',
  'image_pipeline_fully_cached',
  'image_pipeline_partly_cached',
  'partial_execution_targets',
  'validation_errors',
  'runtime_error_custom_node',
  'runtime_error_corrupt_checkpoint',
  'progress_events',
  'gpu_memory',
  'interrupt',
  'queue_and_clients',
  'reconnect_and_duplicate_client_id',
  'sensitive_extra_data',
  'sd15_model_workflow',
  'final',
]

let reference: TraceRow[]
beforeAll(async () => {
  reference = await readTraceFile(FIXTURE)
})

function obj(v: Json | undefined): JsonObject {
  if (!isDict(v)) throw new Error(`expected an object, got ${JSON.stringify(v)}`)
  return v
}

function msgOf(r: TraceRow): JsonObject {
  return obj(r.msg)
}

function dataOf(r: TraceRow): JsonObject {
  return obj(msgOf(r).data)
}

/** Index of the only row that satisfies `pred` (fails the test when there is not exactly one). */
function indexOf(rows: readonly TraceRow[], pred: (r: TraceRow) => boolean): number {
  const hits = rows.flatMap((r, i) => (pred(r) ? [i] : []))
  expect(hits).toHaveLength(1)
  return hits[0]!
}

const isWs = (r: TraceRow, scenario: string, client: string, type: string): boolean =>
  r.scenario === scenario && r.kind === 'ws' && r.client === client && msgOf(r).type === type

function diffLines(candidate: readonly TraceRow[]): string[] {
  const result = compareTraces(reference, candidate)
  return result.lines.filter((l) => !l.startsWith('same  '))
}

describe('parseTrace', () => {
  it('reads every row of the recorded trace', () => {
    expect(reference).toHaveLength(1001)
    expect(reference[0]).toMatchObject({
      scenario: 'startup',
      kind: 'http',
      method: 'GET',
      path: '/system_stats',
    })
  })

  it('refuses a line that is not a JSON object, naming the line', () => {
    const parsed = parseTrace('{"t_ms": 1, "wall": 2, "scenario": "s", "kind": "ws"}\n[1]\n')
    expect(parsed).toEqual({ ok: false, reason: 'line 2: not a JSON object' })
  })

  it('refuses a row without a scenario', () => {
    const parsed = parseTrace('{"t_ms": 1, "wall": 2, "kind": "ws"}\n')
    expect(parsed).toEqual({ ok: false, reason: 'line 1: scenario is not a string' })
  })
})

describe('compareTraces', () => {
  it('finds the reference trace identical to itself in all 16 scenarios', () => {
    const result = compareTraces(reference, reference)
    expect(result.matched).toBe(16)
    expect(result.total).toBe(16)
    expect(result.lines).toEqual([
      ...SCENARIOS.map((s) => `same  ${s}`),
      'conformance: 16/16 scenarios match',
    ])
  })

  it('reports a dropped executing frame in its scenario only', () => {
    const i = indexOf(reference, (r) => isWs(r, 'image_pipeline', 'A', 'executing') && dataOf(r).node === '3')
    const candidate = reference.filter((_, j) => j !== i)
    expect(diffLines(candidate)).toEqual([
      "DIFF  image_pipeline: client A: event 6: ('executing', '4', ('display_node', 'node', 'prompt_id')) != real ('executing', '3', ('display_node', 'node', 'prompt_id'))",
      'conformance: 15/16 scenarios match',
    ])
  })

  it('reports a changed exception type in its scenario only', () => {
    const candidate = structuredClone(reference)
    const i = indexOf(candidate, (r) => isWs(r, 'runtime_error_custom_node', 'A', 'execution_error'))
    dataOf(candidate[i]!).exception_type = 'RuntimeError'
    const keys =
      "('current_inputs', 'current_outputs', 'exception_message', 'exception_type', 'executed', 'node_id', 'node_type', 'prompt_id', 'timestamp', 'traceback')"
    expect(diffLines(candidate)).toEqual([
      `DIFF  runtime_error_custom_node: client A: event 6: ('execution_error', '7', 'AuditFail', 'RuntimeError', ${keys}) != real ('execution_error', '7', 'AuditFail', 'ValueError', ${keys})`,
      'conformance: 15/16 scenarios match',
    ])
  })

  it('reports a changed HTTP status in its scenario only', () => {
    const candidate = structuredClone(reference)
    const i = indexOf(candidate, (r) => r.kind === 'http' && r.path === '/interrupt')
    candidate[i]!.status = 409
    expect(diffLines(candidate)).toEqual([
      "DIFF  interrupt: http 1: ('POST', '/interrupt', 409, ('other', 'NoneType')) != real ('POST', '/interrupt', 200, ('other', 'NoneType'))",
      'conformance: 15/16 scenarios match',
    ])
  })

  it('reports two events in swapped order in their scenario only', () => {
    const candidate = [...reference]
    const i = indexOf(
      candidate,
      (r) => isWs(r, 'progress_events', 'A', 'executing') && dataOf(r).node === '6',
    )
    expect(isWs(candidate[i + 1]!, 'progress_events', 'A', 'executed')).toBe(true)
    ;[candidate[i], candidate[i + 1]] = [candidate[i + 1]!, candidate[i]!]
    expect(diffLines(candidate)).toEqual([
      "DIFF  progress_events: client A: event 4: ('executed', '6', ('display_node', 'node', 'output', 'prompt_id'), ('images',)) != real ('executing', '6', ('display_node', 'node', 'prompt_id'))",
      'conformance: 15/16 scenarios match',
    ])
  })

  it('reports a changed history status_str in its scenario only', () => {
    const candidate = structuredClone(reference)
    const i = indexOf(
      candidate,
      (r) => r.scenario === 'gpu_memory' && r.kind === 'http' && String(r.path).startsWith('/history/'),
    )
    const [entry] = Object.values(obj(candidate[i]!.response))
    obj(obj(entry).status).status_str = 'error'
    expect(diffLines(candidate)).toEqual([
      "DIFF  gpu_memory: http 1: ('GET', '/history/<id>', 200, (('item', ('meta', 'outputs', 'prompt', 'status'), 'error', ('5', '6')),)) != real ('GET', '/history/<id>', 200, (('item', ('meta', 'outputs', 'prompt', 'status'), 'success', ('5', '6')),))",
      'conformance: 15/16 scenarios match',
    ])
  })

  it('ignores timing-dependent frames: status, progress_state and repeated progress', () => {
    const candidate = reference.flatMap((r) => {
      if (r.kind !== 'ws') return [r]
      const type = msgOf(r).type
      if (type === 'status' || type === 'progress_state') return []
      return type === 'progress' ? [r, r, r] : [r]
    })
    expect(compareTraces(reference, candidate).matched).toBe(16)
  })

  it('compares startup and final on their HTTP exchanges only', () => {
    const candidate = reference.filter(
      (r) => !((r.scenario === 'startup' || r.scenario === 'final') && r.kind === 'ws'),
    )
    expect(compareTraces(reference, candidate).matched).toBe(16)
    const noHttp = reference.filter(
      (r) => !(r.scenario === 'final' && r.kind === 'http' && r.path === '/internal/logs'),
    )
    expect(diffLines(noHttp)[0]).toMatch(/^DIFF {2}final: http 5: /)
  })

  it('treats prompt and client ids in paths as the same', () => {
    const candidate = reference.map((r) =>
      typeof r.path === 'string'
        ? {
            ...r,
            path: r.path.replace(
              /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g,
              '00000000-0000-4000-8000-000000000000',
            ),
          }
        : r,
    )
    expect(compareTraces(reference, candidate).matched).toBe(16)
  })

  it('counts a run of identical binary frames once, and a new binary frame as a difference', () => {
    const i = indexOf(reference, (r) => isWs(r, 'image_pipeline', 'A', 'executed') && dataOf(r).node === '6')
    const preview: TraceRow = {
      ...reference[i]!,
      kind: 'ws_binary',
      event_type: 4,
      bytes: 100,
      metadata: { node_id: '6', prompt_id: 'p' },
    }
    delete preview.msg
    const withOne = [...reference.slice(0, i), preview, ...reference.slice(i)]
    const withRun = [...reference.slice(0, i), preview, preview, preview, ...reference.slice(i)]
    const one = diffLines(withOne)
    expect(one).toHaveLength(2)
    expect(one[0]).toMatch(
      /^DIFF {2}image_pipeline: client A: event 5: \('binary\*', 4, '6'\) != real \('executed', '6'/,
    )
    expect(diffLines(withRun)).toEqual(one)
  })

  it('reports a scenario the candidate lacks as missing', () => {
    const candidate = reference.filter((r) => r.scenario !== 'interrupt')
    expect(diffLines(candidate)).toEqual([
      'DIFF  interrupt: scenario missing',
      'conformance: 15/16 scenarios match',
    ])
  })

  it('lists every problem of a scenario, with whole sequences, when verbose', () => {
    const candidate = reference.filter(
      (r) =>
        !(r.scenario === 'interrupt' && ((r.kind === 'ws' && r.client === 'A') || r.path === '/interrupt')),
    )
    const [line] = diffLines(candidate)
    expect(line).toMatch(/^DIFF {2}interrupt: client A: event 0: nothing != real \('execution_start'/)
    expect(line).not.toContain('; http')
    const verbose = compareTraces(reference, candidate, { verbose: true }).lines.find((l) =>
      l.startsWith('DIFF'),
    )
    expect(verbose).toMatch(/ \(all: \[\] != real \[\('execution_start', .*; http 1: /)
  })
})

// The port must print what the Python original prints; where python3 and the original are at hand, check that
// on traces damaged at random.
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p))
const ORIGINAL = new URL('../../../shared/tools/compare_traces.py', import.meta.url).pathname

describe.skipIf(PYTHON === undefined || !existsSync(ORIGINAL))(
  'compareTraces against compare_traces.py',
  () => {
    it('prints the same lines as the original for randomly damaged traces', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'compare-traces-'))
      try {
        let seed = 12345
        const random = (n: number): number => {
          seed = (seed * 1103515245 + 12345) % 2 ** 31
          return seed % n
        }
        const weird: Json[] = [null, 7, 1.5, true, '', "x'y", [], ['a', 1], {}, { a: 1 }, '7']
        let differing = 0
        for (let round = 0; round < 6; round++) {
          const candidate = structuredClone(reference)
          for (let k = 0; k < 3; k++) {
            const i = random(candidate.length)
            const r = candidate[i]!
            const op = random(4)
            if (op === 0) candidate.splice(i, 1)
            else if (op === 1 && i + 1 < candidate.length)
              [candidate[i], candidate[i + 1]] = [candidate[i + 1]!, r]
            else if (r.kind === 'ws' && isDict(msgOf(r).data)) {
              const data = dataOf(r)
              const keys = Object.keys(data)
              if (keys.length > 0) data[keys[random(keys.length)]!] = weird[random(weird.length)]!
            } else if (r.kind === 'http') r.status = 500
          }
          const path = join(dir, `candidate-${round}.jsonl`)
          await writeFile(path, candidate.map((r) => JSON.stringify(r)).join('\n') + '\n')
          for (const verbose of [false, true]) {
            const args = [ORIGINAL, FIXTURE, path, ...(verbose ? ['--verbose'] : [])]
            const python = await promisify(execFile)(PYTHON!, args).catch((e: { stdout: string }) => e)
            const ours = compareTraces(reference, candidate, { verbose }).lines.join('\n') + '\n'
            expect(ours).toBe(python.stdout)
            if (ours.includes('DIFF')) differing += 1
          }
        }
        expect(differing).toBeGreaterThan(0)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })
  },
)

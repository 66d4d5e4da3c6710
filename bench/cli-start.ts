/**
 * CLI start-up: wall time of `node dist/cli/main.js --help` and of `node --version`-like bare Node (an empty
 * script), each run `runs` times one after the other; the medians, and the CLI's minus bare Node's.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { ROOT, percentile, round } from './bench-kit.js'

/** What {@link measureCliStart} measured (milliseconds). */
export interface CliStartResult {
  readonly runs: number
  readonly help_p50_ms: number
  readonly help_max_ms: number
  readonly bare_node_p50_ms: number
}

function time(args: readonly string[]): number {
  const start = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, COMFY_AUDIT_CONFIG: '' },
  })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(0, 300)}`)
  return ms
}

/** Times `comfy-audit --help` from the built CLI (dist/ must exist). */
export function measureCliStart(runs = 10): CliStartResult {
  const main = join(ROOT, 'dist/cli/main.js')
  const help: number[] = []
  const bare: number[] = []
  for (let i = 0; i < runs; i++) {
    help.push(time([main, '--help']))
    bare.push(time(['-e', '']))
  }
  help.sort((a, b) => a - b)
  bare.sort((a, b) => a - b)
  return {
    runs,
    help_p50_ms: round(percentile(help, 50), 1),
    help_max_ms: round(help[help.length - 1]!, 1),
    bare_node_p50_ms: round(percentile(bare, 50), 1),
  }
}

import type { Command } from 'commander'
import { asJsonValue } from '../../audit/json-value.js'
import { stringifyJson } from '../../audit/json.js'
import { SESSION_STATUSES } from '../../audit/types.js'
// The analyses are imported when one runs: registering the commands (`--help`) must not load them.
import type { AnalysisCommand, AnalysisParams } from '../../query/analysis/analysis-request.js'
import { CliError, openCliStore, type CliStoreOptions } from '../open-store.js'

type Opts = CliStoreOptions & Record<string, string | boolean | undefined>

function addCommon(cmd: Command): Command {
  return cmd
    .option('--since <time>', 'from (90d, 12h, 2026-11-01)')
    .option('--until <time>', 'before')
    .option('--node-type <type>', 'only node runs of this class_type')
    .option('--user <name>', 'only runs of this person')
    .option('--origin <origin>', 'only this gateway log')
    .option('--status <list>', `sessions with status (comma list of ${SESSION_STATUSES.join(', ')})`)
    .option('--model <sha256-or-name>', 'only runs that used this model')
    .option('--workflow <id>', "only runs of this UI workflow (the workflow's id)")
    .option('--json', 'the answer as one JSON object')
    .option('--data <dir>', 'data directory', process.env.COMFY_AUDIT_DATA ?? './data')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON)')
}

/** Commander's camelCase flags to the HTTP API's parameter names. */
function params(opts: Opts, extra: Record<string, string | undefined> = {}): AnalysisParams {
  const pick = (v: string | boolean | undefined): string | undefined =>
    typeof v === 'string' ? v : undefined
  return {
    since: pick(opts.since),
    until: pick(opts.until),
    node_type: pick(opts.nodeType),
    user: pick(opts.user),
    origin: pick(opts.origin),
    status: pick(opts.status),
    model: pick(opts.model),
    workflow: pick(opts.workflow),
    by: pick(opts.by),
    bucket: pick(opts.bucket),
    baseline: pick(opts.baseline),
    recent: pick(opts.recent),
    min_samples: pick(opts.minSamples),
    factor: pick(opts.factor),
    where: pick(opts.where),
    last: pick(opts.last),
    ...extra,
  }
}

async function run(
  command: AnalysisCommand,
  opts: Opts,
  extra?: Record<string, string | undefined>,
): Promise<void> {
  const [{ runAnalysis }, { formatAnalysis }] = await Promise.all([
    import('../../query/analysis/analysis-request.js'),
    import('../../query/analysis/analysis-format.js'),
  ])
  const store = await openCliStore(opts)
  try {
    const result = await runAnalysis(store, command, params(opts, extra))
    if (!result.ok) throw new CliError(result.reason)
    process.stdout.write(
      opts.json
        ? stringifyJson(asJsonValue(result.value), { strict: true }) + '\n'
        : formatAnalysis(command, result.value),
    )
  } finally {
    await store.close()
  }
}

/** `stats`, `usage`, `trends`, `regressions`, `correlate`, `diff`, `suggest`: questions over the whole history. */
export function registerAnalysisCommands(program: Command): void {
  addCommon(
    program
      .command('stats')
      .description(
        'per node type (or person, model, origin, day, hour): runs, errors, cache hits, duration and GPU memory percentiles',
      )
      .option('--by <grouping>', 'node_type, user, model, origin, day or hour', 'node_type'),
  ).action((opts: Opts) => run('stats', opts))
  addCommon(
    program
      .command('usage')
      .description(
        'per person (or day, origin, model): prompts, successes, errors, GPU-seconds, node runs, outputs',
      )
      .option('--by <grouping>', 'user, day, origin or model', 'user'),
  ).action((opts: Opts) => run('usage', opts))
  addCommon(
    program
      .command('trends')
      .description("one node type's runs, duration p50/p95 and errors per hour, day or week")
      .option('--bucket <size>', '1h, 1d or 1w', '1d'),
  ).action((opts: Opts) => run('trends', opts))
  addCommon(
    program
      .command('regressions')
      .description(
        'node types (and node type + workflow) slower recently than in the baseline, with a Mann-Whitney p-value',
      )
      .option('--baseline <duration>', 'baseline window before the recent one', '7d')
      .option('--recent <duration>', 'recent window, ending at --until or now', '1d')
      .option('--min-samples <n>', 'fewest executed runs per window to compare', '20'),
  ).action((opts: Opts) => run('regressions', opts))
  addCommon(
    program
      .command('correlate')
      .description(
        "Spearman correlation of a node type's duration with GPU memory, size, batch, steps or any numeric input",
      )
      .option(
        '--factor <name>',
        'gpu_memory_used, gpu_memory_fraction, pixels, batch_size, steps, steps_x_pixels or an input name',
      ),
  ).action((opts: Opts) => run('correlate', opts))
  addCommon(
    program
      .command('diff')
      .description('two sessions side by side: nodes, inputs, models, seeds, per-node status and duration')
      .argument('[a]', 'first session id')
      .argument('[b]', 'second session id')
      .option('--last <n>', 'with --workflow: compare the last two runs of the workflow', '2'),
  ).action((a: string | undefined, b: string | undefined, opts: Opts) => {
    if ((a === undefined) !== (b === undefined))
      throw new CliError('diff: give two session ids, or --workflow W --last 2')
    return run('diff', opts, a === undefined ? {} : { a, b })
  })
  addCommon(
    program
      .command('suggest')
      .description(
        'statistics of past successful runs of a node type: parameter distributions and common combinations',
      )
      .option('--where <pairs>', 'only runs with these values, e.g. width=1024,height=1024'),
  ).action((opts: Opts) => run('suggest', opts))
  program
    .command('rebuild')
    .description('recompute the derived tables and the hourly rollups from the log (stop the gateway first)')
    .option('--origin <origin>', 'only this gateway log')
    .option('--data <dir>', 'data directory', process.env.COMFY_AUDIT_DATA ?? './data')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON)')
    .action(async (opts: Opts) => {
      const store = await openCliStore(opts)
      try {
        const outcome = await store.rebuildDerived(typeof opts.origin === 'string' ? opts.origin : undefined)
        for (const problem of outcome.problems) process.stderr.write(`skipped: ${problem}\n`)
        process.stdout.write(`rebuilt derived tables and rollups from ${outcome.events} events\n`)
      } finally {
        await store.close()
      }
    })
}

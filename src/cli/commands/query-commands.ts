import { createWriteStream } from 'node:fs'
import { watchErrors, write } from '../output.js'
import type { Writable } from 'node:stream'
import type { Command } from 'commander'
import { SESSION_STATUSES, type SessionStatus } from '../../audit/types.js'
import { parseTimeSpec } from '../../config/duration.js'
import type * as Formats from '../../query/format.js'
import { CliError, openCliStore, type CliStoreOptions } from '../open-store.js'

function timeOption(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const r = parseTimeSpec(value)
  if (!r.ok) throw new CliError(`--${name}: ${r.reason}`)
  return r.value.toISOString()
}

function statusOption(value: string | undefined): SessionStatus[] | undefined {
  if (value === undefined) return undefined
  const list = value.split(',').map((s) => s.trim())
  for (const s of list) {
    if (!(SESSION_STATUSES as readonly string[]).includes(s)) {
      throw new CliError(
        `--status: unknown status ${JSON.stringify(s)} (one of ${SESSION_STATUSES.join(', ')})`,
      )
    }
  }
  return list as SessionStatus[]
}

function limitOption(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new CliError(`--limit: expected a whole number of at least 1, got ${JSON.stringify(value)}`)
  }
  return n
}

function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', 'data directory', process.env.COMFY_AUDIT_DATA ?? './data')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON)')
}

/** A write error as the one line a CLI user gets: which output, what happened, how far it got. */
function outputError(error: unknown, output: string, rows: number): CliError {
  const e = error as NodeJS.ErrnoException
  if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') {
    return new CliError(
      `export: ${output} was closed by its reader (EPIPE); stopped after ${rows} rows, the export is incomplete`,
    )
  }
  // Node's message is "CODE: description, syscall 'path'": keep the code and the description.
  const what = e.code ? e.message.split(',')[0]! : String(e.message ?? error)
  return new CliError(`export: cannot write ${output} (${what})${rows > 0 ? ` after ${rows} rows` : ''}`)
}

/** Opens `-o FILE` for writing; a CliError naming the path when it cannot be created. */
async function openOutputFile(path: string): Promise<Writable> {
  const stream = createWriteStream(path)
  try {
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve())
      stream.once('error', reject)
    })
  } catch (error) {
    throw outputError(error, path, 0)
  }
  return stream
}

/** The output formats, imported when a command prints: registering the commands (`--help`) must not load them. */
const formats = (): Promise<typeof Formats> => import('../../query/format.js')

/** `export --format sqlite`: every table of the store (or a time window of sessions) in one new SQLite file. */
async function exportSqliteFile(
  opts: CliStoreOptions & Record<string, string | boolean | undefined>,
): Promise<void> {
  if (typeof opts.output !== 'string' || opts.output === '') {
    throw new CliError('--format sqlite: name the file to write with -o FILE')
  }
  const since = timeOption('since', opts.since as string | undefined)
  const until = timeOption('until', opts.until as string | undefined)
  const store = await openCliStore(opts)
  try {
    const { exportToSqlite } = await import('../../query/export-sqlite.js')
    const summary = await exportToSqlite(store, opts.output, { since, until })
    process.stderr.write(
      `exported ${summary.sessions} sessions, ${summary.nodeRuns} node runs, ${summary.outputs} outputs, ` +
        `${summary.events} events and ${summary.checkpoints} checkpoints to ${summary.file}\n`,
    )
  } finally {
    await store.close()
  }
}

/** `sessions`, `show` and `export`: read the store directly. */
export function registerQueryCommands(program: Command): void {
  addStoreOptions(
    program
      .command('sessions')
      .description('list recorded sessions (prompt runs), newest first')
      .option('--since <time>', 'only sessions queued since (90d, 12h, 2026-11-01)')
      .option('--until <time>', 'only sessions queued before')
      .option('--status <list>', `comma list of ${SESSION_STATUSES.join(', ')}`)
      .option('--user <name>', 'only sessions of this person')
      .option('--limit <n>', 'at most this many', '50')
      .option('--json', 'one JSON object per line'),
  ).action(async (opts: CliStoreOptions & Record<string, string | boolean | undefined>) => {
    const store = await openCliStore(opts)
    try {
      const { formatSessionsTable, jsonLine, sessionExportRow } = await formats()
      const sessions = await store.sessions({
        since: timeOption('since', opts.since as string | undefined),
        until: timeOption('until', opts.until as string | undefined),
        status: statusOption(opts.status as string | undefined),
        user: opts.user as string | undefined,
        limit: limitOption(opts.limit as string | undefined, 50),
      })
      if (opts.json) for (const s of sessions) await write(process.stdout, jsonLine(sessionExportRow(s)))
      else await write(process.stdout, formatSessionsTable(sessions))
    } finally {
      await store.close()
    }
  })

  addStoreOptions(
    program
      .command('show')
      .description('show one session: submitter, models, seeds and a per-node timeline')
      .argument('<session>', 'session id (ComfyUI prompt_id)')
      .option('--origin <origin>', 'the gateway log it belongs to, when several share a store')
      .option('--json', 'the session and its node runs as JSON'),
  ).action(
    async (sessionId: string, opts: CliStoreOptions & Record<string, string | boolean | undefined>) => {
      const store = await openCliStore(opts)
      try {
        const { formatSessionTimeline, jsonLine, nodeRunExportRow, sessionExportRow } = await formats()
        const session = await store.session(sessionId, opts.origin as string | undefined)
        if (!session) throw new CliError(`no session ${JSON.stringify(sessionId)} in the store`)
        const runs = await store.nodeRuns({ sessionId, origin: session.origin })
        if (opts.json) {
          await write(
            process.stdout,
            jsonLine({
              ...sessionExportRow(session),
              prompt: session.prompt,
              workflow: session.workflow,
              node_runs: runs.map(nodeRunExportRow),
            }),
          )
        } else {
          await write(process.stdout, formatSessionTimeline(session, runs))
        }
      } finally {
        await store.close()
      }
    },
  )

  addStoreOptions(
    program
      .command('export')
      .description('export node runs or sessions as JSONL or CSV, or everything as a standalone SQLite file')
      .option(
        '--format <format>',
        'jsonl, csv or sqlite (sessions, node runs, outputs and events; needs -o)',
        'jsonl',
      )
      .option('--table <table>', 'node_runs, sessions or outputs', 'node_runs')
      .option('--since <time>', 'from this time (90d, 12h, 2026-11-01)')
      .option('--until <time>', 'up to this time')
      .option('-o, --output <file>', 'write to a file instead of stdout'),
  ).action(runExport)
}

/** `export`: node runs, sessions or outputs as JSONL or CSV (or everything as SQLite), to stdout or `-o FILE`. */
async function runExport(
  opts: CliStoreOptions & Record<string, string | boolean | undefined>,
): Promise<void> {
  const format = String(opts.format)
  const table = String(opts.table)
  if (format === 'sqlite') return exportSqliteFile(opts)
  if (format !== 'jsonl' && format !== 'csv')
    throw new CliError(
      `--format: expected jsonl or csv (or sqlite with -o FILE), got ${JSON.stringify(format)}`,
    )
  if (table !== 'node_runs' && table !== 'sessions' && table !== 'outputs') {
    throw new CliError(`--table: expected node_runs, sessions or outputs, got ${JSON.stringify(table)}`)
  }
  const since = timeOption('since', opts.since as string | undefined)
  const until = timeOption('until', opts.until as string | undefined)
  const store = await openCliStore(opts)
  let out: Writable
  try {
    out = opts.output ? await openOutputFile(String(opts.output)) : process.stdout
  } catch (error) {
    await store.close()
    throw error
  }
  const outputName = opts.output ? String(opts.output) : 'standard output'
  const outputState = watchErrors(out)
  let rows = 0
  try {
    const {
      NODE_RUN_EXPORT_FIELDS,
      OUTPUT_EXPORT_FIELDS,
      SESSION_EXPORT_FIELDS,
      csvHeader,
      csvRow,
      jsonLine,
      nodeRunExportRow,
      outputExportRow,
      sessionExportRow,
    } = await formats()
    const fields =
      table === 'sessions'
        ? SESSION_EXPORT_FIELDS
        : table === 'outputs'
          ? OUTPUT_EXPORT_FIELDS
          : NODE_RUN_EXPORT_FIELDS
    if (format === 'csv') await write(out, csvHeader(fields))
    const emit = async (row: Parameters<typeof jsonLine>[0]): Promise<void> => {
      rows++
      await write(out, format === 'csv' ? csvRow(fields, row) : jsonLine(row))
    }
    if (table === 'sessions') {
      const pageSize = 1000
      for (let offset = 0; ; offset += pageSize) {
        const page = await store.sessions({ since, until, limit: pageSize, offset })
        for (const s of page) await emit(sessionExportRow(s))
        if (page.length < pageSize) break
      }
    } else if (table === 'outputs') {
      // By the time each file was first seen, like the other tables' own times.
      const inWindow = (time: string): boolean =>
        (since === undefined || time >= since) && (until === undefined || time < until)
      for (const o of (await store.derivedRows()).outputs)
        if (inWindow(o.time)) await emit(outputExportRow(o))
    } else {
      for (const r of await store.nodeRuns({ since, until })) await emit(nodeRunExportRow(r))
    }
    if (out !== process.stdout)
      await new Promise<void>((resolve, reject) =>
        out.end((err?: Error | null) => (err ? reject(err) : resolve())),
      )
  } catch (error) {
    if (error instanceof CliError) throw error
    const code = (error as NodeJS.ErrnoException).code
    // A failing store read is reported as itself; only output errors are about the output.
    if (outputState.error === error || code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED')
      throw outputError(error, outputName, Math.max(0, rows - 1))
    throw error
  } finally {
    await store.close()
    if (out !== process.stdout && !out.writableFinished) out.destroy()
  }
  if (opts.output) process.stderr.write(`exported ${rows} ${table} rows to ${String(opts.output)}\n`)
}

/**
 * Ledger commands: `key`, `verify`, `evidence`, `verify-evidence`, `prune`, `erase`.
 * Each command's work is an exported function returning its output and exit code, so tests run it
 * without a child process.
 */
import { existsSync, readFileSync } from 'node:fs'
import { readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { parseTimeSpec } from '../../config/duration.js'
// The ledger and the lock are imported where a command uses them: registering the commands (`--help`)
// must not load them.
import type { KeyringEntry } from '../../ledger/keyring.js'
import type { VerifyProgress } from '../../ledger/verify-ledger.js'
import { CliError, cliConfig, cliUser, openCliStore, type CliStoreOptions } from '../open-store.js'
import type { DirLock } from '../../store/data-dir-lock.js'

/** What a command prints and how it exits. */
interface CommandOutcome {
  readonly output: string
  readonly exitCode: number
}

type Opts = CliStoreOptions & Record<string, unknown>

function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', 'data directory', process.env.COMFY_AUDIT_DATA ?? './data')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON)')
}

/** A verifier key given on the command line, or the name of a file holding one. */
function keyArgument(value: string): string {
  const text = existsSync(value) ? readFileSync(value, 'utf8') : value
  return text.trim()
}

/** Reads a keyring file, or every file of a keyring directory (names starting with `.` skipped). */
async function readKeyring(path: string): Promise<ReadonlyMap<string, KeyringEntry>> {
  let files: { name: string; text: string }[]
  try {
    const info = await stat(path)
    if (info.isDirectory()) {
      files = []
      for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) =>
        a.name < b.name ? -1 : 1,
      )) {
        if (!entry.isFile() || entry.name.startsWith('.')) continue
        files.push({ name: join(path, entry.name), text: await readFile(join(path, entry.name), 'utf8') })
      }
    } else files = [{ name: path, text: await readFile(path, 'utf8') }]
  } catch (error) {
    throw new CliError(
      `--keyring: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
    )
  }
  const { parseKeyring } = await import('../../ledger/keyring.js')
  const ring = parseKeyring(files)
  if (!ring.ok) throw new CliError(`--keyring: ${ring.reason}`)
  return ring.keys
}

/** The data dir's existing signing key for `origin`; a CliError naming the path when there is none. */
async function existingKey(data: string, origin: string): Promise<string> {
  if (!existsSync(data)) throw new CliError(`data dir not found: ${data} (check --data)`)
  const { loadSigningKey } = await import('../../ledger/key-store.js')
  const key = await loadSigningKey(data, origin)
  if (!key) {
    throw new CliError(
      `no signing key in ${data}/keys/ledger.key (check --data; the gateway creates it at first start, ` +
        `or pass the verifier key with --key)`,
    )
  }
  return key.verifierKey
}

/** `key`: the gateway's verifier key. Read-only: it never creates a key (the gateway does, at first start). */
export async function runKey(opts: Opts): Promise<CommandOutcome> {
  const config = await cliConfig(opts)
  const origin = typeof opts.origin === 'string' ? opts.origin : (config.origin ?? 'comfy-audit')
  return { output: (await existingKey(config.data, origin)) + '\n', exitCode: 0 }
}

/** Events between two progress lines of `verify` when a second has not passed yet. */
const VERIFY_PROGRESS_LINE_EVENTS = 100_000

/** `verify`: recompute the log, the checkpoints and the derived tables. */
export async function runVerify(opts: Opts): Promise<CommandOutcome> {
  const config = await cliConfig(opts)
  const origin = typeof opts.origin === 'string' ? opts.origin : (config.origin ?? 'comfy-audit')
  let verifierKey: string | ((o: string) => string | undefined)
  let keyring: ReadonlyMap<string, KeyringEntry> | null = null
  if (typeof opts.key === 'string' && typeof opts.keyring === 'string')
    throw new CliError('--key and --keyring: give one (a keyring holds the key of every origin)')
  if (typeof opts.keyring === 'string') {
    const ring = await readKeyring(opts.keyring)
    keyring = ring
    verifierKey = (o) => ring.get(o)?.verifierKey
  } else if (typeof opts.key === 'string') verifierKey = keyArgument(opts.key)
  else {
    const own = await existingKey(config.data, origin)
    verifierKey = (o) => (o === origin ? own : undefined)
  }
  const published =
    typeof opts.published === 'string'
      ? (await import('../../ledger/publish.js')).parsePublishedCheckpoints(
          await readFile(opts.published, 'utf8'),
        ).checkpoints
      : undefined
  const store = await openCliStore(opts)
  try {
    // Progress on stderr (stdout stays the report): every --progress-every events, or a line a second, and
    // a last one at the end once any was written. A log shorter than that (or than a second) writes none.
    const every = opts.progressEvery === undefined ? VERIFY_PROGRESS_LINE_EVENTS : Number(opts.progressEvery)
    if (!Number.isInteger(every) || every < 1)
      throw new CliError(
        `--progress-every ${String(opts.progressEvery)}: expected a whole number of events, at least 1`,
      )
    let lastLineAt = performance.now()
    let lastLineEvents = 0
    let last: VerifyProgress | undefined
    const line = (p: VerifyProgress): void => {
      process.stderr.write(`verify: ${p.events}${p.expected === null ? '' : `/${p.expected}`} events\n`)
      lastLineAt = performance.now()
      lastLineEvents = p.events
    }
    // Loaded here: verify pulls in the projection and its schemas, which `--help` must not load.
    const { formatLedgerProblem, verifyLedger } = await import('../../ledger/verify-ledger.js')
    const report = await verifyLedger({
      store,
      verifierKey,
      origin: typeof opts.origin === 'string' ? opts.origin : undefined,
      published,
      onProgress: (p) => {
        last = p
        if (p.originDone) return
        if (p.events - lastLineEvents >= every || performance.now() - lastLineAt >= 1000) line(p)
      },
    })
    if (last && lastLineEvents > 0 && last.events !== lastLineEvents) line(last)
    if (opts.json) return { output: JSON.stringify(report) + '\n', exitCode: report.ok ? 0 : 1 }
    const lines: string[] = []
    for (const o of report.origins) {
      const pruned = o.pruned.reduce((n, r) => n + r.to - r.from + 1, 0)
      lines.push(
        `${o.origin}: ${o.events} events, ${o.checkpoints} checkpoints, signed through seq ${o.checkpointed - 1}` +
          (o.events > o.checkpointed
            ? ` (${o.events - o.checkpointed} newer events not yet checkpointed)`
            : '') +
          (pruned > 0
            ? `; pruned: ${o.pruned.map((r) => `${r.from}..${r.to} (by #${r.by})`).join(', ')}`
            : ''),
      )
    }
    if (keyring) {
      const seen = new Set(report.origins.map((o) => o.origin))
      for (const entry of keyring.values()) {
        if (!seen.has(entry.origin))
          lines.push(`${entry.origin}: in the keyring (${entry.source}), no events in this store`)
      }
    }
    if (report.ok) lines.push('OK')
    else for (const p of report.problems) lines.push(`FAIL ${formatLedgerProblem(p)}`)
    return { output: lines.join('\n') + '\n', exitCode: report.ok ? 0 : 1 }
  } finally {
    await store.close()
  }
}

/** `evidence SESSION`: the bundle text. */
export async function runEvidence(sessionId: string, opts: Opts): Promise<CommandOutcome> {
  const store = await openCliStore(opts)
  try {
    // Loaded here: the evidence code pulls in the projection and its schemas, which `--help` must not load.
    const { buildEvidence } = await import('../../ledger/evidence.js')
    const built = await buildEvidence({
      store,
      sessionId,
      origin: typeof opts.origin === 'string' ? opts.origin : undefined,
    })
    if (!built.ok) throw new CliError(built.reason)
    if (typeof opts.output === 'string') {
      await writeFile(opts.output, built.value, 'utf8')
      return { output: `wrote ${opts.output}\n`, exitCode: 0 }
    }
    return { output: built.value, exitCode: 0 }
  } finally {
    await store.close()
  }
}

/** `verify-evidence FILE --key KEY`: offline. */
export async function runVerifyEvidence(file: string, opts: { key?: string }): Promise<CommandOutcome> {
  if (!opts.key)
    throw new CliError('--key: the verifier key of the log (as `comfy-audit key` prints it) is required')
  const { verifyEvidence } = await import('../../ledger/evidence.js')
  const result = verifyEvidence(await readFile(file, 'utf8'), keyArgument(opts.key))
  if (!result.ok) return { output: `FAIL ${result.reason}\n`, exitCode: 1 }
  const v = result.value
  const summary = v.summary
  const lines = [
    `OK: session ${v.session_id} of ${v.origin}: ${v.events} events proven against a signed checkpoint of size ${v.treeSize}`,
    `summary: ${JSON.stringify(summary)}`,
  ]
  return { output: lines.join('\n') + '\n', exitCode: 0 }
}

/**
 * Takes the data dir's lock for a command that rewrites the log. A running gateway holds it: erasing or
 * pruning beside it would interleave sequence numbers with its writes, so the command is refused.
 */
async function lockForRewrite(opts: Opts, purpose: 'erase' | 'prune'): Promise<DirLock> {
  const data = (await cliConfig(opts)).data
  const { DirLockedError, acquireDirLock } = await import('../../store/data-dir-lock.js')
  try {
    return acquireDirLock(data, { purpose: `comfy-audit ${purpose}` })
  } catch (err) {
    if (err instanceof DirLockedError) {
      const h = err.holder
      const who = h ? `${h.purpose} (pid ${h.pid} on ${h.host}, since ${h.since})` : 'another process'
      throw new CliError(
        `${purpose} refused: the data dir ${data} is held by ${who}. A running gateway writes this log; ` +
          `stop it first (or let its own retention prune, config retention.days), then run ${purpose} again`,
      )
    }
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`data dir not found: ${data}`)
    throw err
  }
}

/** `prune --older-than 90d`. */
export async function runPrune(opts: Opts): Promise<CommandOutcome> {
  const spec = typeof opts.olderThan === 'string' ? opts.olderThan : ''
  // One time syntax everywhere (src/config/duration.ts): `90d` back from now, or an ISO date.
  const t = parseTimeSpec(spec)
  if (!t.ok) throw new CliError(`--older-than: ${t.reason}`)
  const before = t.value.toISOString()
  const { pruneOlderThan } = await import('../../ledger/retention.js')
  if (opts.dryRun === true) {
    const store = await openCliStore(opts)
    try {
      const r = await pruneOlderThan({ store, before, user: cliUser(), dryRun: true })
      return {
        output:
          `dry run: would prune ${r.pruned} event payloads before ${before}` +
          (r.ranges.length > 0 ? ` (seq ${r.ranges.map(([a, b]) => `${a}..${b}`).join(', ')})` : '') +
          '; nothing changed\n',
        exitCode: 0,
      }
    } finally {
      await store.close()
    }
  }
  const lock = await lockForRewrite(opts, 'prune')
  const store = await openCliStore(opts).catch((err: unknown) => {
    lock.release()
    throw err
  })
  try {
    const r = await pruneOlderThan({ store, before, user: cliUser() })
    return {
      output:
        r.recordedAt === null
          ? `nothing to prune before ${before}\n`
          : `pruned ${r.pruned} event payloads before ${before} (recorded as #${r.recordedAt}); leaf hashes kept\n`,
      exitCode: 0,
    }
  } finally {
    await store.close()
    lock.release()
  }
}

/** `erase SESSION --reason TEXT`. */
export async function runErase(sessionId: string, opts: Opts): Promise<CommandOutcome> {
  if (typeof opts.reason !== 'string' || opts.reason.trim() === '') throw new CliError('--reason is required')
  const lock = await lockForRewrite(opts, 'erase')
  const store = await openCliStore(opts).catch((err: unknown) => {
    lock.release()
    throw err
  })
  try {
    const { eraseSession } = await import('../../ledger/retention.js')
    const r = await eraseSession({ store, sessionId, reason: opts.reason, user: cliUser() })
    return {
      output:
        r.recordedAt === null
          ? `no payloads of session ${sessionId} to erase\n`
          : `erased ${r.pruned} event payloads of session ${sessionId} (recorded as #${r.recordedAt}); leaf hashes kept\n`,
      exitCode: 0,
    }
  } finally {
    await store.close()
    lock.release()
  }
}

function emit(outcome: CommandOutcome): void {
  process.stdout.write(outcome.output)
  if (outcome.exitCode !== 0) process.exitCode = outcome.exitCode
}

/** Adds the ledger commands to the program. */
export function registerLedgerCommands(program: Command): void {
  addStoreOptions(
    program
      .command('key')
      .description("print this gateway's ledger verifier key (C2SP format)")
      .option('--origin <origin>', 'the log name the key signs as (default: config origin)'),
  ).action(async (opts: Opts) => emit(await runKey(opts)))
  addStoreOptions(
    program
      .command('verify')
      .description(
        'recompute the audit log, its signed checkpoints and the derived tables; OK or the first damage',
      )
      .option('--key <key>', 'verifier key (or a file holding it); default: the data dir key')
      .option(
        '--keyring <path>',
        'verifier keys of several origins: a file with one key per line, or a directory of such files',
      )
      .option('--published <file>', 'checkpoints published off the machine (JSON lines)')
      .option('--origin <origin>', 'only this log')
      .option('--json', 'the report as JSON')
      .option(
        '--progress-every <events>',
        `a progress line on stderr every N events (and every second) (default: ${VERIFY_PROGRESS_LINE_EVENTS})`,
      ),
  ).action(async (opts: Opts) => emit(await runVerify(opts)))
  addStoreOptions(
    program
      .command('evidence')
      .description(
        "write a session's evidence bundle: its events with inclusion proofs and a signed checkpoint",
      )
      .argument('<session>', 'session id (ComfyUI prompt_id)')
      .option('--origin <origin>', 'the gateway log it belongs to')
      .option('-o, --output <file>', 'write to a file instead of stdout'),
  ).action(async (sessionId: string, opts: Opts) => emit(await runEvidence(sessionId, opts)))
  program
    .command('verify-evidence')
    .description('verify an evidence bundle offline against the log key')
    .argument('<bundle>', 'bundle file')
    .requiredOption('--key <key>', 'verifier key as printed by `comfy-audit key` (or a file holding it)')
    .action(async (file: string, opts: { key?: string }) => emit(await runVerifyEvidence(file, opts)))
  addStoreOptions(
    program
      .command('prune')
      .description('remove event payloads older than a duration, keeping leaf hashes (recorded in the log)')
      .requiredOption('--older-than <time>', 'a duration back from now (90d) or an ISO date (2026-11-01)')
      .option('--dry-run', 'only say what would be pruned; change nothing'),
  ).action(async (opts: Opts) => emit(await runPrune(opts)))
  addStoreOptions(
    program
      .command('erase')
      .description("remove one session's event payloads, keeping leaf hashes (recorded in the log)")
      .argument('<session>', 'session id')
      .requiredOption('--reason <text>', 'why (kept in the log)'),
  ).action(async (sessionId: string, opts: Opts) => emit(await runErase(sessionId, opts)))
}

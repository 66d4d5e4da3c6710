import { readFile } from 'node:fs/promises'
import { asJsonValue } from '../../audit/json-value.js'
import type { Command } from 'commander'
// Imported when `trace` runs: registering the commands (`--help`) must not load provenance.
import type { TraceResult } from '../../provenance/trace.js'
import { canonicalJson } from '../../audit/json.js'
import { CliError, openCliStore, type CliStoreOptions } from '../open-store.js'

/** Human-readable trace. */
function formatTrace(t: TraceResult): string {
  const lines = [
    `session:        ${t.session_id} (${t.origin}), found by ${t.match === 'sha256' ? 'output SHA-256' : 'PNG prompt chunk'}`,
    `person:         ${t.user ?? '(unknown)'}`,
    `time:           ${t.queued_at ?? '(unknown)'}  status: ${t.status}`,
    `producing node: ${t.producing_node ? `${t.producing_node.node_id} (${t.producing_node.node_type ?? '?'})` : '(unknown)'}`,
    `image sha256:   ${t.sha256}`,
    'models:',
    ...(Array.isArray(t.models) ? t.models : []).map((m) => `  ${canonicalJson(m)}`),
    `seeds:          ${canonicalJson(t.seeds)}`,
    'prompts:',
    ...t.prompts.map((p) => `  [${p.node_id}.${p.input}] ${p.text}`),
    `prompt sha256:  ${t.prompt_sha256 ?? '(none)'}`,
    `workflow:       ${t.workflow === null ? '(none)' : `${canonicalJson(t.workflow).length} bytes recorded`}`,
  ]
  if (t.reused_by.length > 0) {
    lines.push(
      'reused from cache by:',
      ...t.reused_by.map((r) => `  ${r.session_id} (${r.origin}) at ${r.time}`),
    )
  }
  return lines.join('\n') + '\n'
}

/** `trace FILE`: the run that produced an image. */
export async function runTrace(
  file: string,
  opts: CliStoreOptions & Record<string, unknown>,
): Promise<{ output: string; exitCode: number }> {
  const bytes = await readFile(file).catch((error: unknown) => {
    throw new CliError(`cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`)
  })
  const { traceImage } = await import('../../provenance/trace.js')
  const store = await openCliStore(opts)
  try {
    const r = await traceImage(store, bytes)
    if (!r.ok) return { output: `not found: ${r.reason}\n`, exitCode: 1 }
    const output = opts.json ? canonicalJson(asJsonValue(r.value)) + '\n' : formatTrace(r.value)
    return { output, exitCode: 0 }
  } finally {
    await store.close()
  }
}

/** Adds `trace`. */
export function registerTraceCommand(program: Command): void {
  program
    .command('trace')
    .description('find the run that produced an image: by its SHA-256, else by its PNG prompt chunk')
    .argument('<file>', 'image file')
    .option('--json', 'JSON with a top-level session_id')
    .option('--data <dir>', 'data directory', process.env.COMFY_AUDIT_DATA ?? './data')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON)')
    .action(async (file: string, opts: CliStoreOptions & Record<string, unknown>) => {
      const r = await runTrace(file, opts)
      process.stdout.write(r.output)
      if (r.exitCode !== 0) process.exitCode = r.exitCode
    })
}

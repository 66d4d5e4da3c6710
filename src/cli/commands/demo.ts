/**
 * `comfy-audit demo`: a recorded studio to look at, from a fresh clone, in one command.
 */
import { join } from 'node:path'
import type { Command } from 'commander'
import { CliError } from '../open-store.js'

function whole(text: string, name: string, min: number): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < min)
    throw new CliError(`${name} must be a whole number ≥ ${min}, got ${text}`)
  return n
}

function positive(text: string, name: string): number {
  const n = Number(text)
  if (!(n > 0) || !Number.isFinite(n)) throw new CliError(`${name} must be a positive number, got ${text}`)
  return n
}

/** Adds `demo [--prompts 150] [--days 3] [--speed 10] [--data DIR] [--port 0] [--once]`. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'start the ComfyUI stand-in, the gateway and the dashboard on free ports, drive a few days of studio ' +
        'history through the gateway, and print the URLs and tokens to open them with',
    )
    .option('--prompts <n>', 'prompts to drive', '150')
    .option('--days <n>', 'days of history they are spread over, ending now', '3')
    .option('--speed <factor>', 'time compression (the stand-in runs this many times faster)', '10')
    .option('--seed <n>', 'seed of every random choice', '1')
    .option('--data <dir>', 'folder for the stand-in and the audit data (default: a new temporary folder)')
    .option('--host <host>', 'interface for both servers', '127.0.0.1')
    .option('--port <port>', 'gateway port (0 = any free port)', '0')
    .option('--web-root <dir>', 'a built ComfyUI front end for the stand-in to serve')
    .option('--once', 'drive the history, print the summary and exit (for scripts)')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const out = (line: string): void => void process.stdout.write(line + '\n')
      const started = Date.now()
      out('comfy-audit demo: starting the ComfyUI stand-in and the gateway, then driving the history…')
      // Loaded only here: the stand-in and the gateway are not what other commands need at start.
      const { runDemo } = await import('../../demo/run-demo.js')
      const demo = await runDemo({
        prompts: whole(String(opts.prompts), '--prompts', 1),
        days: positive(String(opts.days), '--days'),
        speed: positive(String(opts.speed), '--speed'),
        seed: whole(String(opts.seed), '--seed', 0),
        port: whole(String(opts.port), '--port', 0),
        host: String(opts.host),
        ...(typeof opts.data === 'string' ? { data: opts.data } : {}),
        ...(typeof opts.webRoot === 'string' ? { webRoot: opts.webRoot } : {}),
        progress: out,
      })
      const s = demo.summary
      const url = demo.audit.url
      const auditData = join(demo.data, 'audit')
      out(
        `history: ${s.submitted} prompts recorded, ${s.refused} refused by ComfyUI, ${s.interrupted} interrupted ` +
          `(${((Date.now() - started) / 1000).toFixed(1)} s)`,
      )
      out(`  the portrait LoRA update broke wf-portrait from ${s.loraBrokenAt} to ${s.loraFixedAt}`)
      out(`  KSampler runs 40% slower since ${s.slowdownFrom}`)
      out('')
      out(`ComfyUI through the gateway: ${url}/`)
      out(`dashboard:                   ${url}/_audit/ui/`)
      out(`log in at:                   ${url}/_audit/login`)
      out(`the stand-in directly:       ${demo.sim.url}/`)
      out('tokens (shown only now; log in with one, or send it as "Authorization: Bearer TOKEN"):')
      for (const [name, token] of demo.tokens) out(`  ${name.padEnd(6)} ${token}`)
      out('')
      out('try:')
      out(`  comfy-audit sessions --data ${auditData}`)
      out(`  comfy-audit regressions --data ${auditData} --baseline 2d --recent 1d`)
      out(`  comfy-audit usage --data ${auditData} --by user`)
      out(`  comfy-audit verify --data ${auditData}`)
      if (opts.once) {
        await demo.close()
        return
      }
      out('')
      out('running; Ctrl-C stops both servers (the data stays in ' + demo.data + ')')
      await new Promise<void>((done) => {
        const stop = (): void => {
          process.off('SIGINT', stop)
          process.off('SIGTERM', stop)
          demo.close().then(done, (err: unknown) => {
            process.stderr.write(`comfy-audit demo: ${String(err)}\n`)
            done()
          })
        }
        process.on('SIGINT', stop)
        process.on('SIGTERM', stop)
      })
    })
}

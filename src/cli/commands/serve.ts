import type { Command } from 'commander'
import { setErrorHandler, type Logger } from '../../audit/report-error.js'
import { CliError, cliConfig } from '../open-store.js'

function consoleLogger(): Logger {
  const line = (level: string, message: string, fields?: Record<string, unknown>): void => {
    const extra = fields && Object.keys(fields).length ? ' ' + JSON.stringify(fields) : ''
    process.stderr.write(`${new Date().toISOString()} ${level} ${message}${extra}\n`)
  }
  return {
    info: (m, f) => line('info ', m, f),
    warn: (m, f) => line('warn ', m, f),
    error: (m, f) => line('error', m, f),
  }
}

/** `serve`: the gateway in front of ComfyUI. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the audit gateway in front of ComfyUI')
    .option('--comfyui <url>', 'ComfyUI base URL (default http://127.0.0.1:8188)')
    .option('--listen <host:port>', 'where the gateway listens (default 127.0.0.1:8190)')
    .option('--data <dir>', 'data directory (default ./data)')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--origin <name>', 'name of this gateway log (default comfy-audit/<hostname>)')
    .option('--config <file>', 'config file (JSON); environment: COMFY_AUDIT_CONFIG')
    .option(
      '--auth <mode>',
      'none (loopback only, default) | token (API tokens and browser login) | trusted-header (behind an SSO proxy)',
    )
    .option('--allow-insecure', 'allow --auth none on a non-loopback address (everyone becomes "local")')
    .action(async (opts: Record<string, string | undefined>) => {
      // The gateway and its dependencies load only when it runs: `--help` and the other commands skip them.
      const [{ startAuditGateway }, { redactingErrorHandler }, { createRedactor }] = await Promise.all([
        import('../../create-gateway.js'),
        import('../../identity/redacting-logger.js'),
        import('../../identity/redaction.js'),
      ])
      const config = await cliConfig(opts, {
        'comfyui.url': opts.comfyui,
        listen: opts.listen,
        origin: opts.origin,
        'auth.mode': opts.auth,
        'auth.allowInsecure': opts.allowInsecure === undefined ? undefined : true,
      })
      // What this process prints goes by the redaction policy too: a store or ComfyUI URL may carry a
      // password, an unhandled error may quote a request. (The gateway redacts its own logger's lines.)
      const { text: redact } = createRedactor(config.redaction)
      const unhandled = setErrorHandler(() => {})
      setErrorHandler(redactingErrorHandler(unhandled, redact))
      const logger = consoleLogger()
      const audit = await startAuditGateway(config, { logger }).catch((err: unknown) => {
        // Name the values the failure can be about, so the one line says which setting to fix.
        throw new CliError(
          redact(
            `cannot start: ${err instanceof Error ? err.message : String(err)} ` +
              `(listen ${config.listen}, store ${config.store.url}, data ${config.data})`,
          ),
        )
      })
      const say = (text: string): void => void process.stdout.write(redact(text) + '\n')
      say(
        `comfy-audit gateway listening on ${audit.url}  (ComfyUI: ${config.comfyui.url}, data: ${config.data}, store: ${audit.store.dialect})`,
      )
      say(`audit API: ${audit.url}/_audit/health`)
      const report = (healthy: boolean): void =>
        say(
          healthy
            ? `ComfyUI answers at ${config.comfyui.url}`
            : `ComfyUI does not answer at ${config.comfyui.url}: proxied routes get 503 until it does; retrying with backoff`,
        )
      // Give the first connection attempt a moment to settle, then report what we know; later changes are reported as they happen.
      let lastHealthy: boolean | null = null
      audit.gateway.on('upstream', ({ healthy }) => {
        if (healthy !== lastHealthy) report(healthy)
        lastHealthy = healthy
      })
      const initial = setTimeout(() => {
        if (lastHealthy === null) {
          lastHealthy = audit.gateway.upstreamHealthy
          report(lastHealthy)
        }
      }, 1500)
      initial.unref()
      let stopping = false
      const stop = (signal: string): void => {
        if (stopping) return
        stopping = true
        say(`${signal}: draining requests and flushing the audit log…`)
        audit
          .close()
          .then(() => {
            say('stopped')
            process.exit(0)
          })
          .catch((err: unknown) => {
            process.stderr.write(redact(`comfy-audit: shutdown failed: ${String(err)}`) + '\n')
            process.exit(1)
          })
      }
      process.on('SIGTERM', () => stop('SIGTERM'))
      process.on('SIGINT', () => stop('SIGINT'))
    })
}

#!/usr/bin/env node
import { Command } from 'commander'
import { setErrorHandler } from '../audit/report-error.js'
import { registerCommands } from './commands/index.js'
import { errorsWatched } from './output.js'

setErrorHandler((error, context) => {
  const message = error instanceof Error ? error.message : String(error)
  process.stderr.write(`comfy-audit: ${context ? `${context}: ` : ''}${message}\n`)
})

const EPIPE_LINE = 'comfy-audit: standard output was closed by its reader (EPIPE); the output is incomplete\n'

// Output commands write with process.stdout.write: without a listener, a reader that went away (`| head`)
// makes an unhandled 'error' event and a stack trace. Commands that watch their output report it themselves.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (errorsWatched(process.stdout)) return
  process.stderr.write(
    error.code === 'EPIPE' ? EPIPE_LINE : `comfy-audit: cannot write standard output (${error.message})\n`,
  )
  process.exit(1)
})

const program = new Command()
program
  .name('comfy-audit')
  .description('Audit gateway for ComfyUI: a durable, attributed, tamper-evident record of every run.')
  .version('0.1.0')
  .showHelpAfterError()

registerCommands(program)

program.parseAsync(process.argv).catch((error: unknown) => {
  if ((error as NodeJS.ErrnoException | null)?.code === 'EPIPE') process.stderr.write(EPIPE_LINE)
  else process.stderr.write(`comfy-audit: ${error instanceof Error ? error.message : String(error)}\n`)
  // Exit now rather than set exitCode: a `serve` that failed half-way (port in use, a corrupt store) still
  // holds sockets, timers or a store worker, and would otherwise stay up recording nothing.
  process.exit(1)
})

#!/usr/bin/env node
import { Command } from 'commander'
import { setErrorHandler } from '../audit/report-error.js'
import { registerCommands } from './commands/index.js'

setErrorHandler((error, context) => {
  const message = error instanceof Error ? error.message : String(error)
  process.stderr.write(`comfy-audit: ${context ? `${context}: ` : ''}${message}\n`)
})

const program = new Command()
program
  .name('comfy-audit')
  .description('Audit gateway for ComfyUI: a durable, attributed, tamper-evident record of every run.')
  .version('0.1.0')
  .showHelpAfterError()

registerCommands(program)

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`comfy-audit: ${error instanceof Error ? error.message : String(error)}\n`)
  // Exit now rather than set exitCode: a `serve` that failed half-way (port in use, a corrupt store) still
  // holds sockets, timers or a store worker, and would otherwise stay up recording nothing.
  process.exit(1)
})

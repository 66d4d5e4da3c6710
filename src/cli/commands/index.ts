import type { Command } from 'commander'
import { registerAnalysisCommands } from './analysis-commands.js'
import { registerDemoCommand } from './demo.js'
import { registerLedgerCommands } from './ledger-commands.js'
import { registerQueryCommands } from './query-commands.js'
import { registerServeCommand } from './serve.js'
import { registerSimCommand } from './sim.js'
import { registerStatusCommand } from './status.js'
import { registerTraceCommand } from './trace-command.js'
import { registerUsersCommands } from './users.js'

/** Adds every command to the program; each lives in its own file. */
export function registerCommands(program: Command): void {
  registerServeCommand(program)
  registerSimCommand(program)
  registerQueryCommands(program)
  registerStatusCommand(program)
  registerTraceCommand(program)
  registerLedgerCommands(program)
  registerUsersCommands(program)
  registerAnalysisCommands(program)
  registerDemoCommand(program)
}

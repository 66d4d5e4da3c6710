import type { Command } from 'commander'

/** Adds every command to the program; each lives in its own file. */
export function registerCommands(_program: Command): void {}

/**
 * Issue 14 item 5: `comfy-audit --help` and `sessions` start fast because registering the commands loads
 * nothing heavy: the gateway, the stand-in, sinks, capture, the config schema (zod), database clients and
 * `ws` load only in the action of a command that needs them. A child process records every module it resolves.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const ROOT = new URL('../..', import.meta.url).pathname

/** Packages and source folders `--help` must not load. */
const HEAVY = [
  /\/node_modules\/(better-sqlite3|pg|pg-[a-z-]+|ws|zod)\//,
  /\/src\/(gateway|sim|sinks|capture|identity|metrics|demo)\//,
  /\/src\/create-gateway\.ts$/,
  /\/src\/config\/(config|security-config)\.ts$/,
  /\/src\/store\/(sqlite|postgres)\//,
]

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ca-cli-start-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function modulesLoadedBy(script: string): Promise<string[]> {
  const log = join(dir, `modules-${Math.random().toString(36).slice(2)}.txt`)
  await run(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      './test/cli/register-module-log.mjs',
      '--input-type=module',
      '-e',
      script,
    ],
    { cwd: ROOT, env: { ...process.env, COMFY_AUDIT_MODULE_LOG: log, COMFY_AUDIT_CONFIG: '' } },
  )
  return [...new Set((await readFile(log, 'utf8')).split('\n').filter(Boolean))]
}

describe('CLI start-up', () => {
  it('registers every command without loading a heavy module', async () => {
    const modules = await modulesLoadedBy(
      "import { Command } from 'commander'\n" +
        "const { registerCommands } = await import('./src/cli/commands/index.ts')\n" +
        'const program = new Command()\n' +
        'registerCommands(program)\n' +
        "if (!program.commands.some((c) => c.name() === 'sessions')) throw new Error('sessions not registered')\n",
    )
    // The hook saw the registration (a log that recorded nothing would pass vacuously).
    expect(modules.some((m) => m.endsWith('/src/cli/commands/query-commands.ts'))).toBe(true)
    expect(modules.some((m) => m.endsWith('/node_modules/commander/esm.mjs'))).toBe(true)
    const heavy = modules.filter((m) => HEAVY.some((re) => re.test(m)))
    expect(heavy).toEqual([])
  }, 60_000)

  it('loads the database client once a command that reads the store runs', async () => {
    const modules = await modulesLoadedBy(
      "import { Command } from 'commander'\n" +
        "const { registerCommands } = await import('./src/cli/commands/index.ts')\n" +
        'const program = new Command().exitOverride()\n' +
        'registerCommands(program)\n' +
        `await program.parseAsync(['node', 'comfy-audit', 'sessions', '--store', 'sqlite::memory:', '--json'])\n`,
    )
    expect(modules.some((m) => /\/node_modules\/better-sqlite3\//.test(m))).toBe(true)
    expect(modules.some((m) => /\/src\/create-gateway\.ts$/.test(m))).toBe(false)
  }, 60_000)
})

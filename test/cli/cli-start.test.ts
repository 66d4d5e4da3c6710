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
  /\/src\/(gateway|sim|sinks|capture|identity|metrics|demo|ledger|provenance|query|store|root)\//,
  /\/src\/create-gateway\.ts$/,
  /\/src\/config\/(config|security-config|sink-config)\.ts$/,
]

/**
 * Everything `comfy-audit --help` may load: commander, the command registrations and the few small modules
 * their option lists name (session statuses, roles, time syntax). Anything else is work a help text does not need.
 */
const HELP_MODULES = [
  /\/node_modules\/commander\//,
  /\/src\/cli\/(main|open-store|output)\.ts$/,
  /\/src\/cli\/commands\/[a-z-]+\.ts$/,
  /\/src\/audit\/(types|report-error|json|json-spellings|json-stringify|json-value)\.ts$/,
  /\/src\/config\/(duration|roles)\.ts$/,
]

/** What `sessions` must not load besides: the gateway's parts, sinks, the ledger, the analyses. */
const NOT_FOR_SESSIONS = [
  /\/node_modules\/(pg|pg-[a-z-]+|ws)\//,
  /\/src\/(gateway|sim|sinks|capture|identity|metrics|demo|ledger|provenance)\//,
  /\/src\/query\/analysis\//,
  /\/src\/create-gateway\.ts$/,
  /\/src\/root\/presets\.ts$/,
]

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ca-cli-start-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Every module a child resolves: running `script`, or with `cli`, `src/cli/main.ts` with those arguments. */
async function modulesLoadedBy(script: string | { cli: string[] }): Promise<string[]> {
  const log = join(dir, `modules-${Math.random().toString(36).slice(2)}.txt`)
  const program =
    typeof script === 'string' ? ['--input-type=module', '-e', script] : ['src/cli/main.ts', ...script.cli]
  await run(
    process.execPath,
    ['--import', 'tsx', '--import', './test/cli/register-module-log.mjs', ...program],
    { cwd: ROOT, env: { ...process.env, COMFY_AUDIT_MODULE_LOG: log, COMFY_AUDIT_CONFIG: '' } },
  )
  return [...new Set((await readFile(log, 'utf8')).split('\n').filter(Boolean))]
}

/** The modules of the program itself (node: built-ins and the TypeScript loader left out). */
function programModules(modules: readonly string[]): string[] {
  return modules.filter(
    (m) => m.startsWith('file:') && !/\/node_modules\/(tsx|esbuild|get-tsconfig)\//.test(m),
  )
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

  it('`comfy-audit --help` loads commander and the command registrations, nothing else', async () => {
    const modules = programModules(await modulesLoadedBy({ cli: ['--help'] }))
    expect(modules.some((m) => m.endsWith('/src/cli/commands/ledger-commands.ts'))).toBe(true)
    expect(modules.filter((m) => !HELP_MODULES.some((re) => re.test(m)))).toEqual([])
  }, 60_000)

  it('`comfy-audit sessions` loads its store, not the gateway, sinks, ledger or analyses', async () => {
    const modules = programModules(
      await modulesLoadedBy({ cli: ['sessions', '--store', 'sqlite::memory:', '--json'] }),
    )
    expect(modules.some((m) => /\/src\/store\/sqlite\/sqlite-dialect\.ts$/.test(m))).toBe(true)
    expect(modules.filter((m) => NOT_FOR_SESSIONS.some((re) => re.test(m)))).toEqual([])
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

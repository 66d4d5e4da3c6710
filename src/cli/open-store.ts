import { existsSync } from 'node:fs'
import { userInfo } from 'node:os'
import type { Config } from '../config/config.js'
import type { StoreDialectOptions } from '../root/store-dialects.js'
import type { StoreDialect } from '../store/store.js'
import type { RuntimeStore } from '../store/runtime-store.js'

/** An error the CLI prints as one line, without a stack. */
export class CliError extends Error {
  override readonly name = 'CliError'
}

/** Options every store-reading command takes. */
export interface CliStoreOptions {
  data?: string
  store?: string
  config?: string
}

/**
 * Builds the dialect a store URL names: `sqlite` (in the data dir), `sqlite:/path`, `postgres://…`. The root's
 * registry opens it; this only words its refusals for the CLI's flags.
 */
async function dialectFor(
  storeUrl: string,
  dataDir: string,
  options: StoreDialectOptions = {},
): Promise<StoreDialect> {
  // Imported here, not at the top: registering the commands (and `--help`) must not load the schema.
  const { parseStoreUrl } = await import('../config/config.js')
  const location = parseStoreUrl(storeUrl, dataDir)
  if (!location.ok) throw new CliError(`store: ${location.reason}`)
  const { openStoreDialect, StoreNotFoundError } = await import('../root/store-dialects.js')
  try {
    return await openStoreDialect(location.value, options)
  } catch (error) {
    if (!(error instanceof StoreNotFoundError)) throw error
    throw new CliError(
      storeUrl !== 'sqlite' || existsSync(dataDir)
        ? `no audit store at ${error.path} (check --data / --store; the gateway creates it at first start)`
        : `data dir not found: ${dataDir} (check --data; the gateway creates it at first start)`,
    )
  }
}

/**
 * Loads the config for a CLI command (file, environment, flags), throwing a CliError listing every problem.
 * The schema is imported here, not at the top: registering the commands (and `--help`) must not load it.
 */
export async function cliConfig(
  opts: CliStoreOptions & Record<string, unknown>,
  flags: Record<string, unknown> = {},
): Promise<Readonly<Config>> {
  const { loadConfig } = await import('../config/config.js')
  const r = loadConfig({ file: opts.config, flags: { data: opts.data, 'store.url': opts.store, ...flags } })
  if (!r.ok) throw new CliError(`configuration problems:\n  ${r.problems.join('\n  ')}`)
  return r.value
}

/**
 * Opens the store for a command that reads it directly. CLI commands act as `local:<os user>`.
 * A missing SQLite store is an error unless `create` is set (only commands that set up a new data dir, such
 * as `users add`, create one).
 */
export async function openCliStore(
  opts: CliStoreOptions & Record<string, unknown>,
  options: { create?: boolean } = {},
): Promise<RuntimeStore> {
  const config = await cliConfig(opts)
  const dialect = await dialectFor(config.store.url, config.data, { create: options.create ?? false })
  const { createRuntimeStore } = await import('../store/runtime-store.js')
  const store = createRuntimeStore(dialect, { origin: config.origin ?? 'comfy-audit' })
  await store.init()
  return store
}

/** The identity CLI commands are recorded under. */
export function cliUser(): string {
  try {
    return `local:${userInfo().username}`
  } catch {
    return 'local:unknown'
  }
}

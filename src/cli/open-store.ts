import { existsSync, mkdirSync } from 'node:fs'
import { userInfo } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import type { Config } from '../config/config.js'
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

/** Builds the dialect a store URL names: `sqlite` (in the data dir), `sqlite:/path`, `postgres://…`. */
export async function dialectFor(
  storeUrl: string,
  dataDir: string,
  /** `worker` runs SQLite on a worker thread (the gateway: commits must not block proxying). */
  options: {
    sqliteThread?: 'main' | 'worker'
    busyTimeoutMillis?: number
    /**
     * false: the SQLite file must already exist (read-only commands must not leave an empty store, and
     * directories, behind a mistyped `--data`). Default true.
     */
    create?: boolean
  } = {},
): Promise<StoreDialect> {
  if (storeUrl === 'sqlite' || storeUrl.startsWith('sqlite:')) {
    const rest = storeUrl === 'sqlite' ? '' : storeUrl.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '')
    const path =
      rest === ''
        ? join(dataDir, 'audit.sqlite')
        : rest === ':memory:'
          ? ':memory:'
          : isAbsolute(rest)
            ? rest
            : resolve(rest)
    if (path !== ':memory:' && options.create === false && !existsSync(path)) {
      throw new CliError(
        rest !== '' || existsSync(dataDir)
          ? `no audit store at ${path} (check --data / --store; the gateway creates it at first start)`
          : `data dir not found: ${dataDir} (check --data; the gateway creates it at first start)`,
      )
    }
    if (path !== ':memory:') mkdirSync(resolve(path, '..'), { recursive: true })
    const { createSqliteDialect } = await import('../store/sqlite/sqlite-dialect.js')
    return createSqliteDialect({
      path,
      thread: options.sqliteThread ?? 'main',
      ...(options.busyTimeoutMillis !== undefined ? { busyTimeoutMillis: options.busyTimeoutMillis } : {}),
    })
  }
  if (storeUrl.startsWith('postgres://') || storeUrl.startsWith('postgresql://')) {
    const { createPostgresDialect } = await import('../store/postgres/postgres-dialect.js')
    return createPostgresDialect({ url: storeUrl, create: options.create !== false })
  }
  throw new CliError(
    `store: unknown store URL ${JSON.stringify(storeUrl)} (expected sqlite, sqlite:/path or postgres://…)`,
  )
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

/**
 * Which store dialect a configured location opens. Apart from the registries in presets.ts, so that a CLI
 * command reading the store loads only this (and its dialect), not the sinks and publishers beside it.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import type { StoreLocation } from '../config/config.js'
import type { StoreDialect } from '../store/store.js'

/** Options of {@link openStoreDialect}. */
export interface StoreDialectOptions {
  /** `worker` runs SQLite on a worker thread (the gateway: commits must not block proxying); default `main`. */
  readonly sqliteThread?: 'main' | 'worker'
  /** SQLite: how long a commit waits for another process's lock, ms (default: the dialect's). */
  readonly busyTimeoutMillis?: number
  /**
   * false: the store must already exist (read-only commands must not leave an empty store, and directories,
   * behind a mistyped path). Default true.
   */
  readonly create?: boolean
}

/**
 * Thrown by {@link openStoreDialect} with `create: false` when the SQLite file does not exist. Callers word it
 * for their users (the CLI names its flags); PostgreSQL reports a missing store at `init()` instead.
 */
export class StoreNotFoundError extends Error {
  override readonly name = 'StoreNotFoundError'
  constructor(readonly path: string) {
    super(`no audit store at ${path}`)
  }
}

/**
 * The dialect of a store location (config `store.location`, parsed from `store.url`).
 * @example
 * const store = createRuntimeStore(await openStoreDialect(config.store.location), { origin })
 */
export async function openStoreDialect(
  location: StoreLocation,
  options: StoreDialectOptions = {},
): Promise<StoreDialect> {
  switch (location.dialect) {
    case 'sqlite': {
      const { path } = location
      if (path !== ':memory:' && options.create === false && !existsSync(path)) {
        throw new StoreNotFoundError(path)
      }
      if (path !== ':memory:') mkdirSync(resolve(path, '..'), { recursive: true })
      const { createSqliteDialect } = await import('../store/sqlite/sqlite-dialect.js')
      return createSqliteDialect({
        path,
        thread: options.sqliteThread ?? 'main',
        ...(options.busyTimeoutMillis !== undefined ? { busyTimeoutMillis: options.busyTimeoutMillis } : {}),
      })
    }
    case 'postgres': {
      const { createPostgresDialect } = await import('../store/postgres/postgres-dialect.js')
      return createPostgresDialect({ url: location.url, create: options.create !== false })
    }
  }
}

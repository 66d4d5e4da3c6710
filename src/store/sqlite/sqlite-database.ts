/**
 * The part of better-sqlite3 the SQLite driver calls, typed by that subset, and the wrapper that sends every
 * string through stored-text.ts. Kept apart so the driver reads as SQL plans, not library plumbing.
 */
import type { SqlRow } from '../sql-common.js'
import { decodeStoredRow, decodeStoredRows, encodeStoredParams } from '../stored-text.js'

/** The subset of a better-sqlite3 statement this driver calls. */
export interface SqliteStatement {
  /** True when the statement returns rows. */
  readonly reader: boolean
  run(...params: unknown[]): unknown
  get(...params: unknown[]): unknown
  all(...params: unknown[]): unknown[]
}

/** The subset of a better-sqlite3 database this driver calls. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  exec(sql: string): unknown
  pragma(source: string, options?: { simple?: boolean }): unknown
  transaction<A extends unknown[], R>(fn: (...args: A) => R): { (...args: A): R; immediate(...args: A): R }
  close(): unknown
}

type SqliteConstructor = new (path: string) => SqliteDatabase

/** The database with every string parameter and result column going through stored-text.ts. */
export function textSafe(db: SqliteDatabase): SqliteDatabase {
  return {
    prepare: (sql) => textSafeStatement(db.prepare(sql)),
    exec: (sql) => db.exec(sql),
    pragma: (source, options) => db.pragma(source, options),
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  }
}

function textSafeStatement(statement: SqliteStatement): SqliteStatement {
  return {
    reader: statement.reader,
    run: (...params) => statement.run(...encodeStoredParams(params)),
    get: (...params) => decodeStoredRow(statement.get(...encodeStoredParams(params)) as SqlRow | undefined),
    all: (...params) => decodeStoredRows(statement.all(...encodeStoredParams(params)) as SqlRow[]),
  }
}

/** better-sqlite3's Database class. */
export async function loadBetterSqlite3(): Promise<SqliteConstructor> {
  // Loaded on first use so that importing the dialect costs nothing until a store opens.
  const mod = await import('better-sqlite3')
  const Database: SqliteConstructor = mod.default
  return Database
}

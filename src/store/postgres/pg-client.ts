// The node-postgres surface this driver uses, wrapped so stored text round-trips safely.
import { decodeStoredRows, encodeStoredParams } from '../stored-text.js'
import type { SqlRow } from '../sql-common.js'

/** The subset of a node-postgres result this driver reads. */
export interface PgResult {
  readonly rows: SqlRow[]
  /** Rows an UPDATE changed. */
  readonly rowCount?: number | null
}

/** The subset of a node-postgres client this driver calls. */
export interface PgClient {
  query(text: string, values?: readonly unknown[]): Promise<PgResult>
  release(error?: Error | boolean): void
  on(event: 'error', listener: (error: Error) => void): unknown
  off(event: 'error', listener: (error: Error) => void): unknown
}

/** The subset of a node-postgres pool this driver calls. */
export interface PgPool {
  connect(): Promise<PgClient>
  query(text: string, values?: readonly unknown[]): Promise<PgResult>
  end(): Promise<void>
  on(event: 'error', listener: (error: Error) => void): unknown
}

export type PgPoolConstructor = new (config: {
  connectionString: string
  max?: number
  connectionTimeoutMillis?: number
}) => PgPool

export const MAX_PARAMS = 30_000

/** A driver or network error as one line (`pg` errors carry their message; AggregateErrors list theirs). */
export function errorText(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0)
    return error.errors.map((e: unknown) => errorText(e)).join('; ')
  if (error instanceof Error) return error.message.replace(/\s+/g, ' ').trim() || error.name
  return String(error)
}

/** The pool with every string parameter and result column of every query going through stored-text.ts. */
export function textSafePool(pool: PgPool): PgPool {
  return {
    connect: async () => textSafeClient(await pool.connect()),
    query: async (text, values) =>
      textSafeResult(await pool.query(text, values && encodeStoredParams(values))),
    end: () => pool.end(),
    on: (event, listener) => pool.on(event, listener),
  }
}

function textSafeClient(client: PgClient): PgClient {
  return {
    query: async (text, values) =>
      textSafeResult(await client.query(text, values && encodeStoredParams(values))),
    release: (error) => client.release(error),
    on: (event, listener) => client.on(event, listener),
    off: (event, listener) => client.off(event, listener),
  }
}

function textSafeResult(result: PgResult): PgResult {
  // Only `rows` is decoded; node-postgres answers a multi-statement text with an array, which we never send.
  decodeStoredRows(result.rows)
  return result
}

/** Rewrites the shared `?` placeholders to PostgreSQL's `$1, $2, …` (our SQL has no `?` literals). */
export function numbered(sql: string): string {
  let n = 0
  return sql.replace(/\?/g, () => `$${++n}`)
}

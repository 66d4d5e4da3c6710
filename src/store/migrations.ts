/**
 * Schema migrations: an ordered list per dialect, applied once each and recorded in `schema_migrations`.
 * A migration, once released, never changes; a schema change is a new migration.
 */

/** One schema step. */
export interface Migration {
  /** Position in the list, from 1, without gaps. */
  readonly version: number
  readonly name: string
  /** Statements run in order inside the migration transaction. */
  readonly statements: readonly string[]
}

/** What `migrate` did with one migration. */
export interface MigrationResult {
  readonly version: number
  readonly name: string
  readonly status: 'applied' | 'already-applied'
}

/** Outcome of a migration run: every step's result, and the error that stopped it, if any. */
export interface MigrationOutcome {
  readonly results: MigrationResult[]
  readonly error?: Error
}

/**
 * Splits migrations into those to apply, in order. Throws when the database holds a version this build
 * does not know (it was migrated by a newer comfy-audit; running older code against it could corrupt it).
 */
export function pendingMigrations(all: readonly Migration[], applied: ReadonlySet<number>): Migration[] {
  const newest = all.length === 0 ? 0 : Math.max(...all.map((m) => m.version))
  for (const version of applied) {
    if (version > newest) {
      throw new Error(
        `database schema version ${version} is newer than this comfy-audit knows (${newest}); upgrade comfy-audit`,
      )
    }
  }
  return all.filter((m) => !applied.has(m.version)).sort((a, b) => a.version - b.version)
}

/**
 * Roles a person can have (see src/identity/policy.ts for what each may do). Apart from the config schema so
 * that the CLI can name them when it registers its commands without loading the schema library.
 */
export const ROLES = ['admin', 'auditor', 'artist'] as const
export type Role = (typeof ROLES)[number]

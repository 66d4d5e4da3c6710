/**
 * Answers over the whole history: stats, usage, trends, regressions, correlate, diff and suggest, one module
 * each. Each reads sessions, node runs and rollups through the store's query API (any dialect) and returns
 * plain JSON-ready objects, so the CLI's `--json` and the HTTP API give the same answer.
 */
export * from './analysis-filter.js'
export * from './analysis-stats.js'
export * from './analysis-usage.js'
export * from './analysis-trends.js'
export * from './analysis-regressions.js'
export * from './analysis-correlate.js'
export * from './analysis-diff.js'
export * from './analysis-suggest.js'

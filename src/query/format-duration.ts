/** Human duration: `812 ms`, `4.2 s`, `3 min 12 s`. No imports: the dashboard bundles it as the CLI uses it. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-'
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const min = Math.floor(ms / 60_000)
  return `${min} min ${Math.round((ms - min * 60_000) / 1000)} s`
}

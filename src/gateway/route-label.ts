/** ComfyUI's routes by their first path segment(s): a small, fixed label set for metrics. */
const ROUTE_LABELS = new Set([
  '/prompt',
  '/queue',
  '/history',
  '/interrupt',
  '/free',
  '/view',
  '/view_metadata',
  '/upload',
  '/object_info',
  '/system_stats',
  '/models',
  '/embeddings',
  '/extensions',
  '/features',
  '/settings',
  '/userdata',
  '/users',
  '/internal',
  '/jobs',
  '/ws',
  '/i18n',
  '/workflow_templates',
  '/global_subgraphs',
  '/manager',
  '/_audit',
])

/** `/api/history/abc` → `/history`; unknown paths → `other` (so labels never carry ids). */
export function routeLabel(pathname: string): string {
  const parts = pathname.split('/').filter(Boolean)
  while (parts[0] === 'api') parts.shift()
  const first = parts.length ? `/${parts[0]}` : '/'
  if (first === '/') return '/'
  return ROUTE_LABELS.has(first) ? first : 'other'
}

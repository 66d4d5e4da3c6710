/** Calls to the audit API (same origin, the login cookie travels with them). */

/** An answer, or why there is none (HTTP status and the API's error text). */
export type ApiResult<T> = { ok: true; value: T } | { ok: false; status: number; reason: string }

/** GET (or POST a body to) an audit route and read its JSON. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<ApiResult<T>> {
  let res: Response
  try {
    res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' }, ...init })
  } catch (error) {
    return { ok: false, status: 0, reason: error instanceof Error ? error.message : String(error) }
  }
  if (res.status === 401) {
    // The login cookie expired: sign in again and come back here.
    window.location.assign(
      `/_audit/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`,
    )
    return { ok: false, status: 401, reason: 'signed out' }
  }
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return { ok: false, status: res.status, reason: `not JSON (HTTP ${res.status})` }
  }
  if (!res.ok) {
    const reason =
      typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string'
        ? (body as { error: string }).error
        : `HTTP ${res.status}`
    return { ok: false, status: res.status, reason }
  }
  return { ok: true, value: body as T }
}

/** A query string from parameters, leaving out empty ones. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v))
  const s = p.toString()
  return s ? `?${s}` : ''
}

/** A file ComfyUI serves through the gateway's `/view`. */
export function viewUrl(file: { filename: string; subfolder?: string; type?: string }): string {
  return `/view${query({ filename: file.filename, subfolder: file.subfolder ?? '', type: file.type ?? 'output' })}`
}

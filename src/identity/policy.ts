/**
 * What each role may do, as one pure function of the request and a few facts the caller looks up (who owns
 * the prompts a request names, which prompts run now, who made a file).
 *
 * - `admin`: everything, including `/free`, `/internal/*`, ComfyUI-Manager and other routes that install or
 *   run code, and every audit route.
 * - `auditor`: reads the audit API; no ComfyUI access at all.
 * - `artist`: uses ComfyUI; interrupts and deletes only their own prompts (a global interrupt becomes an
 *   interrupt of their running prompt, or is refused); clearing the queue or history is admin-only; reads only
 *   their own runs in the audit API; with `visibility: own` sees only their own prompts and outputs.
 *
 * Paths are matched as ComfyUI's router would see them (aiohttp registers every route with and without `/api`);
 * a path with dot segments, backslashes or NUL is refused for everyone, because the router or the file system
 * behind it may resolve it to something the policy did not look at.
 */
import type { JsonObject, JsonValue } from '../audit/types.js'
import type { Role } from '../config/security-config.js'

/** Paths only admins may use (prefixes: the path itself and everything below it). */
const ADMIN_ONLY_PATHS: readonly string[] = [
  '/free',
  '/internal',
  // ComfyUI-Manager (classic and v2 routes): installs, updates and removes code, restarts the server.
  '/manager',
  '/customnode',
  '/snapshot',
  '/externalmodel',
  '/comfyui_manager',
  '/v2/manager',
  '/v2/customnode',
  '/v2/snapshot',
  '/v2/externalmodel',
  '/v2/comfyui_manager',
  '/api/manager',
  // model downloaders of popular node packs
  '/model_manager',
  '/server_download',
]

/** Audit routes anyone may reach, signed in or not (probes and the login form). */
export const PUBLIC_AUDIT_PATHS: ReadonlySet<string> = new Set([
  '/_audit/login',
  '/_audit/logout',
  '/_audit/health',
  '/_audit/ready',
])

/** The request as the policy sees it. */
export interface PolicyRequest {
  readonly user: string
  readonly role: Role
  /** HTTP method, upper case (`GET` for a WebSocket upgrade). */
  readonly method: string
  /** Percent-decoded path, as the gateway routes it. */
  readonly path: string
  readonly query: URLSearchParams
  /** Parsed JSON body of POST /interrupt, /queue, /history (null: not JSON or not read). */
  readonly body?: JsonValue | null
}

/** What the caller looked up for {@link authorize}, as {@link factsNeeded} asked. */
export interface PolicyFacts {
  /** Owner of each prompt id the request names; null when nobody known submitted it. */
  readonly owners: ReadonlyMap<string, string | null>
  /** Prompts ComfyUI runs now, with their owners (for a global interrupt). */
  readonly running: readonly { readonly prompt_id: string; readonly user: string | null }[]
  /** Owner of the output file `/view` asks for, when known. */
  readonly fileOwner?: string | null
}

/** Settings of the policy. */
export interface PolicyOptions {
  /** `own`: artists see only their own prompts in /history, /queue, /api/jobs and /view. */
  readonly visibility: 'all' | 'own'
  /** Admin-only path prefixes added to {@link ADMIN_ONLY_PATHS}. */
  readonly adminOnlyPaths?: readonly string[]
}

/** The answer: allow (possibly with a filter or a narrowed audit query), deny, or forward a rewritten body. */
type Decision =
  | {
      readonly action: 'allow'
      /** `own`: the answer must be filtered to the person's own prompts (history, queue, jobs). */
      readonly filter?: 'own'
      /** Audit API: restrict the query to this person's runs. */
      readonly auditUser?: string
    }
  | { readonly action: 'deny'; readonly status: 400 | 403 | 404; readonly reason: string }
  | { readonly action: 'rewrite'; readonly body: JsonObject; readonly reason: string }

/** What {@link authorize} needs looked up before it can decide. */
interface FactsNeeded {
  readonly promptIds: readonly string[]
  readonly running: boolean
  /** The output file `/view` asks for (only under `visibility: own`). */
  readonly file?: { readonly filename: string; readonly subfolder: string; readonly type: string }
}

/** A request path as ComfyUI's router would see it, or why it is refused. */
export type Route =
  { kind: 'audit'; path: string } | { kind: 'comfy'; path: string } | { kind: 'bad'; reason: string }

const ALLOW: Decision = { action: 'allow' }

/** True for a relative file path that could leave its folder: `..` segments, absolute, backslashes, NUL. */
export function isUnsafeRelativePath(text: string): boolean {
  if (text.includes('\0') || text.includes('\\')) return true
  if (text.startsWith('/') || /^[A-Za-z]:/.test(text)) return true
  return text.split('/').some((seg) => seg === '..')
}

/** The route ComfyUI would see: `/api` prefix dropped, repeated slashes merged; dot segments are refused. */
export function normalizeRoute(path: string): Route {
  if (path.includes('\0') || path.includes('\\')) return { kind: 'bad', reason: 'invalid characters in path' }
  const merged = path.replace(/\/{2,}/g, '/')
  if (merged.split('/').some((seg) => seg === '..' || seg === '.')) {
    return { kind: 'bad', reason: 'dot segments in path' }
  }
  if (merged === '/_audit' || merged.startsWith('/_audit/')) return { kind: 'audit', path: merged }
  if (merged.startsWith('/api/') && !merged.startsWith('/api/manager')) {
    // The `/api` copy of each route is stripped once; ComfyUI declares the jobs routes as `/api/jobs`, so
    // `/api/api/jobs` is the jobs route too. Any further `/api/` is stripped as well: a route the policy then
    // restricts is at least as strict as the 404 ComfyUI might give.
    let p = merged.slice(4)
    while (p.startsWith('/api/') && !p.startsWith('/api/manager')) p = p.slice(4)
    return { kind: 'comfy', path: p }
  }
  return { kind: 'comfy', path: merged }
}

function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : prefix + '/')
}

function stringList(value: JsonValue | undefined): string[] | null {
  if (!Array.isArray(value)) return null
  return value.every((v) => typeof v === 'string') ? (value as string[]) : null
}

function bodyObject(body: JsonValue | null | undefined): JsonObject | null {
  return body !== null && body !== undefined && typeof body === 'object' && !Array.isArray(body)
    ? (body as JsonObject)
    : null
}

/** The analysis routes (stats, usage, trends, regressions, correlate, diff, suggest). */
const ANALYSIS_PATHS: ReadonlySet<string> = new Set(
  ['stats', 'usage', 'trends', 'regressions', 'correlate', 'diff', 'suggest'].map((c) => `/_audit/api/${c}`),
)

/**
 * The file `/view` serves, read as ComfyUI reads it: an annotated name (`a.png [temp]`) chooses the folder
 * itself and overrides `type` (folder_paths.annotated_filepath); otherwise `type` defaults to `output`.
 * Query values are the first of each name, as aiohttp's `query[...]` gives them.
 */
function viewedFile(query: URLSearchParams): { filename: string; subfolder: string; type: string } {
  let filename = query.get('filename') ?? ''
  let type = query.get('type') ?? 'output'
  const annotated = / \[(output|input|temp)\]$/.exec(filename)
  if (annotated) {
    filename = filename.slice(0, -annotated[0].length)
    type = annotated[1]!
  }
  return { filename, subfolder: query.get('subfolder') ?? '', type }
}

const SINGLE = /^\/(history|jobs)\/([^/]+)$/

/** What to look up before calling {@link authorize} for this request. */
export function factsNeeded(req: PolicyRequest, options: PolicyOptions): FactsNeeded {
  const none: FactsNeeded = { promptIds: [], running: false }
  if (req.role !== 'artist') return none
  const route = normalizeRoute(req.path)
  if (route.kind === 'bad') return none
  if (route.kind === 'audit') {
    const m = SESSION_ROUTE.exec(route.path)
    if (m) return { promptIds: [m[1]!], running: false }
    const session = req.query.get('session') ?? req.query.get('session_id')
    if (route.path === '/_audit/api/node-runs' && session) return { promptIds: [session], running: false }
    return none
  }
  const p = route.path
  const body = bodyObject(req.body)
  if (req.method === 'POST' && p === '/interrupt') {
    const id = body?.prompt_id
    return typeof id === 'string' ? { promptIds: [id], running: false } : { promptIds: [], running: true }
  }
  if (req.method === 'POST' && (p === '/queue' || p === '/history')) {
    return { promptIds: stringList(body?.delete) ?? [], running: false }
  }
  if (options.visibility === 'own' && req.method === 'GET') {
    const m = SINGLE.exec(p)
    if (m) return { promptIds: [m[2]!], running: false }
    const file = p === '/view' ? viewedFile(req.query) : null
    if (file !== null && file.type !== 'input') return { promptIds: [], running: false, file }
  }
  return none
}

/** One session's routes: its record, its evidence bundle, its integrity check. */
const SESSION_ROUTE = /^\/_audit\/api\/sessions\/([^/]+)(?:\/(?:evidence|integrity))?$/

/** Routes an artist may read narrowed to their own runs (the API filters by ?user=). */
const OWN_RUNS_PATHS: ReadonlySet<string> = new Set([
  '/_audit/api/sessions',
  '/_audit/api/runs',
  '/_audit/api/live',
])

function auditDecision(req: PolicyRequest, path: string, facts: PolicyFacts): Decision {
  if (PUBLIC_AUDIT_PATHS.has(path) || path === '/_audit/whoami') return ALLOW
  // The dashboard's files are the same for everyone signed in; what each page shows is checked per API route.
  if (
    (path === '/_audit/ui' || path.startsWith('/_audit/ui/')) &&
    (req.method === 'GET' || req.method === 'HEAD')
  )
    return ALLOW
  // Tracing posts an image but changes nothing: it is a read.
  const reading = req.method === 'GET' || req.method === 'HEAD' || path === '/_audit/api/trace'
  if (req.role === 'admin') return ALLOW
  if (path === '/_audit/api/people' || path.startsWith('/_audit/api/people/'))
    return { action: 'deny', status: 403, reason: 'only admins manage people' }
  if (!reading) return { action: 'deny', status: 403, reason: 'only admins change the audit trail' }
  if (req.role === 'auditor') return ALLOW
  // artist: their own runs only
  if (OWN_RUNS_PATHS.has(path)) {
    const asked = req.query.get('user')
    if (asked !== null && asked !== req.user) {
      return { action: 'deny', status: 403, reason: 'artists read only their own runs' }
    }
    return { action: 'allow', auditUser: req.user }
  }
  if (ANALYSIS_PATHS.has(path)) {
    // Every aggregate an artist asks for is narrowed to their own runs (the API filters by ?user=).
    const asked = req.query.get('user')
    if (asked !== null && asked !== req.user) {
      return { action: 'deny', status: 403, reason: 'artists read only their own runs' }
    }
    return { action: 'allow', auditUser: req.user }
  }
  const single = SESSION_ROUTE.exec(path)
  if (single) {
    return facts.owners.get(single[1]!) === req.user
      ? ALLOW
      : { action: 'deny', status: 404, reason: 'no such session among your runs' }
  }
  if (path === '/_audit/api/node-runs') {
    const session = req.query.get('session') ?? req.query.get('session_id')
    if (session && facts.owners.get(session) === req.user) return ALLOW
    return {
      action: 'deny',
      status: 403,
      reason: 'artists read node runs of their own sessions only (give ?session=)',
    }
  }
  return { action: 'deny', status: 403, reason: 'this audit route is for admins and auditors' }
}

/**
 * Decides one request. `facts` must hold what {@link factsNeeded} asked for; a prompt id missing from
 * `facts.owners` counts as not the person's own.
 *
 * @example
 * const need = factsNeeded(req, opts)
 * const decision = authorize(req, await lookUp(need), opts)
 * if (decision.action === 'deny') return reply(decision.status, decision.reason)
 */
export function authorize(req: PolicyRequest, facts: PolicyFacts, options: PolicyOptions): Decision {
  const route = normalizeRoute(req.path)
  if (route.kind === 'bad') return { action: 'deny', status: 400, reason: route.reason }
  if (route.kind === 'audit') return auditDecision(req, route.path, facts)
  const p = route.path
  // File names in the query or the path must stay inside their folder, whoever asks.
  if (p === '/view' || p === '/view_metadata' || p.startsWith('/view_metadata/')) {
    for (const key of ['filename', 'subfolder']) {
      const v = req.query.get(key)
      if (v !== null && isUnsafeRelativePath(v)) {
        return { action: 'deny', status: 400, reason: `unsafe ${key}` }
      }
    }
  }
  if (under(p, '/userdata') || under(p, '/v2/userdata')) {
    const rest = p.replace(/^\/(v2\/)?userdata\/?/, '')
    if (rest && isUnsafeRelativePath(rest))
      return { action: 'deny', status: 400, reason: 'unsafe user data path' }
    const dir = req.query.get('dir') ?? req.query.get('path')
    if (dir !== null && isUnsafeRelativePath(dir))
      return { action: 'deny', status: 400, reason: 'unsafe user data path' }
  }
  if (req.role === 'admin') return ALLOW
  if (req.role === 'auditor') {
    return {
      action: 'deny',
      status: 403,
      reason: 'auditors read the audit trail only; ComfyUI is for artists and admins',
    }
  }
  // artist
  const adminOnly = [...ADMIN_ONLY_PATHS, ...(options.adminOnlyPaths ?? [])]
  if (adminOnly.some((prefix) => under(p, prefix) || under(req.path, prefix))) {
    return { action: 'deny', status: 403, reason: `${p} is for admins only` }
  }
  if (req.method === 'POST' && p === '/users') {
    return { action: 'deny', status: 403, reason: 'only admins create ComfyUI users' }
  }
  const body = bodyObject(req.body)
  if (req.method === 'POST' && p === '/interrupt') {
    const id = body?.prompt_id
    if (typeof id === 'string') {
      return facts.owners.get(id) === req.user
        ? ALLOW
        : { action: 'deny', status: 403, reason: 'you may interrupt only your own prompts' }
    }
    const mine = facts.running.find((r) => r.user === req.user)
    if (mine) {
      return {
        action: 'rewrite',
        body: { ...(body ?? {}), prompt_id: mine.prompt_id },
        reason: 'a global interrupt from an artist interrupts only their running prompt',
      }
    }
    return {
      action: 'deny',
      status: 403,
      reason: 'none of your prompts is running; a global interrupt is for admins',
    }
  }
  if (req.method === 'POST' && (p === '/queue' || p === '/history')) {
    if (body && body.clear !== undefined && body.clear !== false) {
      return { action: 'deny', status: 403, reason: `clearing the ${p.slice(1)} is for admins only` }
    }
    if (body && body.delete !== undefined) {
      const ids = stringList(body.delete)
      if (ids === null) return { action: 'deny', status: 400, reason: 'delete must be a list of prompt ids' }
      const foreign = ids.filter((id) => facts.owners.get(id) !== req.user)
      if (foreign.length > 0) {
        return {
          action: 'deny',
          status: 403,
          reason: `you may delete only your own prompts (not ${foreign.join(', ')})`,
        }
      }
    }
    return ALLOW
  }
  if (options.visibility === 'own' && (req.method === 'GET' || req.method === 'HEAD')) {
    const single = SINGLE.exec(p)
    if (single) {
      return facts.owners.get(single[2]!) === req.user
        ? ALLOW
        : { action: 'deny', status: 404, reason: 'no such prompt among yours' }
    }
    if (p === '/history' || p === '/queue' || p === '/jobs') return { action: 'allow', filter: 'own' }
    const file = p === '/view' ? viewedFile(req.query) : null
    // Inputs are shared (every artist's LoadImage lists them); outputs and temp previews are someone's.
    if (file !== null && file.type !== 'input') {
      return facts.fileOwner === req.user
        ? ALLOW
        : { action: 'deny', status: 404, reason: 'no such output among yours' }
    }
  }
  return ALLOW
}

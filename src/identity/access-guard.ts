/**
 * The gateway's admission control: for every request and WebSocket upgrade, before anything reaches ComfyUI,
 * it checks Host (DNS rebinding) and Origin (CSRF), the body size, authenticates the sender, applies the role
 * policy (deny, rewrite a global interrupt, narrow what an artist sees), limits `POST /prompt` per person,
 * refuses path traversal through uploads, and removes every credential from the request.
 *
 * Why the gateway checks Origin and Host itself: it rewrites both for ComfyUI, so ComfyUI's own origin check
 * no longer protects anyone.
 */
import { BodyTooLarge, pathOf, readBody } from '../gateway/http-util.js'
import { hostname } from 'node:os'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { parseJson, stringifyJson } from '../audit/json.js'
import { silentLogger, type Logger } from '../audit/report-error.js'
import type { JsonObject, JsonValue, Submitter } from '../audit/types.js'
import { parseStrictJson } from '../gateway/strict-json.js'
import { parseMultipart } from '../comfyui/multipart.js'
import type { AuthConfig, LimitsConfig } from '../config/security-config.js'
import { namespacedClientId, noClientId } from '../gateway/client-ids.js'
import type { ClientViewRoute } from '../gateway/client-view.js'
import type { Admission, RequestGuard } from '../gateway/request-guard.js'
import { addressBytes } from './address-match.js'
import type { Refusal } from './refusal-log.js'
import { toSubmitter, type Authenticator, type Identity } from './authenticator.js'
import { stripCredentialHeaders, withoutTokenParam } from './credentials.js'
import {
  authorize,
  factsNeeded,
  isUnsafeRelativePath,
  normalizeRoute,
  PUBLIC_AUDIT_PATHS,
  type PolicyFacts,
  type PolicyRequest,
} from './policy.js'

/** Options of {@link createAccessGuard}. */
export interface AccessGuardOptions {
  readonly authenticator: Authenticator
  readonly auth: AuthConfig
  readonly limits: LimitsConfig
  /** ComfyUI runs with `--multi-user`: send `comfy-user: <person>` (client-supplied values are always removed). */
  readonly multiUser?: boolean
  /** The host the gateway listens on (its name is an allowed `Host`). */
  readonly listenHost: string
  /** ComfyUI's base URL: the guard reads `/queue` to see who runs what. */
  readonly upstreamUrl: string
  /** Who submitted a prompt, as recorded (the store's session submitter); null when unknown. */
  readonly promptOwner: (promptId: string) => Promise<string | null>
  /** Epoch ms clock (rate limit). */
  readonly now?: () => number
  readonly logger?: Logger
  /**
   * Audit paths that check their own credentials (e.g. `/_audit/metrics` with `metrics.token`): admitted
   * without a person, like the login page and the health probes.
   */
  readonly publicPaths?: readonly string[]
  /** Timeout of the guard's own reads from ComfyUI, ms (default 5000). */
  readonly upstreamTimeoutMillis?: number
  /**
   * Told of every refused request and upgrade (see `createRefusalLog`, which records them rate-limited).
   * When given, the guard does not log refusals itself: a flood would fill the log as much as the store.
   */
  readonly onRefused?: (refusal: Refusal) => void
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const POLICY_BODY_ROUTES = new Set(['/interrupt', '/queue', '/history'])
const UPLOAD_ROUTES = new Set(['/upload/image', '/upload/mask'])
const MAX_POLICY_BODY_BYTES = 1 << 20
const OUTPUT_INDEX_MIN_AGE_MS = 250

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function hostnameOf(hostHeader: string): string | null {
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase().replace(/^\[|\]$/g, '')
  } catch {
    return null
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: JsonObject,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  })
  res.end(JSON.stringify(body))
}

function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  const text = JSON.stringify({ error: reason })
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 429 ? 'Too Many Requests' : 'Bad Request'}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  )
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v)
}

/** The client id in a ComfyUI queue or history item (`[number, id, prompt, extra_data, outputs]`). */
function itemClientId(item: JsonValue | undefined): string | null {
  if (!Array.isArray(item)) return null
  const extra = item[3]
  return isObject(extra) && typeof extra.client_id === 'string' ? extra.client_id : null
}

/** Builds the guard the gateway runs before everything else (see the module comment). */
/** Who the guard admitted to an audit route (the audit API records every read with the reader). */
const admittedAs = new WeakMap<IncomingMessage, Submitter>()

/** The person the guard admitted `req` as, for `/_audit/` routes; undefined when no guard ran. */
export function auditReader(req: IncomingMessage): Submitter | undefined {
  return admittedAs.get(req)
}

export function createAccessGuard(options: AccessGuardOptions): RequestGuard {
  const { auth, limits, authenticator } = options
  const now = options.now ?? Date.now
  const logger = options.logger ?? silentLogger
  const upstream = options.upstreamUrl.replace(/\/+$/, '')
  const timeoutMillis = options.upstreamTimeoutMillis ?? 5000
  const policyOptions = { visibility: auth.visibility, adminOnlyPaths: auth.adminOnlyPaths }
  const allowedHostNames = new Set(
    [options.listenHost, 'localhost', hostname(), ...auth.allowedHosts]
      .map((h) => hostnameOf(h) ?? h.toLowerCase())
      .filter((h) => h !== ''),
  )
  const allowedOrigins = new Set(auth.allowedOrigins.map((o) => new URL(o).origin))
  const publicPaths = new Set(options.publicPaths ?? [])
  const buckets = new Map<string, { tokens: number; at: number }>()

  const ownsClientId = (clientId: string | null, user: string): boolean =>
    clientId !== null && (clientId.startsWith(namespacedClientId(user, '')) || clientId === noClientId(user))

  /** A DNS name that is not ours is a rebinding attempt; IP literals cannot be rebound. */
  const hostAllowed = (req: IncomingMessage): boolean => {
    const h = header(req, 'host')
    if (h === undefined) return true
    const name = hostnameOf(h)
    if (name === null) return false
    return addressBytes(name) !== null || allowedHostNames.has(name) || name.endsWith('.localhost')
  }

  /** Browsers send Origin (and Sec-Fetch-Site) on cross-site requests; API clients send neither. */
  const originAllowed = (req: IncomingMessage): boolean => {
    const origin = header(req, 'origin')
    if (origin === undefined) {
      const site = header(req, 'sec-fetch-site')
      return site === undefined || site === 'same-origin' || site === 'none'
    }
    if (allowedOrigins.has(origin)) return true
    const h = header(req, 'host')
    try {
      return h !== undefined && new URL(origin).host.toLowerCase() === h.toLowerCase()
    } catch {
      return false
    }
  }

  const takePromptToken = (user: string): boolean => {
    if (limits.promptsPerMinute <= 0) return true
    const t = now()
    const b = buckets.get(user) ?? { tokens: limits.promptBurst, at: t }
    b.tokens = Math.min(limits.promptBurst, b.tokens + ((t - b.at) / 60_000) * limits.promptsPerMinute)
    b.at = t
    buckets.set(user, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  const upstreamQueue = async (): Promise<{ running: JsonValue[]; pending: JsonValue[] }> => {
    try {
      const res = await fetch(`${upstream}/queue`, { signal: AbortSignal.timeout(timeoutMillis) })
      if (!res.ok) return { running: [], pending: [] }
      const parsed = parseJson(Buffer.from(await res.arrayBuffer()))
      if (!parsed.ok || !isObject(parsed.value)) return { running: [], pending: [] }
      const q = parsed.value
      return {
        running: Array.isArray(q.queue_running) ? q.queue_running : [],
        pending: Array.isArray(q.queue_pending) ? q.queue_pending : [],
      }
    } catch {
      return { running: [], pending: [] }
    }
  }

  /**
   * Which client made an output file, from ComfyUI's history (files are listed under the prompt that made
   * them, with its client id). The index is rebuilt on a miss, at most once per `OUTPUT_INDEX_MIN_AGE_MS`, so
   * a page full of thumbnails costs one history read.
   */
  let outputIndex = new Map<string, string[]>()
  let outputIndexAt = -Infinity
  let outputIndexing: Promise<void> | null = null
  const fileKey = (f: { filename: string; subfolder: string; type: string }): string =>
    `${f.type}\0${f.subfolder}\0${f.filename}`
  const rebuildOutputIndex = async (): Promise<void> => {
    const next = new Map<string, string[]>()
    try {
      const res = await fetch(`${upstream}/history`, { signal: AbortSignal.timeout(timeoutMillis) })
      const parsed = res.ok ? parseJson(Buffer.from(await res.arrayBuffer())) : null
      if (parsed?.ok && isObject(parsed.value)) {
        for (const entry of Object.values(parsed.value)) {
          if (!isObject(entry) || !isObject(entry.outputs)) continue
          const clientId = itemClientId(entry.prompt)
          if (clientId === null) continue
          for (const nodeOutput of Object.values(entry.outputs)) {
            if (!isObject(nodeOutput)) continue
            for (const list of Object.values(nodeOutput)) {
              if (!Array.isArray(list)) continue
              for (const f of list) {
                if (isObject(f) && typeof f.filename === 'string') {
                  const key = fileKey({
                    filename: f.filename,
                    subfolder: typeof f.subfolder === 'string' ? f.subfolder : '',
                    type: typeof f.type === 'string' ? f.type : 'output',
                  })
                  const ids = next.get(key)
                  if (ids === undefined) next.set(key, [clientId])
                  else if (!ids.includes(clientId)) ids.push(clientId)
                }
              }
            }
          }
        }
      }
    } catch {
      return
    }
    outputIndex = next
    outputIndexAt = now()
  }
  const outputClientIds = async (file: {
    filename: string
    subfolder: string
    type: string
  }): Promise<string[]> => {
    const key = fileKey(file)
    if (!outputIndex.has(key) && now() - outputIndexAt >= OUTPUT_INDEX_MIN_AGE_MS) {
      outputIndexing ??= rebuildOutputIndex().finally(() => {
        outputIndexing = null
      })
      await outputIndexing
    }
    return outputIndex.get(key) ?? []
  }

  const lookUpFacts = async (req: PolicyRequest, identity: Identity): Promise<PolicyFacts> => {
    const need = factsNeeded(req, policyOptions)
    const owners = new Map<string, string | null>()
    let running: PolicyFacts['running'] = []
    if (need.file) {
      // A cached re-run lists the same file under several prompts: each of their submitters may see it.
      const clientIds = await outputClientIds(need.file)
      const mine = clientIds.some((id) => ownsClientId(id, identity.user))
      return { owners, running, fileOwner: mine ? identity.user : null }
    }
    if (need.promptIds.length === 0 && !need.running) return { owners, running }
    const queue = await upstreamQueue()
    const queued = new Map<string, string | null>()
    for (const item of [...queue.running, ...queue.pending]) {
      if (Array.isArray(item) && typeof item[1] === 'string') queued.set(item[1], itemClientId(item))
    }
    for (const id of need.promptIds) {
      let owner = await options.promptOwner(id)
      // Not committed yet (capture writes in small group commits): ComfyUI's queue shows whose client sent it.
      if (owner === null && ownsClientId(queued.get(id) ?? null, identity.user)) owner = identity.user
      owners.set(id, owner)
    }
    if (need.running) {
      running = queue.running.flatMap((item) =>
        Array.isArray(item) && typeof item[1] === 'string'
          ? [
              {
                prompt_id: item[1],
                user: ownsClientId(itemClientId(item), identity.user) ? identity.user : null,
              },
            ]
          : [],
      )
    }
    return { owners, running }
  }

  const filterFor =
    (user: string) =>
    async (route: ClientViewRoute, body: Buffer): Promise<Buffer> => {
      const parsed = parseJson(body)
      if (!parsed.ok || !isObject(parsed.value)) return body
      const v = parsed.value
      if (route === 'history') {
        const out: JsonObject = {}
        for (const [id, entry] of Object.entries(v)) {
          if (isObject(entry) && ownsClientId(itemClientId(entry.prompt), user)) out[id] = entry
        }
        return Buffer.from(stringifyJson(out))
      }
      if (route === 'queue') {
        const mine = (list: JsonValue | undefined): JsonValue[] =>
          Array.isArray(list) ? list.filter((item) => ownsClientId(itemClientId(item), user)) : []
        return Buffer.from(
          stringifyJson({ ...v, queue_running: mine(v.queue_running), queue_pending: mine(v.queue_pending) }),
        )
      }
      if (route === 'jobs' && Array.isArray(v.jobs)) {
        const kept: JsonValue[] = []
        for (const job of v.jobs) {
          if (isObject(job) && typeof job.id === 'string' && (await options.promptOwner(job.id)) === user)
            kept.push(job)
        }
        const out: JsonObject = { ...v, jobs: kept }
        if (isObject(v.pagination)) out.pagination = { ...v.pagination, total: kept.length, has_more: false }
        return Buffer.from(stringifyJson(out))
      }
      return body
    }

  /** Removes every credential before the request goes anywhere near ComfyUI or a log. */
  const scrub = (req: IncomingMessage, identity: Identity | null): void => {
    req.rawHeaders = stripCredentialHeaders(req.rawHeaders, {
      cookieName: auth.cookieName,
      ...(auth.mode === 'trusted-header' ? { identityHeader: auth.trustedHeader } : {}),
      comfyUser: options.multiUser && identity ? identity.user : null,
    })
    const h = req.headers
    delete h.authorization
    delete h['proxy-authorization']
    delete h['comfy-user']
    if (auth.mode === 'trusted-header') delete h[auth.trustedHeader.toLowerCase()]
    if (typeof h.cookie === 'string') {
      const kept = stripCredentialHeaders(['Cookie', h.cookie], { cookieName: auth.cookieName })
      if (kept.length) h.cookie = kept[1]!
      else delete h.cookie
    }
    if (options.multiUser && identity) h['comfy-user'] = identity.user
    req.url = withoutTokenParam(req.url ?? '/')
  }

  const anonymous = (req: IncomingMessage): Submitter => ({
    user: 'anonymous',
    auth_method: 'none',
    client_address: req.socket.remoteAddress ?? null,
    user_agent: header(req, 'user-agent') ?? null,
    client_id: null,
  })

  const report = (
    req: IncomingMessage,
    transport: Refusal['transport'],
    status: number,
    reason: string,
    identity: Identity | null,
  ): void => {
    const refusal: Refusal = {
      status,
      reason,
      method: (req.method ?? 'GET').toUpperCase(),
      path: pathOf(withoutTokenParam(req.url ?? '/')),
      transport,
      user: identity?.user ?? null,
      role: identity?.role ?? null,
      client_address: req.socket.remoteAddress ?? null,
      user_agent: header(req, 'user-agent') ?? null,
    }
    if (options.onRefused) {
      try {
        options.onRefused(refusal)
      } catch (err) {
        logger.warn('access refusal not recorded', { error: String(err) })
      }
    } else logger.warn('access refused', { ...refusal })
  }

  const refuse = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    reason: string,
    identity: Identity | null = null,
  ): null => {
    report(req, 'http', status, reason, identity)
    sendJson(
      res,
      status,
      { error: reason },
      status === 401 ? { 'www-authenticate': 'Bearer realm="comfy-audit"' } : {},
    )
    return null
  }

  const admitRequest = async (req: IncomingMessage, res: ServerResponse): Promise<Admission | null> => {
    const method = (req.method ?? 'GET').toUpperCase()
    const path = pathOf(req.url)
    if (!hostAllowed(req)) return refuse(req, res, 403, 'Host not served by this gateway')
    const length = Number(header(req, 'content-length') ?? '0')
    if (Number.isFinite(length) && length > limits.maxBodyBytes) {
      res.setHeader('connection', 'close')
      return refuse(req, res, 413, `request body larger than ${limits.maxBodyBytes} bytes`)
    }
    const route = normalizeRoute(path)
    if (STATE_CHANGING.has(method) && !originAllowed(req))
      return refuse(req, res, 403, 'cross-site request refused')
    if (route.kind === 'audit' && (PUBLIC_AUDIT_PATHS.has(route.path) || publicPaths.has(route.path))) {
      return { submitter: anonymous(req) }
    }
    const who = await authenticator.identify(req)
    if (!who.ok) {
      const accept = header(req, 'accept') ?? ''
      if (who.status === 401 && (method === 'GET' || method === 'HEAD') && accept.includes('text/html')) {
        res.writeHead(303, {
          // A token in the URL is no credential here: it must not travel on into the login page or history.
          location: `/_audit/login?next=${encodeURIComponent(withoutTokenParam(req.url ?? '/'))}`,
          'cache-control': 'no-store',
        })
        res.end()
        return null
      }
      return refuse(req, res, who.status, who.reason)
    }
    const identity = who.identity
    const query = new URL(req.url ?? '/', 'http://gateway').searchParams
    let body: Buffer | undefined
    let parsedBody: JsonValue | null | undefined
    try {
      if (method === 'POST' && route.kind === 'comfy' && POLICY_BODY_ROUTES.has(route.path)) {
        body = await readBody(req, MAX_POLICY_BODY_BYTES)
        // One strict parse; what is forwarded is exactly these checked bytes (issue 9 class 2). An empty
        // body is ComfyUI's `{}` (the front end sends a bare POST /interrupt); anything else unparsable
        // is refused, never read as empty.
        if (body.length === 0) parsedBody = null
        else {
          const parsed = parseStrictJson(body, limits.maxJsonDepth)
          if (!parsed.ok) return refuse(req, res, 400, `body is not valid JSON: ${parsed.reason}`, identity)
          parsedBody = parsed.value
        }
      } else if (method === 'POST' && route.kind === 'comfy' && UPLOAD_ROUTES.has(route.path)) {
        body = await readBody(req, limits.maxBodyBytes)
        const form = parseMultipart(body)
        if (form.ok) {
          for (const part of form.parts) {
            const unsafe =
              (part.name === 'subfolder' && isUnsafeRelativePath(part.data.toString('utf8'))) ||
              (part.filename !== null && (isUnsafeRelativePath(part.filename) || part.filename.includes('/')))
            if (unsafe) return refuse(req, res, 400, 'unsafe upload path', identity)
          }
        }
      }
    } catch (error) {
      if (error instanceof BodyTooLarge) {
        res.setHeader('connection', 'close')
        return refuse(req, res, 413, error.message, identity)
      }
      throw error
    }
    const policyRequest: PolicyRequest = {
      user: identity.user,
      role: identity.role,
      method,
      path,
      query,
      ...(parsedBody !== undefined ? { body: parsedBody } : {}),
    }
    // Without --multi-user ComfyUI keeps one /userdata for everyone (workflows, settings): an artist would
    // read and overwrite the others' files. Admins keep access; artists need comfyui.multiUser (issue 9 class 3).
    if (
      !options.multiUser &&
      identity.role === 'artist' &&
      route.kind === 'comfy' &&
      /^\/(v2\/)?userdata(\/|$)/.test(route.path)
    ) {
      return refuse(
        req,
        res,
        403,
        'user data is shared between people unless ComfyUI runs with --multi-user; set comfyui.multiUser: true',
        identity,
      )
    }
    const decision = authorize(policyRequest, await lookUpFacts(policyRequest, identity), policyOptions)
    if (decision.action === 'deny') return refuse(req, res, decision.status, decision.reason, identity)
    if (decision.action === 'rewrite') {
      logger.info('request rewritten by policy', { user: identity.user, path, reason: decision.reason })
      body = Buffer.from(stringifyJson(decision.body))
    }
    if (
      route.kind === 'comfy' &&
      method === 'POST' &&
      route.path === '/prompt' &&
      !takePromptToken(identity.user)
    ) {
      return refuse(req, res, 429, 'too many prompts: slow down', identity)
    }
    if (decision.action === 'allow' && decision.auditUser !== undefined) {
      const url = new URL(req.url ?? '/', 'http://gateway')
      url.searchParams.set('user', decision.auditUser)
      req.url = url.pathname + url.search
    }
    if (route.kind !== 'audit') scrub(req, identity)
    else admittedAs.set(req, toSubmitter(identity))
    return {
      submitter: toSubmitter(identity),
      ...(body !== undefined ? { body } : {}),
      ...(decision.action === 'allow' && decision.filter === 'own'
        ? { filterAnswer: filterFor(identity.user) }
        : {}),
    }
  }

  const admitUpgrade = async (req: IncomingMessage, socket: Duplex): Promise<Admission | null> => {
    const path = pathOf(req.url)
    if (!hostAllowed(req)) {
      report(req, 'websocket', 403, 'Host not served by this gateway', null)
      refuseUpgrade(socket, 403, 'Host not served by this gateway')
      return null
    }
    if (!originAllowed(req)) {
      report(req, 'websocket', 403, 'cross-site WebSocket refused', null)
      refuseUpgrade(socket, 403, 'cross-site WebSocket refused')
      return null
    }
    const who = await authenticator.identify(req)
    if (!who.ok) {
      report(req, 'websocket', who.status, who.reason, null)
      refuseUpgrade(socket, who.status, who.reason)
      return null
    }
    const query = new URL(req.url ?? '/', 'http://gateway').searchParams
    const policyRequest: PolicyRequest = {
      user: who.identity.user,
      role: who.identity.role,
      method: 'GET',
      path,
      query,
    }
    const decision = authorize(policyRequest, { owners: new Map(), running: [] }, policyOptions)
    if (decision.action === 'deny') {
      report(req, 'websocket', decision.status, decision.reason, who.identity)
      refuseUpgrade(socket, decision.status, decision.reason)
      return null
    }
    scrub(req, who.identity)
    return { submitter: toSubmitter(who.identity) }
  }

  return { admitRequest, admitUpgrade }
}

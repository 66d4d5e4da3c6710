import type { IncomingMessage, ServerResponse } from 'node:http'
import { sendJson } from '../comfyui/send-json.js'
import { stringifyJson } from '../audit/json.js'
import { SESSION_STATUSES, type AuditEvent, type JsonValue, type SessionStatus } from '../audit/types.js'
import { parseTimeSpec } from '../config/duration.js'
import type { NodeRunFilter, SessionFilter } from '../store/store.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { BodyTooLarge, readBody } from '../gateway/http-util.js'
import { traceImage, traceSha256 } from '../provenance/trace.js'
import { ANALYSIS_COMMANDS, runAnalysis, type AnalysisCommand } from './analysis/analysis-request.js'
import { nodeRunExportRow, sessionExportRow } from './format.js'
import { buildEvidence, verifyEvidence } from '../ledger/evidence.js'
import { verifyLedger } from '../ledger/verify-ledger.js'
import { parseRunsQuery, queryRuns } from './runs-query.js'
import { serveLiveUpdates } from './live-updates.js'
import type { IntegrityReport, SessionIntegrity } from './dashboard-types.js'

const MAX_TRACE_BYTES = 256 * 1024 * 1024
/** The run table looks at this many of the newest sessions (after the user and status filters). */
const MAX_TABLE_SESSIONS = 20_000

/** What the audit API needs to know about the running gateway. */
export interface AuditApiOptions {
  store: Pick<
    RuntimeStore,
    | 'sessions'
    | 'session'
    | 'nodeRuns'
    | 'outputsBySha256'
    | 'rawEvents'
    | 'checkpoints'
    | 'origins'
    | 'derivedRows'
    | 'rollups'
    | 'workflowRollups'
    | 'usageRollups'
  >
  /**
   * Subscribes to committed events, for the dashboard's live updates (`/_audit/api/live`); without it that
   * route answers 404.
   */
  onCommitted?: (listener: (events: readonly AuditEvent[]) => void) => () => void
  /** Aborted when the gateway shuts down: open live-update streams end then. */
  signal?: AbortSignal
  /** Whether ComfyUI currently answers. */
  upstreamHealthy: () => boolean
  /** Whether the gateway is shutting down (ready turns false first, so orchestrators stop routing). */
  draining: () => boolean
  /** Extra health details (sinks, queue depth, …). */
  healthDetails?: () => Record<string, JsonValue>
  version?: string
  /** This gateway's ledger verifier key (C2SP format), served at `/_audit/api/key`. */
  verifierKey?: string
}

function send(res: ServerResponse, status: number, body: JsonValue): void {
  sendJson(res, status, stringifyJson(body, { strict: true }))
}

/** `since`/`until` query parameters in the one time syntax, as ISO strings. */
function timeRange(
  url: URL,
): { ok: true; value: { since?: string; until?: string } } | { ok: false; reason: string } {
  const value: { since?: string; until?: string } = {}
  for (const key of ['since', 'until'] as const) {
    const v = url.searchParams.get(key)
    if (v === null) continue
    const t = parseTimeSpec(v)
    if (!t.ok) return { ok: false, reason: `${key}: ${t.reason}` }
    value[key] = t.value.toISOString()
  }
  return { ok: true, value }
}

function badRequest(res: ServerResponse, message: string): true {
  send(res, 400, { error: message })
  return true
}

/**
 * Serves the gateway's own routes under `/_audit/`: health and readiness probes and the read API
 * (`/_audit/api/sessions`, `/_audit/api/sessions/{id}`, `/_audit/api/node-runs`) and the dashboard's routes
 * (`/_audit/api/runs`, `/_audit/api/live`, `/_audit/api/sessions/{id}/evidence`, `.../integrity`,
 * `/_audit/api/integrity`). Returns false for paths it does not serve, so the caller answers 404.
 */
export function createAuditApi(
  options: AuditApiOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const path = url.pathname
    if (path === '/_audit/api/trace' && req.method === 'POST') {
      // The image itself is the question: its SHA-256, or its PNG prompt chunk when it was re-encoded.
      let image: Buffer
      try {
        image = await readBody(req, MAX_TRACE_BYTES)
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) throw error
        send(res, 413, { error: `image larger than ${MAX_TRACE_BYTES} bytes` })
        return true
      }
      if (image.length === 0) return badRequest(res, 'POST the image bytes as the request body')
      const found = await traceImage(options.store, image)
      if (!found.ok) send(res, 404, { error: found.reason })
      else send(res, 200, found.value as unknown as JsonValue)
      return true
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      if (path.startsWith('/_audit/')) {
        send(res, 405, { error: `method ${req.method} not allowed on ${path}` })
        return true
      }
      return false
    }
    if (path === '/_audit/health') {
      send(res, 200, {
        status: 'ok',
        version: options.version ?? null,
        comfyui: options.upstreamHealthy() ? 'up' : 'down',
        draining: options.draining(),
        ...(options.healthDetails?.() ?? {}),
      })
      return true
    }
    if (path === '/_audit/ready') {
      const ready = !options.draining() && options.upstreamHealthy()
      send(res, ready ? 200 : 503, {
        ready,
        reason: options.draining()
          ? 'draining'
          : options.upstreamHealthy()
            ? null
            : 'ComfyUI does not answer',
      })
      return true
    }
    if (path === '/_audit/api/trace') {
      // A pasted hash: only the recorded outputs can answer (there is no PNG chunk to read).
      const sha256 = (url.searchParams.get('sha256') ?? '').trim().toLowerCase()
      if (!/^[0-9a-f]{64}$/.test(sha256))
        return badRequest(res, `sha256: expected 64 hex digits, got ${JSON.stringify(sha256)}`)
      const found = (await traceSha256(options.store, sha256)) ?? {
        ok: false as const,
        reason: `no recorded output has SHA-256 ${sha256}`,
      }
      if (!found.ok) send(res, 404, { error: found.reason })
      else send(res, 200, found.value as unknown as JsonValue)
      return true
    }
    if (path === '/_audit/api/key') {
      // The public key auditors verify checkpoints and evidence bundles with; the read itself is audited.
      if (!options.verifierKey) {
        send(res, 404, { error: 'no ledger key' })
        return true
      }
      send(res, 200, { verifier_key: options.verifierKey })
      return true
    }
    if (path === '/_audit/api/sessions') {
      const filter: { -readonly [K in keyof SessionFilter]: SessionFilter[K] } = {}
      const range = timeRange(url)
      if (!range.ok) return badRequest(res, range.reason)
      Object.assign(filter, range.value)
      const status = url.searchParams.get('status')
      if (status !== null) {
        const list = status.split(',')
        const unknown = list.find((s) => !(SESSION_STATUSES as readonly string[]).includes(s))
        if (unknown !== undefined) return badRequest(res, `status: unknown status ${JSON.stringify(unknown)}`)
        filter.status = list as SessionStatus[]
      }
      const user = url.searchParams.get('user')
      if (user !== null) filter.user = user
      // Number('') is 0 and Number('1e2') is 100: only plain digits are a count.
      const count = (name: string, fallback: number): number => {
        const text = url.searchParams.get(name)
        return text === null ? fallback : /^\d+$/.test(text) ? Number(text) : NaN
      }
      const limit = count('limit', 100)
      const offset = count('offset', 0)
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
        return badRequest(res, 'limit: expected 1..10000')
      if (!Number.isInteger(offset) || offset < 0) return badRequest(res, 'offset: expected an integer >= 0')
      filter.limit = limit
      filter.offset = offset
      const sessions = await options.store.sessions(filter)
      send(res, 200, { sessions: sessions.map(sessionExportRow) })
      return true
    }
    if (path === '/_audit/api/runs') {
      const q = parseRunsQuery(url.searchParams)
      if (!q.ok) return badRequest(res, q.reason)
      // `user` scopes what is counted at all (an artist's own runs); the rest filter and count in memory
      // over the newest sessions of the time range.
      const scope = url.searchParams.get('user')
      const sessions = await options.store.sessions({
        ...(scope !== null ? { user: scope } : {}),
        ...(q.value.since !== undefined ? { since: q.value.since } : {}),
        ...(q.value.until !== undefined ? { until: q.value.until } : {}),
        limit: MAX_TABLE_SESSIONS,
      })
      send(res, 200, queryRuns(sessions, q.value) as unknown as JsonValue)
      return true
    }
    if (path === '/_audit/api/live') {
      if (!options.onCommitted) return false
      await serveLiveUpdates(req, res, {
        subscribe: options.onCommitted,
        user: url.searchParams.get('user') ?? undefined,
        owner: async (id) => (await options.store.session(id))?.submitter?.user ?? null,
        ...(options.signal ? { signal: options.signal } : {}),
      })
      return true
    }
    if (path === '/_audit/api/integrity') {
      if (!options.verifierKey) {
        send(res, 404, { error: 'no ledger key' })
        return true
      }
      const report = await verifyLedger({ store: options.store, verifierKey: options.verifierKey })
      const origins = await Promise.all(
        report.origins.map(async (o) => ({
          ...o,
          latest_checkpoints: (await options.store.checkpoints(o.origin))
            .slice(-10)
            .reverse()
            .map((cp) => ({
              size: cp.size,
              root_hash: cp.root_hash,
              created_at: cp.created_at,
              note: cp.note,
            })),
        })),
      )
      const answer: IntegrityReport = {
        ok: report.ok,
        verified_at: new Date().toISOString(),
        origins,
        problems: report.problems.map((p) => ({ ...p })),
      }
      send(res, 200, answer as unknown as JsonValue)
      return true
    }
    const sub = /^\/_audit\/api\/sessions\/([^/]+)\/(evidence|integrity)$/.exec(path)
    if (sub) {
      const id = decodeURIComponent(sub[1]!)
      const origin = url.searchParams.get('origin') ?? undefined
      const session = await options.store.session(id, origin)
      if (!session) {
        send(res, 404, { error: `no session ${id}` })
        return true
      }
      const built = await buildEvidence({ store: options.store, sessionId: id, origin: session.origin })
      if (sub[2] === 'evidence') {
        if (!built.ok) send(res, 409, { error: built.reason })
        else {
          res.writeHead(200, {
            'content-type': 'application/json; charset=utf-8',
            'content-disposition': `attachment; filename="evidence-${id.replace(/[^A-Za-z0-9._-]/g, '_')}.json"`,
            'cache-control': 'no-store',
            'x-content-type-options': 'nosniff',
          })
          res.end(built.value)
        }
        return true
      }
      // "Verified now": the bundle is rebuilt from the stored log and checked like an auditor would check it.
      const verified =
        built.ok && options.verifierKey ? verifyEvidence(built.value, options.verifierKey) : undefined
      const answer: SessionIntegrity =
        built.ok && verified?.ok
          ? {
              state: 'verified',
              checkpoint_size: verified.value.treeSize,
              events: verified.value.events,
              verified_at: new Date().toISOString(),
              reason: null,
            }
          : {
              state: !built.ok && /no signed checkpoint covers/.test(built.reason) ? 'pending' : 'failed',
              checkpoint_size: null,
              events: null,
              verified_at: new Date().toISOString(),
              reason: !built.ok
                ? built.reason
                : verified && !verified.ok
                  ? verified.reason
                  : 'no ledger key to verify with',
            }
      send(res, 200, answer as unknown as JsonValue)
      return true
    }
    const one = /^\/_audit\/api\/sessions\/([^/]+)$/.exec(path)
    if (one) {
      const id = decodeURIComponent(one[1]!)
      const session = await options.store.session(id, url.searchParams.get('origin') ?? undefined)
      if (!session) {
        send(res, 404, { error: `no session ${id}` })
        return true
      }
      const runs = await options.store.nodeRuns({ sessionId: id, origin: session.origin })
      send(res, 200, {
        session: {
          ...sessionExportRow(session),
          prompt: session.prompt,
          workflow: session.workflow,
        },
        node_runs: runs.map(nodeRunExportRow),
      })
      return true
    }
    if (path === '/_audit/api/node-runs') {
      const filter: { -readonly [K in keyof NodeRunFilter]: NodeRunFilter[K] } = {}
      const nodeType = url.searchParams.get('node_type')
      if (nodeType !== null) filter.nodeType = nodeType
      const session = url.searchParams.get('session') ?? url.searchParams.get('session_id')
      if (session !== null) filter.sessionId = session
      const range = timeRange(url)
      if (!range.ok) return badRequest(res, range.reason)
      Object.assign(filter, range.value)
      const limitText = url.searchParams.get('limit')
      const limit = limitText === null ? 1000 : /^\d+$/.test(limitText) ? Number(limitText) : NaN
      if (!Number.isInteger(limit) || limit < 1 || limit > 100_000)
        return badRequest(res, `limit: expected 1..100000, got ${JSON.stringify(limitText)}`)
      filter.limit = limit
      const runs = await options.store.nodeRuns(filter)
      send(res, 200, { node_runs: runs.map(nodeRunExportRow) })
      return true
    }
    const analysis = /^\/_audit\/api\/([a-z]+)$/.exec(path)
    if (analysis && (ANALYSIS_COMMANDS as readonly string[]).includes(analysis[1]!)) {
      // The same parameters and answers as the CLI's analysis commands (`comfy-audit stats --json`, ...).
      const params: Record<string, string> = {}
      for (const [key, value] of url.searchParams) params[key] = value
      const result = await runAnalysis(options.store, analysis[1] as AnalysisCommand, params)
      if (!result.ok) send(res, result.status, { error: result.reason })
      else send(res, 200, result.value as unknown as JsonValue)
      return true
    }
    return false
  }
}

import type { IncomingMessage, ServerResponse } from 'node:http'
import { asJsonValue } from '../audit/json-value.js'
import type { AuditEvent, JsonValue } from '../audit/types.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { ANALYSIS_COMMANDS, runAnalysis, type AnalysisCommand } from './analysis/analysis-request.js'
import { send, type ApiCall, type ApiHandler } from './audit-api-http.js'
import { ledgerIntegrity, sessionEvidence, verifierKey } from './audit-api-integrity.js'
import { listNodeRuns, listRuns, listSessions, liveUpdates, oneSession } from './audit-api-records.js'
import { traceHash, traceUploadedImage } from './audit-api-trace.js'

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

const health: ApiHandler = async ({ res, options }) => {
  send(res, 200, {
    status: 'ok',
    version: options.version ?? null,
    comfyui: options.upstreamHealthy() ? 'up' : 'down',
    draining: options.draining(),
    ...(options.healthDetails?.() ?? {}),
  })
  return true
}

/** Ready turns false while draining, before anything stops, so orchestrators stop routing first. */
const ready: ApiHandler = async ({ res, options }) => {
  const isReady = !options.draining() && options.upstreamHealthy()
  send(res, isReady ? 200 : 503, {
    ready: isReady,
    reason: options.draining() ? 'draining' : options.upstreamHealthy() ? null : 'ComfyUI does not answer',
  })
  return true
}

/** The same parameters and answers as the CLI's analysis commands (`comfy-audit stats --json`, ...). */
async function analysis(call: ApiCall, command: AnalysisCommand): Promise<boolean> {
  const params: Record<string, string> = {}
  for (const [key, value] of call.url.searchParams) params[key] = value
  const result = await runAnalysis(call.options.store, command, params)
  if (!result.ok) send(call.res, result.status, { error: result.reason })
  else send(call.res, 200, asJsonValue(result.value))
  return true
}

/** The GET (and HEAD) routes with a fixed path. */
const GET_ROUTES: ReadonlyMap<string, ApiHandler> = new Map([
  ['/_audit/health', health],
  ['/_audit/ready', ready],
  ['/_audit/api/trace', traceHash],
  ['/_audit/api/key', verifierKey],
  ['/_audit/api/sessions', listSessions],
  ['/_audit/api/runs', listRuns],
  ['/_audit/api/live', liveUpdates],
  ['/_audit/api/integrity', ledgerIntegrity],
  ['/_audit/api/node-runs', listNodeRuns],
])

const SESSION_PART = /^\/_audit\/api\/sessions\/([^/]+)\/(evidence|integrity)$/
const SESSION = /^\/_audit\/api\/sessions\/([^/]+)$/
const ANALYSIS = /^\/_audit\/api\/([a-z]+)$/

/** The GET routes with a parameter in the path; false when none matches. */
function routeByPattern(call: ApiCall): Promise<boolean> {
  const path = call.url.pathname
  const part = SESSION_PART.exec(path)
  if (part) return sessionEvidence(call, decodeURIComponent(part[1]!), part[2] as 'evidence' | 'integrity')
  const one = SESSION.exec(path)
  if (one) return oneSession(call, decodeURIComponent(one[1]!))
  const command = ANALYSIS.exec(path)?.[1]
  if (command !== undefined && (ANALYSIS_COMMANDS as readonly string[]).includes(command)) {
    return analysis(call, command as AnalysisCommand)
  }
  return Promise.resolve(false)
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
    const call: ApiCall = { req, res, url, options }
    if (url.pathname === '/_audit/api/trace' && req.method === 'POST') return traceUploadedImage(call)
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      if (!url.pathname.startsWith('/_audit/')) return false
      send(res, 405, { error: `method ${req.method} not allowed on ${url.pathname}` })
      return true
    }
    const handler = GET_ROUTES.get(url.pathname)
    return handler ? handler(call) : routeByPattern(call)
  }
}

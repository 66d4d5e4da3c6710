import type { Writable } from 'node:stream'
import { asJsonObject } from '../../audit/json-value.js'
import type { Command } from 'commander'
import { parseJson, stringifyJson } from '../../audit/json.js'
import { SESSION_STATUSES, type JsonObject, type JsonValue, type SessionStatus } from '../../audit/types.js'
import type { RuntimeStore } from '../../store/runtime-store.js'
import { CliError, openCliStore, type CliStoreOptions } from '../open-store.js'

/** What the store holds, per log origin. */
interface OriginStatus {
  readonly origin: string
  /** Events in the origin's log (highest seq + 1). */
  readonly events: number
  readonly sessions: number
  /** Sessions by status; every status is present (0 when none). */
  readonly byStatus: Readonly<Record<SessionStatus, number>>
}

/** The store part of `comfy-audit status`. */
interface StoreStatus {
  /** Dialect name (`sqlite`, `postgres`). */
  readonly store: string
  readonly origins: readonly OriginStatus[]
  readonly events: number
  readonly sessions: number
  readonly byStatus: Readonly<Record<SessionStatus, number>>
}

/** The gateway part: its `/_audit/health` answer, or why there is none. */
type GatewayStatus =
  | { readonly ok: true; readonly url: string; readonly health: JsonObject }
  | { readonly ok: false; readonly url: string; readonly reason: string }

function zeroCounts(): Record<SessionStatus, number> {
  return Object.fromEntries(SESSION_STATUSES.map((s) => [s, 0])) as Record<SessionStatus, number>
}

/**
 * Counts sessions by status and events, per origin, from the database's counts (a GROUP BY and each log's
 * highest seq), so `status` costs the same on a store of a hundred sessions as on one of millions.
 */
async function collectStoreStatus(
  store: Pick<RuntimeStore, 'dialect' | 'origins' | 'lastSeq' | 'sessionCounts'>,
): Promise<StoreStatus> {
  const byStatus = zeroCounts()
  const perOrigin = new Map<string, { events: number; byStatus: Record<SessionStatus, number> }>()
  const entry = (origin: string): { events: number; byStatus: Record<SessionStatus, number> } => {
    let e = perOrigin.get(origin)
    if (!e) perOrigin.set(origin, (e = { events: 0, byStatus: zeroCounts() }))
    return e
  }
  for (const origin of await store.origins()) entry(origin).events = (await store.lastSeq(origin)) + 1
  for (const { origin, status, count } of await store.sessionCounts()) {
    entry(origin).byStatus[status] += count
    byStatus[status] += count
  }
  const origins = [...perOrigin.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([origin, e]) => ({
      origin,
      events: e.events,
      sessions: Object.values(e.byStatus).reduce((n, c) => n + c, 0),
      byStatus: e.byStatus,
    }))
  return {
    store: store.dialect,
    origins,
    events: origins.reduce((n, o) => n + o.events, 0),
    sessions: origins.reduce((n, o) => n + o.sessions, 0),
    byStatus,
  }
}

/** Asks a running gateway for `/_audit/health`; never throws (an unreachable gateway is a value). */
async function fetchGatewayStatus(
  url: string,
  options: { token?: string; timeoutMillis?: number } = {},
): Promise<GatewayStatus> {
  const base = url.replace(/\/+$/, '')
  try {
    const res = await fetch(`${base}/_audit/health`, {
      headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
      signal: AbortSignal.timeout(options.timeoutMillis ?? 5000),
    })
    const text = await res.text()
    if (!res.ok) return { ok: false, url: base, reason: `HTTP ${res.status} from /_audit/health` }
    const parsed = parseJson(text)
    if (
      !parsed.ok ||
      typeof parsed.value !== 'object' ||
      parsed.value === null ||
      Array.isArray(parsed.value)
    ) {
      return { ok: false, url: base, reason: '/_audit/health did not answer a JSON object' }
    }
    return { ok: true, url: base, health: parsed.value }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code
    const message = error instanceof Error ? error.message : String(error)
    return { ok: false, url: base, reason: cause ? `${message} (${cause})` : message }
  }
}

function statusCounts(byStatus: Readonly<Record<SessionStatus, number>>): string {
  const parts = SESSION_STATUSES.filter((s) => byStatus[s] > 0).map((s) => `${s} ${byStatus[s]}`)
  return parts.length > 0 ? parts.join(', ') : 'none'
}

function text(value: JsonValue | undefined): string {
  if (value === undefined || value === null) return '-'
  return typeof value === 'string' ? value : stringifyJson(value)
}

/** The human-readable report. */
function formatStatus(store: StoreStatus, gateway?: GatewayStatus): string {
  const lines = [
    `store: ${store.store}, ${store.origins.length} origin(s), ${store.sessions} session(s), ${store.events} event(s)`,
    `  sessions: ${statusCounts(store.byStatus)}`,
  ]
  for (const o of store.origins) {
    lines.push(
      `  origin ${o.origin}: ${o.events} event(s), ${o.sessions} session(s) (${statusCounts(o.byStatus)})`,
    )
  }
  if (gateway) {
    if (!gateway.ok) {
      lines.push(`gateway ${gateway.url}: unreachable: ${gateway.reason}`)
    } else {
      const h = gateway.health
      lines.push(
        `gateway ${gateway.url}: ${text(h.status)}, ComfyUI ${text(h.comfyui)}` +
          (h.draining === true ? ', draining' : '') +
          (h.origin !== undefined ? `, origin ${text(h.origin)}` : '') +
          (h.open_sessions !== undefined ? `, ${text(h.open_sessions)} open session(s)` : ''),
      )
      const sinks = Array.isArray(h.sinks) ? h.sinks : []
      if (sinks.length === 0) lines.push('  sinks: none configured')
      for (const s of sinks) {
        if (typeof s !== 'object' || s === null || Array.isArray(s)) continue
        lines.push(
          `  sink ${text(s.name)}: ${text(s.queued)} queued, ${text(s.spooledBytes)} bytes spooled, ` +
            `${text(s.failures)} failure(s), ${text(s.dropped)} dropped, last success ${text(s.lastSuccessAt)}` +
            (s.lastError !== null && s.lastError !== undefined ? `, last error: ${text(s.lastError)}` : ''),
        )
      }
    }
  }
  return `${lines.join('\n')}\n`
}

/** Where `status` writes (tests pass their own stream). */
interface StatusCommandIo {
  readonly out?: Writable
}

/**
 * `comfy-audit status`: what the store holds (sessions by status, events, origins) and, with `--gateway`,
 * the running gateway's health including each sink's queue, spool and failures. Fails (exit 1) when the
 * named gateway does not answer, after printing what it could.
 */
export function registerStatusCommand(program: Command, io: StatusCommandIo = {}): void {
  program
    .command('status')
    .description(
      'store counts (sessions by status, events, origins) and, with --gateway, its health and sinks',
    )
    .option('--data <dir>', 'data directory', process.env.COMFY_AUDIT_DATA ?? './data')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON)')
    .option('--gateway <url>', 'base URL of a running gateway, e.g. http://127.0.0.1:8190')
    .option('--token <token>', 'bearer token for the gateway, if it requires one')
    .option('--json', 'one JSON object')
    .action(async (opts: CliStoreOptions & Record<string, string | boolean | undefined>) => {
      const out = io.out ?? process.stdout
      const store = await openCliStore(opts)
      let storeStatus: StoreStatus
      try {
        storeStatus = await collectStoreStatus(store)
      } finally {
        await store.close()
      }
      const gateway =
        typeof opts.gateway === 'string'
          ? await fetchGatewayStatus(opts.gateway, { token: opts.token as string | undefined })
          : undefined
      const report = opts.json
        ? `${stringifyJson(asJsonObject({ ...storeStatus, ...(gateway ? { gateway } : {}) }))}\n`
        : formatStatus(storeStatus, gateway)
      await new Promise<void>((resolve, reject) =>
        out.write(report, (err) => (err ? reject(err) : resolve())),
      )
      if (gateway && !gateway.ok)
        throw new CliError(`gateway ${gateway.url} is unreachable: ${gateway.reason}`)
    })
}

/**
 * Events the gateway makes itself rather than capture (lifecycle, security, audit reads, people changes,
 * provenance), redacted by the same policy as capture's, so no request detail they carry (an audit-API URL,
 * a User-Agent, a configured URL with credentials) reaches the store or a sink as given.
 */
import { reportError, type Logger } from '../audit/report-error.js'
import type { AuditEventInput, AuditEventKind, JsonObject } from '../audit/types.js'
import { redactEvent } from '../capture/redact-event.js'
import type { SecurityEvent } from '../identity/identity.js'
import type { RuntimeStore } from '../store/runtime-store.js'

/** Appends the gateway's own events. */
export interface GatewayEvents {
  /** Appends events, redacted; resolves when they are committed. */
  append(events: readonly AuditEventInput[]): ReturnType<RuntimeStore['append']>
  /** Appends one gateway-level event (not tied to a session); never throws, never awaited by a request. */
  record(kind: AuditEventKind, payload: JsonObject): void
}

/** Creates the appender over `store`, redacting with `redactText`; `now` is the epoch-ms clock. */
export function createGatewayEvents(
  store: Pick<RuntimeStore, 'append'>,
  redactText: (text: string) => string,
  now?: () => number,
): GatewayEvents {
  const append: GatewayEvents['append'] = (events) =>
    store.append(events.map((e) => redactEvent(e, redactText)))
  return {
    append,
    record: (kind, payload) => {
      const time = new Date(now?.() ?? Date.now()).toISOString()
      append([{ kind, time, session_id: null, payload }]).catch((err: unknown) =>
        reportError(err, `store append ${kind}`),
      )
    },
  }
}

const SECURITY_KINDS = {
  'login.succeeded': 'security.login',
  'login.failed': 'security.login_failed',
  logout: 'security.logout',
  'person.provisioned': 'security.person_changed',
} as const satisfies Record<SecurityEvent['kind'], AuditEventKind>

/** The authenticator's `onEvent`: logs each login, logout and provisioning, and records it. */
export function securityEventRecorder(
  logger: Logger,
  record: GatewayEvents['record'],
): (e: SecurityEvent) => void {
  return (e) => {
    logger.info(`security: ${e.kind}`, { ...e })
    record(SECURITY_KINDS[e.kind], {
      kind: e.kind,
      user: e.user,
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      client_address: e.client_address,
      user_agent: e.user_agent,
      ...(e.kind === 'person.provisioned' ? { action: 'provisioned', by: 'gateway' } : {}),
    })
  }
}

/** The pieces every audit API handler shares: the request it is given, JSON answers, query parameters. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { stringifyJson } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'
import { sendJson } from '../comfyui/send-json.js'
import { parseTimeSpec } from '../config/duration.js'
import type { AuditApiOptions } from './audit-api.js'

/** One request to an audit API route. */
export interface ApiCall {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly url: URL
  readonly options: AuditApiOptions
}

/** Answers the call; false when the route turns out not to be served (the caller answers 404). */
export type ApiHandler = (call: ApiCall) => Promise<boolean>

/** A JSON answer in strict JSON: a browser's `JSON.parse` rejects bare NaN and Infinity, so they become strings. */
export function send(res: ServerResponse, status: number, body: JsonValue): void {
  sendJson(res, status, stringifyJson(body, { strict: true }))
}

export function badRequest(res: ServerResponse, message: string): true {
  send(res, 400, { error: message })
  return true
}

export function notFound(res: ServerResponse, message: string): true {
  send(res, 404, { error: message })
  return true
}

/** `since`/`until` query parameters in the one time syntax, as ISO strings. */
export function timeRange(
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

/** A count parameter: the fallback when absent, NaN unless plain digits (Number('') is 0, Number('1e2') 100). */
export function countParam(url: URL, name: string, fallback: number): number {
  const text = url.searchParams.get(name)
  return text === null ? fallback : /^\d+$/.test(text) ? Number(text) : NaN
}

/**
 * Webhook: POSTs each batch as JSON, `{"records": [...]}`, signed with HMAC-SHA256 so the receiver can check
 * it came from this gateway and was not replayed later:
 *   X-Comfy-Audit-Timestamp: <unix seconds>
 *   X-Comfy-Audit-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 * The timestamp is part of the signed material (as in Stripe's and Slack's schemes), and each retry is signed
 * afresh. Receivers de-duplicate by each record's `id`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { stringifyJson } from '../../audit/json.js'
import { createSinkTransport, type HttpSinkConfig, type HttpSinkOptions } from '../retrying-transport.js'
import { recordToJson, type AuditSink, type ExportResult } from '../sink.js'

/** Header carrying the signature. */
export const WEBHOOK_SIGNATURE_HEADER = 'x-comfy-audit-signature'
/** Header carrying the signing time (unix seconds). */
export const WEBHOOK_TIMESTAMP_HEADER = 'x-comfy-audit-timestamp'

/** What users write for the webhook sink. */
export interface WebhookSinkConfig extends HttpSinkConfig {
  /** HMAC key (take it from `${ENV}`); at least 16 characters. */
  readonly secret: string
}

/** The signature header value for a body signed at `timestamp` (unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')
}

/**
 * Checks a delivery (for receivers, and our tests): the signature matches and the timestamp is within
 * `toleranceSeconds` (default 300) of `nowMillis`.
 */
export function verifyWebhook(input: {
  secret: string
  body: string
  signature: string | undefined
  timestamp: string | undefined
  nowMillis?: number
  toleranceSeconds?: number
}): boolean {
  if (input.signature === undefined || input.timestamp === undefined || !/^\d+$/.test(input.timestamp))
    return false
  const ts = Number(input.timestamp)
  const now = (input.nowMillis ?? Date.now()) / 1000
  if (Math.abs(now - ts) > (input.toleranceSeconds ?? 300)) return false
  const expected = Buffer.from(signWebhook(input.secret, ts, input.body))
  const given = Buffer.from(input.signature)
  return expected.length === given.length && timingSafeEqual(expected, given)
}

/**
 * Creates the webhook sink.
 * @example
 * createWebhookSink({ url: 'https://hooks.example.com/comfy', secret: process.env.HOOK_SECRET! })
 */
export function createWebhookSink(config: WebhookSinkConfig, options: HttpSinkOptions = {}): AuditSink {
  if (typeof config.secret !== 'string' || config.secret.length < 16) {
    throw new RangeError('createWebhookSink: secret must be a string of at least 16 characters')
  }
  const now = options.now ?? Date.now
  const transport = createSinkTransport(config, options, {
    contentType: 'application/json',
    headersFor: (body) => {
      const timestamp = Math.floor(now() / 1000)
      return {
        [WEBHOOK_TIMESTAMP_HEADER]: String(timestamp),
        [WEBHOOK_SIGNATURE_HEADER]: signWebhook(config.secret, timestamp, body),
      }
    },
  })
  return {
    name: 'webhook',
    async export(batch, signal): Promise<ExportResult> {
      if (batch.length === 0) return { status: 'success' }
      const body = stringifyJson({ records: batch.map(recordToJson) }, { tagged: true })
      const result = await transport.send(body, signal)
      return result.status === 'success' ? { status: 'success' } : result
    },
    async forceFlush() {},
    async shutdown() {},
  }
}

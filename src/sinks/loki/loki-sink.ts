/**
 * Grafana Loki push API (POST /loki/api/v1/push, JSON form:
 * https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs).
 *
 * Labels stay low-cardinality (service, origin, record type, event kind, status): every distinct label set is a
 * stream with its own index entry, so ids, users and node types go into the line and structured metadata
 * instead. Within a stream, entries are sent in time order. The entry timestamp is the event's time, so a
 * re-sent entry has the same timestamp and line, which Loki de-duplicates.
 */
import { stringifyJson } from '../../audit/json.js'
import type { JsonObject, JsonValue } from '../../audit/types.js'
import { createSinkTransport, type HttpSinkConfig, type HttpSinkOptions } from '../retrying-transport.js'
import {
  isoToUnixNanos,
  serializeRecord,
  type AuditSink,
  type ExportResult,
  type SinkRecord,
} from '../sink.js'

/** What users write for the Loki sink. */
export interface LokiSinkConfig extends HttpSinkConfig {
  /** Loki's base URL; `/loki/api/v1/push` is appended when the URL has no path. */
  readonly url: string
  /** Static labels added to every stream (e.g. `{ env: 'prod' }`); keep them few and fixed. */
  readonly labels?: Readonly<Record<string, string>>
  /** Multi-tenant Loki: sent as `X-Scope-OrgID`. */
  readonly tenant?: string
}

/** The stream labels of a record. */
export function lokiLabels(
  record: SinkRecord,
  extra: Readonly<Record<string, string>> = {},
): Record<string, string> {
  const labels: Record<string, string> = {
    ...extra,
    service: 'comfy-audit',
    origin: record.origin,
    record_type: record.record_type,
    kind: record.kind,
  }
  if (record.record_type !== 'action') labels.status = record.status
  return labels
}

/** Structured metadata of a record's entry (high-cardinality fields, all strings). */
export function lokiMetadata(record: SinkRecord): Record<string, string> {
  const meta: Record<string, string> = { id: record.id, seq: String(record.seq) }
  if (record.record_type === 'node_run') {
    meta.session_id = record.session_id
    meta.node_id = record.node_id
    if (record.node_type) meta.node_type = record.node_type
  } else if (record.record_type === 'session') {
    meta.session_id = record.session_id
    if (record.submitter?.user) meta.user = record.submitter.user
  } else {
    if (record.session_id) meta.session_id = record.session_id
    if (record.user) meta.user = record.user
  }
  return meta
}

/** The push request body for a batch: one stream per label set, entries in time order. */
export function toLokiPush(
  batch: readonly SinkRecord[],
  extraLabels?: Readonly<Record<string, string>>,
): JsonObject {
  const streams = new Map<
    string,
    { labels: Record<string, string>; entries: { ns: bigint; seq: number; value: JsonValue[] }[] }
  >()
  for (const record of batch) {
    const labels = lokiLabels(record, extraLabels)
    const key = JSON.stringify(Object.entries(labels).sort())
    let stream = streams.get(key)
    if (!stream) streams.set(key, (stream = { labels, entries: [] }))
    const ns = isoToUnixNanos(record.time)
    stream.entries.push({
      ns: BigInt(ns),
      seq: record.seq,
      value: [ns, serializeRecord(record), lokiMetadata(record)],
    })
  }
  return {
    streams: [...streams.values()].map((s) => ({
      stream: s.labels,
      values: s.entries
        .sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : a.seq - b.seq))
        .map((e) => e.value),
    })),
  }
}

/**
 * Creates the Loki sink.
 * @example
 * createLokiSink({ url: 'http://loki:3100', labels: { env: 'prod' } })
 */
export function createLokiSink(config: LokiSinkConfig, options: HttpSinkOptions = {}): AuditSink {
  const url = new URL(config.url)
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/loki/api/v1/push'
  const headers = { ...config.headers, ...(config.tenant ? { 'x-scope-orgid': config.tenant } : {}) }
  const transport = createSinkTransport({ ...config, url: url.toString(), headers }, options, {
    contentType: 'application/json',
  })
  return {
    name: 'loki',
    async export(batch, signal): Promise<ExportResult> {
      if (batch.length === 0) return { status: 'success' }
      const result = await transport.send(
        stringifyJson(toLokiPush(batch, config.labels), { strict: true }),
        signal,
      )
      return result.status === 'success' ? { status: 'success' } : result
    },
    async forceFlush() {},
    async shutdown() {},
  }
}

/**
 * OTLP/HTTP JSON traces (https://opentelemetry.io/docs/specs/otlp/#otlphttp), written by hand: no SDK, the
 * records already are finished spans. One trace per session: trace id and span ids are derived from the
 * session id (SHA-256, truncated), so re-sending a record yields the same ids and a collector or backend can
 * de-duplicate. The session is the root span (sent once the session is final); each node run is a child span;
 * an action is a zero-length span (child of its session when it names one).
 */
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { parseJson, stringifyJson } from '../../audit/json.js'
import { asJsonObject } from '../../audit/json-value.js'
import { silentLogger } from '../../audit/report-error.js'
import type { JsonObject, JsonValue } from '../../audit/types.js'
import { FINAL_SESSION_STATUSES } from '../../audit/types.js'
import { createSinkTransport, type HttpSinkConfig, type HttpSinkOptions } from '../retrying-transport.js'
import { isoToUnixNanos, recordError, type AuditSink, type ExportResult, type SinkRecord } from '../sink.js'

/** What users write for the OTLP sink. */
export interface OtlpSinkConfig extends HttpSinkConfig {
  /** The collector's traces endpoint; `/v1/traces` is appended when the URL has no path. */
  readonly url: string
  /** `service.instance.id` (default: the host name). */
  readonly instanceId?: string
  /** Extra resource attributes (e.g. `deployment.environment`). */
  readonly resourceAttributes?: Readonly<Record<string, string>>
}

type AnyValue =
  { stringValue: string } | { intValue: string } | { doubleValue: number } | { boolValue: boolean }
interface KeyValue {
  key: string
  value: AnyValue
}

/** OTLP span kinds and status codes (opentelemetry-proto trace.proto). */
const SPAN_KIND_INTERNAL = 1
const STATUS_UNSET = 0
const STATUS_OK = 1
const STATUS_ERROR = 2

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function hexId(material: string, hexDigits: number): string {
  const hex = createHash('sha256').update(material).digest('hex').slice(0, hexDigits)
  // All-zero ids are invalid in OTLP; astronomically unlikely, but cheap to rule out.
  return /^0+$/.test(hex) ? hex.slice(0, -1) + '1' : hex
}

/** The trace id (32 hex digits) of a session. */
export function traceIdOf(sessionId: string): string {
  return hexId(`comfy-audit/trace/${sessionId}`, 32)
}

/** The root span id (16 hex digits) of a session. */
export function rootSpanIdOf(sessionId: string): string {
  return hexId(`comfy-audit/session/${sessionId}`, 16)
}

/** The span id (16 hex digits) of a node run within a session. */
export function nodeSpanIdOf(sessionId: string, nodeId: string): string {
  return hexId(`comfy-audit/node/${sessionId}/${nodeId}`, 16)
}

function attr(key: string, value: JsonValue | undefined): KeyValue | null {
  switch (typeof value) {
    case 'string':
      return { key, value: { stringValue: value } }
    case 'boolean':
      return { key, value: { boolValue: value } }
    case 'bigint':
      return { key, value: { intValue: value.toString() } }
    case 'number':
      if (Number.isInteger(value)) return { key, value: { intValue: String(value) } }
      return Number.isFinite(value)
        ? { key, value: { doubleValue: value } }
        : { key, value: { stringValue: String(value) } }
    default:
      return null
  }
}

function attrs(entries: [string, JsonValue | undefined][]): KeyValue[] {
  return entries.map(([k, v]) => attr(k, v)).filter((kv): kv is KeyValue => kv !== null)
}

function nanos(iso: string | null | undefined, fallback: string): string {
  if (iso) {
    try {
      return isoToUnixNanos(iso)
    } catch {
      // fall through to the record's own time
    }
  }
  return isoToUnixNanos(fallback)
}

/** The span of one record, or null when the record is not (yet) a span (a session that is still open). */
export function toOtlpSpan(record: SinkRecord): JsonObject | null {
  const common: [string, JsonValue | undefined][] = [
    ['comfyui.record_id', record.id],
    ['comfyui.origin', record.origin],
    ['comfyui.seq', record.seq],
    ['comfyui.event_kind', record.kind],
    ['comfyui.schema_version', record.schema_version],
  ]
  const error = recordError(record)
  const events: JsonObject[] = []
  let status: JsonObject = { code: STATUS_UNSET }
  if (error) {
    status = { code: STATUS_ERROR, message: error.message }
    events.push({
      timeUnixNano: nanos(record.time, record.time),
      name: 'exception',
      attributes: attrs([
        ['exception.type', error.type ?? 'Error'],
        ['exception.message', error.message],
        ['exception.stacktrace', error.stacktrace ?? undefined],
      ]).map(asJsonObject),
    })
  }
  switch (record.record_type) {
    case 'node_run': {
      const start = nanos(record.timestamp_start, record.time)
      if (!error && (record.status === 'success' || record.status === 'cached')) status = { code: STATUS_OK }
      return {
        traceId: traceIdOf(record.session_id),
        spanId: nodeSpanIdOf(record.session_id, record.node_id),
        parentSpanId: rootSpanIdOf(record.session_id),
        name: record.node_type ?? `node ${record.node_id}`,
        kind: SPAN_KIND_INTERNAL,
        startTimeUnixNano: start,
        endTimeUnixNano: record.timestamp_end ? nanos(record.timestamp_end, record.time) : start,
        attributes: attrs([
          ['comfyui.session_id', record.session_id],
          ['comfyui.node_id', record.node_id],
          ['comfyui.node_type', record.node_type ?? undefined],
          ['comfyui.status', record.status],
          ['comfyui.duration_ms', record.duration_ms ?? undefined],
          ['comfyui.gpu_memory_used_mib', record.gpu_memory_used ?? undefined],
          ['comfyui.gpu_memory_torch_mib', record.gpu_memory_torch ?? undefined],
          ['comfyui.display_node', record.display_node ?? undefined],
          ['comfyui.real_node_id', record.real_node_id ?? undefined],
          ['comfyui.parent_node_id', record.parent_node_id ?? undefined],
          ['comfyui.progress.value', record.progress?.value],
          ['comfyui.progress.max', record.progress?.max],
          ...common,
        ]).map(asJsonObject),
        events,
        status,
      }
    }
    case 'session': {
      if (!FINAL_SESSION_STATUSES.includes(record.status)) return null
      if (!error && record.status === 'success') status = { code: STATUS_OK }
      return {
        traceId: traceIdOf(record.session_id),
        spanId: rootSpanIdOf(record.session_id),
        name: 'comfyui.prompt',
        kind: SPAN_KIND_INTERNAL,
        startTimeUnixNano: nanos(record.queued_at ?? record.started_at, record.time),
        endTimeUnixNano: nanos(record.ended_at, record.time),
        attributes: attrs([
          ['comfyui.session_id', record.session_id],
          ['comfyui.status', record.status],
          ['comfyui.status_reason', record.status_reason ?? undefined],
          ['comfyui.user', record.submitter?.user],
          ['comfyui.auth_method', record.submitter?.auth_method],
          ['comfyui.client_id', record.client_id ?? undefined],
          ['comfyui.number', record.number ?? undefined],
          ['comfyui.http_status', record.http_status ?? undefined],
          ['comfyui.duration_ms', record.duration_ms ?? undefined],
          ['comfyui.prompt_sha256', record.prompt_sha256 ?? undefined],
          ['comfyui.workflow_sha256', record.workflow_sha256 ?? undefined],
          ['comfyui.queued_at', record.queued_at ?? undefined],
          ['comfyui.started_at', record.started_at ?? undefined],
          ...common,
        ]).map(asJsonObject),
        events,
        status,
      }
    }
    case 'action': {
      const time = nanos(record.time, record.time)
      return {
        traceId: record.session_id
          ? traceIdOf(record.session_id)
          : hexId(`comfy-audit/action/${record.id}`, 32),
        spanId: hexId(`comfy-audit/action-span/${record.id}`, 16),
        ...(record.session_id ? { parentSpanId: rootSpanIdOf(record.session_id) } : {}),
        name: `comfyui.action.${record.action}`,
        kind: SPAN_KIND_INTERNAL,
        startTimeUnixNano: time,
        endTimeUnixNano: time,
        attributes: attrs([
          ['comfyui.action', record.action],
          ['comfyui.session_id', record.session_id ?? undefined],
          ['comfyui.user', record.user ?? undefined],
          ['comfyui.client_address', record.submitter?.client_address ?? undefined],
          ...common,
        ]).map(asJsonObject),
        events,
        status,
      }
    }
  }
}

/** The OTLP/HTTP JSON request body (`ExportTraceServiceRequest`) for a batch, or null when it has no span. */
export function toOtlpRequest(
  batch: readonly SinkRecord[],
  resource: { instanceId: string; hostName: string; extra?: Readonly<Record<string, string>> },
): JsonObject | null {
  const spans = batch.map(toOtlpSpan).filter((s): s is JsonObject => s !== null)
  if (spans.length === 0) return null
  return {
    resourceSpans: [
      {
        resource: {
          attributes: attrs([
            ['service.name', 'comfy-audit'],
            ['service.instance.id', resource.instanceId],
            ['host.name', resource.hostName],
            ...Object.entries(resource.extra ?? {}),
          ]).map(asJsonObject),
        },
        scopeSpans: [{ scope: { name: 'comfy-audit' }, spans }],
      },
    ],
  }
}

/**
 * Creates the OTLP traces sink.
 * @example
 * createOtlpSink({ url: 'http://otel-collector:4318' })
 */
export function createOtlpSink(config: OtlpSinkConfig, options: HttpSinkOptions = {}): AuditSink {
  const url = new URL(config.url)
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces'
  const transport = createSinkTransport({ ...config, url: url.toString() }, options, {
    contentType: 'application/json',
  })
  const hostName = options.hostName ?? hostname()
  const logger = options.logger ?? silentLogger
  const resource = { instanceId: config.instanceId ?? hostName, hostName, extra: config.resourceAttributes }
  return {
    name: 'otlp',
    async export(batch, signal): Promise<ExportResult> {
      const body = toOtlpRequest(batch, resource)
      if (body === null) return { status: 'success' }
      const result = await transport.send(stringifyJson(body, { strict: true }), signal)
      if (result.status !== 'success') return result
      // A collector may accept the request but reject some spans for good (partial success, OTLP 1.0).
      const answer = parseJson(result.response.body || '{}')
      const partial = answer.ok && isObject(answer.value) ? answer.value.partialSuccess : undefined
      const rejected = isObject(partial) ? Number(partial.rejectedSpans ?? 0) : 0
      if (rejected > 0) {
        const message = isObject(partial) ? String(partial.errorMessage ?? '') : ''
        logger.error('otlp collector rejected spans', { rejected, message })
        return { status: 'success', dropped: rejected }
      }
      return { status: 'success' }
    },
    async forceFlush() {},
    async shutdown() {},
  }
}

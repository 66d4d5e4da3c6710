/**
 * Elasticsearch `_bulk` (https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html):
 * NDJSON pairs `{"create":{"_index":…,"_id":<record id>}}` + document, each line ending in a newline, the last
 * one included (Elasticsearch refuses a body without it). Documents use Elastic Common Schema fields
 * (`@timestamp`, `event.*`, `service.name`, `host.name`, `error.*`, `labels`) plus the whole record under
 * `comfyui`.
 *
 * `create` with the record id as `_id` makes delivery idempotent: a record sent twice answers 409
 * version_conflict the second time, which counts as delivered. Per-item results are read: 429 and 5xx items
 * are retried (only they), other 4xx items are dropped, counted and logged.
 *
 * Before its first `_bulk` the sink installs the index template `elasticsearch-template.json` (PUT
 * `_index_template/<index>`, patterns `<index>` and `<index>-*`) unless `template` is false. Left to dynamic
 * mapping, a cluster refuses documents for good (400 mapper_parsing_exception) as soon as a free-form value
 * changes type between records: a UI workflow's `links` rows mix numbers and type names, a node input is a
 * number in one graph and a link in the next, and graphs add fields past the 1000-field limit. The template
 * maps the fields worth searching, keeps free-form JSON unparsed (`enabled: false`) and everything else
 * unmapped (`dynamic: false`); all of it stays in `_source`. A template applies to indices created after it:
 * an index that existed before keeps its mapping (roll over or reindex).
 */
import { hostname } from 'node:os'
import template from './elasticsearch-template.json' with { type: 'json' }
import { parseJson, stringifyJson } from '../../audit/json.js'
import { asJsonObject } from '../../audit/json-value.js'
import { silentLogger } from '../../audit/report-error.js'
import type { JsonObject, JsonValue } from '../../audit/types.js'
import {
  createSinkTransport,
  isRetryableStatus,
  type HttpSinkConfig,
  type HttpSinkOptions,
} from '../retrying-transport.js'
import { recordError, recordToJson, type AuditSink, type ExportResult, type SinkRecord } from '../sink.js'

/** What users write for the Elasticsearch sink. */
export interface ElasticsearchSinkConfig extends HttpSinkConfig {
  /** The cluster's base URL; `/_bulk` is appended when the URL has no path. */
  readonly url: string
  /** Index or data stream written to (default `comfy-audit`). A data stream needs `create`, which we use. */
  readonly index?: string
  /**
   * Install the index template before the first export (default true). Turn it off when the cluster's
   * templates are managed elsewhere or the key may not manage them; then install
   * {@link elasticsearchTemplate} yourself.
   */
  readonly template?: boolean
}

/** The index template for `index` (the shipped elasticsearch-template.json, patterns `<index>`, `<index>-*`). */
export function elasticsearchTemplate(index: string): JsonObject {
  return { ...asJsonObject(template), index_patterns: [index, `${index}-*`] }
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function outcome(record: SinkRecord): 'success' | 'failure' | 'unknown' {
  if (record.record_type === 'action') return 'unknown'
  if (record.status === 'success' || record.status === 'cached') return 'success'
  if (record.status === 'error' || record.status === 'rejected' || record.status === 'lost') return 'failure'
  return 'unknown'
}

/** The ECS document of a record. */
export function toEcsDocument(record: SinkRecord, hostName: string): JsonObject {
  const event: JsonObject = {
    kind: 'event',
    action: record.kind,
    outcome: outcome(record),
    id: record.id,
    sequence: record.seq,
    dataset: `comfy_audit.${record.record_type}`,
    created: record.time,
  }
  let timestamp = record.time
  const labels: JsonObject = { origin: record.origin, record_type: record.record_type }
  let user: string | null = null
  switch (record.record_type) {
    case 'node_run':
      timestamp = record.timestamp_start
      event.category = ['process']
      event.type = ['info']
      event.start = record.timestamp_start
      if (record.timestamp_end) event.end = record.timestamp_end
      // ECS event.duration is in nanoseconds.
      if (record.duration_ms !== null) event.duration = Math.round(record.duration_ms * 1_000_000)
      labels.status = record.status
      if (record.node_type) labels.node_type = record.node_type
      break
    case 'session': {
      timestamp = record.ended_at ?? record.started_at ?? record.queued_at ?? record.time
      event.category = ['session']
      event.type = [record.status === 'queued' ? 'start' : record.status === 'running' ? 'info' : 'end']
      if (record.queued_at) event.start = record.queued_at
      if (record.ended_at) event.end = record.ended_at
      if (record.duration_ms !== null && record.duration_ms !== undefined) {
        event.duration = Math.round(record.duration_ms * 1_000_000)
      }
      labels.status = record.status
      user = record.submitter?.user ?? null
      break
    }
    case 'action':
      event.category = record.action === 'upload' ? ['file'] : ['process']
      event.type = [
        /_(delete|clear)$/.test(record.action)
          ? 'deletion'
          : record.action === 'upload'
            ? 'creation'
            : 'change',
      ]
      user = record.user
      break
  }
  const doc: JsonObject = {
    '@timestamp': timestamp,
    event,
    service: { name: 'comfy-audit' },
    host: { name: hostName },
    labels,
    comfyui: recordToJson(record),
  }
  if (user) doc.user = { name: user }
  const error = recordError(record)
  if (error) {
    doc.error = {
      message: error.message,
      ...(error.type ? { type: error.type } : {}),
      ...(error.stacktrace ? { stack_trace: error.stacktrace } : {}),
    }
  }
  return doc
}

/** The `_bulk` body: an action line and a document line per record, every line newline-terminated. */
export function toBulkBody(batch: readonly SinkRecord[], index: string, hostName: string): string {
  let body = ''
  for (const record of batch) {
    body += stringifyJson({ create: { _index: index, _id: record.id } }) + '\n'
    body += stringifyJson(toEcsDocument(record, hostName), { strict: true }) + '\n'
  }
  return body
}

/**
 * Creates the Elasticsearch sink.
 * @example
 * createElasticsearchSink({ url: 'https://es:9200', auth: { apiKey: process.env.ES_API_KEY! } })
 */
export function createElasticsearchSink(
  config: ElasticsearchSinkConfig,
  options: HttpSinkOptions = {},
): AuditSink {
  const url = new URL(config.url)
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/_bulk'
  const index = config.index ?? 'comfy-audit'
  const hostName = options.hostName ?? hostname()
  const logger = options.logger ?? silentLogger
  const transport = createSinkTransport({ ...config, url: url.toString() }, options, {
    contentType: 'application/x-ndjson',
  })
  // The template API sits at the cluster's root, beside `_bulk` (a URL naming another path keeps its prefix).
  const templateUrl = new URL(url)
  templateUrl.pathname = `${url.pathname.replace(/\/_bulk\/?$/, '')}/_index_template/${encodeURIComponent(index)}`
  const templateTransport = createSinkTransport({ ...config, url: templateUrl.toString() }, options, {
    contentType: 'application/json',
    method: 'PUT',
  })
  let templateDone = config.template === false
  const installTemplate = async (signal: AbortSignal): Promise<ExportResult | null> => {
    const result = await templateTransport.send(stringifyJson(elasticsearchTemplate(index)), signal)
    if (result.status === 'retryable') return result
    templateDone = true
    if (result.status === 'failure') {
      // Shipping goes on: an index whose mapping is managed elsewhere may not need it.
      logger.error(
        'elasticsearch: index template not installed; dynamic mapping may refuse documents ' +
          '(install elasticsearch-template.json yourself, or allow this key to manage index templates)',
        { index, status: result.response.status, error: result.error.message },
      )
    }
    return null
  }
  return {
    name: 'elasticsearch',
    async export(batch, signal): Promise<ExportResult> {
      if (batch.length === 0) return { status: 'success' }
      if (!templateDone) {
        const failed = await installTemplate(signal)
        if (failed) return failed
      }
      const result = await transport.send(toBulkBody(batch, index, hostName), signal)
      if (result.status !== 'success') return result
      const parsed = parseJson(result.response.body)
      if (!parsed.ok || !isObject(parsed.value)) {
        return {
          status: 'retryable',
          error: new Error(`_bulk answer is not JSON: ${parsed.ok ? 'not an object' : parsed.reason}`),
        }
      }
      if (parsed.value.errors !== true) return { status: 'success' }
      const items = Array.isArray(parsed.value.items) ? parsed.value.items : []
      const retry: SinkRecord[] = []
      let dropped = 0
      let lastError = ''
      batch.forEach((record, i) => {
        const item = items[i]
        const op = isObject(item) ? (item.create ?? item.index) : undefined
        // Without a per-item answer we cannot know; resending is safe thanks to create + _id.
        if (!isObject(op) || typeof op.status !== 'number') return void retry.push(record)
        const status = op.status
        if ((status >= 200 && status <= 299) || status === 409) return
        const err = isObject(op.error) ? op.error : {}
        lastError = `${String(err.type ?? status)}: ${String(err.reason ?? '')}`
        if (isRetryableStatus(status)) return void retry.push(record)
        dropped++
        logger.error('elasticsearch refused a record; dropped', { id: record.id, status, error: lastError })
      })
      if (retry.length > 0) {
        return {
          status: 'retryable',
          error: new Error(`_bulk: ${retry.length} item(s) to retry (${lastError})`),
          records: retry,
          dropped,
        }
      }
      return { status: 'success', dropped }
    },
    async forceFlush() {},
    async shutdown() {},
  }
}

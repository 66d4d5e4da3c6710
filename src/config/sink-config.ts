/**
 * The sinks a config names (JSONL files, OTLP, Loki, Elasticsearch, a webhook): their schema, with the batching,
 * spool and retry settings every sink shares. Part of the config schema in config.ts.
 */
import { z } from 'zod'

const MIB = 1024 * 1024

/** Credentials of an HTTP sink; write secrets as `${ENV}` references so they stay out of the file. */
const zHttpAuth = z.union([
  /** `Authorization: Bearer <token>`. */
  z.object({ bearer: z.string().min(1) }).strict(),
  /** `Authorization: Basic base64(username:password)`. */
  z.object({ basic: z.object({ username: z.string(), password: z.string() }).strict() }).strict(),
  /** An API key header (default header `Authorization: ApiKey <key>`, Elasticsearch's form). */
  z.object({ apiKey: z.string().min(1), header: z.string().min(1).optional() }).strict(),
])

/** Batch processor settings of one sink (OpenTelemetry's BatchSpanProcessor defaults). */
const zSinkBatch = z
  .object({
    /** Records held in memory before they spill to the disk spool (default 2048). */
    maxQueueSize: z.number().int().positive().default(2048),
    /** Records per export (default 512); at most `maxQueueSize`. */
    maxExportBatchSize: z.number().int().positive().default(512),
    /** Milliseconds a partial batch waits before it is exported (default 1000). */
    scheduledDelayMillis: z.number().int().positive().default(1000),
    /** Milliseconds one export may take before it is abandoned and retried (default 30 000). */
    exportTimeoutMillis: z.number().int().positive().default(30_000),
  })
  .strict()
  .refine((b) => b.maxExportBatchSize <= b.maxQueueSize, {
    message: 'maxExportBatchSize must not exceed maxQueueSize',
    path: ['maxExportBatchSize'],
  })

/** Retries of an HTTP sink's transport (only on 429, 5xx and network errors). */
const zSinkRetry = z
  .object({
    /** Attempts per export, the first included (default 5). */
    maxAttempts: z.number().int().positive().optional(),
    /** Backoff before the second attempt, ms (default 1000); doubles each time, with jitter. */
    initialBackoffMillis: z.number().int().positive().optional(),
    /** Longest backoff, ms (default 30 000). */
    maxBackoffMillis: z.number().int().positive().optional(),
    /** Time one export may spend on attempts and waits, ms (default 60 000); then the batch is spooled. */
    deadlineMillis: z.number().int().positive().optional(),
  })
  .strict()

/** What every sink has: a name, batching and a spool. */
const sinkCommon = {
  /**
   * Unique name of the sink (default: its type). It names the spool folder `<data>/spool/<name>`, the
   * health entry and the metrics label, so two sinks of one type need distinct names.
   */
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'expected letters, digits, ".", "_" or "-" (at most 64)')
    .optional(),
  /** Batch processor settings (defaults: 2048 queued, 512 per batch, 1 s delay, 30 s export timeout). */
  batch: zSinkBatch.prefault({}),
  /** Quota of the sink's disk spool in bytes (default 256 MiB); records past it are dropped and counted. */
  spoolMaxBytes: z
    .number()
    .int()
    .positive()
    .default(256 * MIB),
}

/** What every HTTP sink has besides. */
const httpCommon = {
  ...sinkCommon,
  /** The receiver's URL. */
  url: z.string().url('expected a URL such as http://127.0.0.1:3100'),
  /** Extra request headers (values may be `${ENV}` references; never logged). */
  headers: z.record(z.string(), z.string()).optional(),
  /** Credentials: `{ bearer }`, `{ basic: { username, password } }` or `{ apiKey, header? }`. */
  auth: zHttpAuth.optional(),
  /** Transport retries (defaults: 5 attempts, 1 s doubling to 30 s, 60 s deadline). */
  retry: zSinkRetry.optional(),
}

/** One configured sink, by `type`. */
export const zSinkConfig = z.discriminatedUnion('type', [
  z
    .object({
      /** JSONL files with the seed's field names, rotated and gzipped. */
      type: z.literal('jsonl'),
      ...sinkCommon,
      /** Folder of the files (default `<data>/jsonl/<name>`). */
      dir: z.string().min(1).optional(),
      /** File name prefix (default `comfy-audit`). */
      prefix: z.string().min(1).default('comfy-audit'),
      rotation: z
        .object({
          /** Start a new file when the UTC day changes (default true). */
          daily: z.boolean().default(true),
          /** Start a new file before this size would be passed, bytes (default 100 MiB). */
          maxFileBytes: z
            .number()
            .int()
            .positive()
            .default(100 * MIB),
          /** Gzip rotated files (default true). */
          gzip: z.boolean().default(true),
        })
        .strict()
        .prefault({}),
    })
    .strict(),
  z
    .object({
      /** OTLP/HTTP JSON traces (one trace per session, one span per node run). */
      type: z.literal('otlp'),
      ...httpCommon,
      /** `service.instance.id` (default: the host name). */
      instanceId: z.string().min(1).optional(),
      /** Extra resource attributes, e.g. `{ "deployment.environment": "prod" }`. */
      resourceAttributes: z.record(z.string(), z.string()).optional(),
    })
    .strict(),
  z
    .object({
      /** Grafana Loki push API. */
      type: z.literal('loki'),
      ...httpCommon,
      /** Static labels on every stream (default none); keep them few and fixed (cardinality). */
      labels: z.record(z.string(), z.string()).optional(),
      /** Multi-tenant Loki: sent as `X-Scope-OrgID` (default none). */
      tenant: z.string().min(1).optional(),
    })
    .strict(),
  z
    .object({
      /** Elasticsearch / OpenSearch `_bulk` with Elastic Common Schema fields. */
      type: z.literal('elasticsearch'),
      ...httpCommon,
      /** Index or data stream written to (default `comfy-audit`). */
      index: z.string().min(1).default('comfy-audit'),
      /**
       * Install the shipped index template (`_index_template/<index>`) before the first export (default
       * true), so that dynamic mapping cannot refuse documents; false when templates are managed elsewhere.
       */
      template: z.boolean().default(true),
    })
    .strict(),
  z
    .object({
      /** JSON POSTs signed with HMAC-SHA256. */
      type: z.literal('webhook'),
      ...httpCommon,
      /** HMAC key, at least 16 characters; write it as a `${ENV}` reference. */
      secret: z.string().min(16, 'expected at least 16 characters (use a ${ENV} reference)'),
    })
    .strict(),
])

/** One configured sink, as parsed (defaults filled). */
export type SinkConfig = z.infer<typeof zSinkConfig>
/** The sink types a config may name. */
export const SINK_TYPES = ['jsonl', 'otlp', 'loki', 'elasticsearch', 'webhook'] as const

/** The name a sink goes by: its `name`, else its type. */
export function sinkName(sink: Pick<SinkConfig, 'type' | 'name'>): string {
  return sink.name ?? sink.type
}

import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { z } from 'zod'
import { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, DEFAULT_MAX_INPUT_LENGTH } from './defaults.js'
import { parseDurationMillis } from './duration.js'
import { zAuthConfig, zLimitsConfig, zRedactionConfig } from './security-config.js'
import { sinkName, zSinkConfig } from './sink-config.js'

export { SINK_TYPES, sinkName, zSinkConfig, type SinkConfig } from './sink-config.js'

/** Major version of the config file format this build understands. */
export const CONFIG_VERSION = 1

export { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, DEFAULT_MAX_INPUT_LENGTH } from './defaults.js'

/** Which store a `store.url` names, parsed once with the config (see {@link parseStoreUrl}). */
export type StoreLocation =
  | { readonly dialect: 'sqlite'; readonly path: string }
  | { readonly dialect: 'postgres'; readonly url: string }

/**
 * Parses a store URL: `sqlite` (`<dataDir>/audit.sqlite`), `sqlite:/path` (`sqlite:///path` too; a relative
 * path is taken from the working directory), `sqlite::memory:`, or `postgres://…` / `postgresql://…`.
 */
export function parseStoreUrl(
  url: string,
  dataDir: string,
): { ok: true; value: StoreLocation } | { ok: false; reason: string } {
  if (url === 'sqlite' || url.startsWith('sqlite:')) {
    const rest = url === 'sqlite' ? '' : url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '')
    const path =
      rest === ''
        ? join(dataDir, 'audit.sqlite')
        : rest === ':memory:' || isAbsolute(rest)
          ? rest
          : resolve(rest)
    return { ok: true, value: { dialect: 'sqlite', path } }
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return { ok: true, value: { dialect: 'postgres', url } }
  }
  return {
    ok: false,
    reason: `unknown store URL ${JSON.stringify(url)} (expected sqlite, sqlite:/path or postgres://…)`,
  }
}

const zHostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:8190')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65_535, {
    error: (issue) => `port out of range 0..65535 in ${JSON.stringify(issue.input)}`,
  })

/** The whole configuration: file, environment overrides and CLI flags all pass through this one schema. */
const zConfigFile = z.object({
  /** Config file format version; an unknown major is refused. */
  version: z.literal(CONFIG_VERSION).default(CONFIG_VERSION),
  comfyui: z
    .object({
      /** Base URL of the ComfyUI server the gateway sits in front of. */
      url: z.string().url('expected a URL such as http://127.0.0.1:8188').default('http://127.0.0.1:8188'),
      /** Timeout for one request to ComfyUI, in milliseconds. */
      timeoutMillis: z.number().int().positive().default(300_000),
      /** ComfyUI runs with `--multi-user`: the gateway sets `comfy-user` from the identity (default false). */
      multiUser: z.boolean().default(false),
    })
    .prefault({}),
  /** Where the gateway listens. */
  listen: zHostPort.default(`${DEFAULT_LISTEN_HOST}:${DEFAULT_LISTEN_PORT}`),
  /** Data directory: SQLite file, the ledger key, sink spools. */
  data: z.string().min(1).default('./data'),
  /** Name of this gateway's log (one per gateway when several share a database). */
  origin: z.string().min(1).optional(),
  store: z
    .object({
      /** `sqlite` (default: `<data>/audit.sqlite`), `sqlite:/path/file.sqlite`, or `postgres://user@host:port/db`. */
      url: z
        .string()
        .min(1)
        .refine((v) => parseStoreUrl(v, '.').ok, {
          error: (issue) => {
            const parsed = parseStoreUrl(String(issue.input), '.')
            return parsed.ok ? undefined : parsed.reason
          },
        })
        .default('sqlite'),
      /** SQLite: how long a commit waits for another process's lock before it fails and is retried, ms. */
      busyTimeoutMillis: z.number().int().min(0).default(5000),
      /**
       * While the database refuses commits (locked, restarting, disk full) acknowledged events wait in memory,
       * then in a write-ahead spool (`<data>/store-spool`), and commit in order once it is back.
       */
      outage: z
        .object({
          /** Events held in memory before spilling to the spool. */
          maxQueuedEvents: z.number().int().min(1).default(10_000),
          /** Quota of the store's write-ahead spool, bytes (default 64 MiB). */
          spoolMaxBytes: z
            .number()
            .int()
            .min(1)
            .default(64 * 1024 * 1024),
          /**
           * Past the quota: `refuse` (default) answers new prompts 503 rather than run them unrecorded;
           * `accept` runs them and keeps their events in memory (reported as over quota all along).
           */
          whenFull: z.enum(['refuse', 'accept']).default('refuse'),
        })
        .prefault({}),
    })
    .prefault({}),
  capture: z
    .object({
      /** How often GPU memory is sampled while a node runs (at most ~10/s). */
      gpuSampleIntervalMillis: z.number().int().min(100).default(100),
      /** Input strings longer than this are stored truncated, with their length and SHA-256. */
      maxInputLength: z.number().int().positive().default(DEFAULT_MAX_INPUT_LENGTH),
      /**
       * Longest time one environment snapshot (`/system_stats`, custom node packs) serves new sessions, ms. It is
       * also taken anew whenever ComfyUI comes back after being unreachable or reports a different system.
       */
      environmentTtlMillis: z.number().int().min(0).default(60_000),
    })
    .prefault({}),
  /** Milliseconds to let in-flight requests finish on SIGTERM. */
  drainMillis: z.number().int().min(0).default(10_000),
  ledger: z
    .object({
      /** Sign a checkpoint after this many new events. */
      checkpointEvery: z.number().int().positive().default(1000),
      /** Sign a checkpoint this often while there are new events, ms (0 turns the timer off). */
      checkpointIntervalMillis: z.number().int().min(0).default(60_000),
      /** Append every signed checkpoint to this file (off the machine, e.g. a mounted share). */
      publishFile: z.string().min(1).optional(),
      /** POST every signed checkpoint to this URL. */
      publishWebhook: z.string().url().optional(),
    })
    .prefault({}),
  retention: z
    .object({
      /**
       * Keep event payloads this long: days as a number, or the duration syntax of `prune` (`90d`, `12w`). Older
       * payloads (store and JSONL files) are removed; the ledger keeps their leaf hashes. Unset: keep forever.
       */
      days: z
        .union([
          z.number().positive(),
          z.string().refine((v) => parseDurationMillis(v).ok, 'expected days or a duration such as 90d'),
        ])
        .optional(),
      /** How often the gateway applies retention, ms. */
      checkIntervalMillis: z
        .number()
        .int()
        .min(60_000)
        .default(6 * 3_600_000),
    })
    .prefault({}),
  provenance: z
    .object({
      /** Hash model files and outputs (needs file access to ComfyUI's folders, or /view for outputs). */
      enabled: z.boolean().default(true),
      /** `[ComfyUI's path prefix, this host's prefix]` pairs when the gateway runs on another host. */
      pathMap: z.array(z.tuple([z.string(), z.string()])).default([]),
      /** ComfyUI's output/temp/input folders when readable here (else outputs are streamed from /view). */
      localDirs: z
        .object({ output: z.string().optional(), temp: z.string().optional(), input: z.string().optional() })
        .default({}),
      /** Worker threads that hash files. */
      workers: z.number().int().min(1).max(16).default(2),
    })
    .prefault({}),
  /**
   * Where derived records are shipped besides the store (default none). Each sink has its own bounded queue
   * and disk spool under `<data>/spool/<name>`; several may be configured, of one type or many.
   */
  sinks: z
    .array(zSinkConfig)
    .default([])
    .superRefine((sinks, ctx) => {
      const seen = new Set<string>()
      sinks.forEach((sink, i) => {
        const name = sinkName(sink)
        if (seen.has(name)) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `duplicate sink name ${JSON.stringify(name)}: give each sink of one type its own name`,
          })
        }
        seen.add(name)
      })
    }),
  /** Prometheus metrics at `/_audit/metrics`. With neither a token nor `open`, the route answers 404. */
  metrics: z
    .object({
      /** Bearer token a scraper must send (default none); take it from `${ENV}` or COMFY_AUDIT_METRICS_TOKEN. */
      token: z.string().min(1).optional(),
      /** Serve metrics without a token, e.g. when listening on a private interface only (default false). */
      open: z.boolean().default(false),
    })
    .strict()
    .prefault({}),
  // --- identity and hardening (src/config/security-config.ts) ---
  /** Authentication, sessions, trusted proxies and what artists see. */
  auth: zAuthConfig,
  /** What is removed from prompts, extra_data, workflows and errors before anything is stored or sent. */
  redaction: zRedactionConfig,
  /** Body size, JSON depth, WebSocket frame size and prompt rate limits. */
  limits: zLimitsConfig,
})

/**
 * The whole configuration as parsed: besides what the file holds, `store.location` is `store.url` parsed
 * (not a key of the file: it is derived, so a file cannot set it apart from the URL).
 */
export const zConfig = zConfigFile.transform((config, ctx) => {
  const location = parseStoreUrl(config.store.url, config.data)
  // Unreachable after the refine on `store.url`, which reports a bad URL together with every other problem.
  if (!location.ok) {
    ctx.issues.push({
      code: 'custom',
      path: ['store', 'url'],
      message: location.reason,
      input: config.store.url,
    })
    return z.NEVER
  }
  return { ...config, store: { ...config.store, location: location.value } }
})
export type Config = z.infer<typeof zConfig>
export type ConfigInput = z.input<typeof zConfig>

export type ConfigResult = { ok: true; value: Readonly<Config> } | { ok: false; problems: string[] }

/** Replaces `${NAME}` in string values with the environment's value, so secrets stay out of config files. */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, problems: string[], path: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name]
      if (v === undefined) problems.push(`${path || '(root)'}: environment variable ${name} is not set`)
      return v ?? ''
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, problems, `${path}[${i}]`))
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env, problems, path ? `${path}.${k}` : k)]),
    )
  }
  return value
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    if (!node[key] || typeof node[key] !== 'object') node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1]!] = value
}

/** Environment variables that override the file (and are overridden by CLI flags). */
export const ENV_OVERRIDES: Record<string, string[]> = {
  COMFY_AUDIT_COMFYUI: ['comfyui', 'url'],
  COMFY_AUDIT_LISTEN: ['listen'],
  COMFY_AUDIT_DATA: ['data'],
  COMFY_AUDIT_STORE: ['store', 'url'],
  COMFY_AUDIT_ORIGIN: ['origin'],
  COMFY_AUDIT_METRICS_TOKEN: ['metrics', 'token'],
}

export interface LoadConfigOptions {
  /** Path of a JSON config file (also `COMFY_AUDIT_CONFIG`). */
  file?: string
  env?: NodeJS.ProcessEnv
  /** CLI flags, as dotted paths (`{ 'comfyui.url': '...' }`); undefined values are ignored. */
  flags?: Record<string, unknown>
}

interface SchemaDef {
  type?: string
  shape?: Record<string, { _zod?: { def?: SchemaDef } }>
  innerType?: { _zod?: { def?: SchemaDef } }
  in?: { _zod?: { def?: SchemaDef } }
  element?: { _zod?: { def?: SchemaDef } }
  options?: readonly { _zod?: { def?: SchemaDef } }[]
  catchall?: unknown
}

/** Walks a Zod 4 schema beside a raw value, reporting object keys the schema does not declare. */
function unknownKeys(schema: unknown, value: unknown, path: string[], problems: string[]): void {
  let def = (schema as { _zod?: { def?: SchemaDef } })?._zod?.def
  // default / optional / nullable / prefault / readonly wrap the real schema; a pipe's input is what is read.
  while (def && (def.innerType || (def.type === 'pipe' && def.in))) {
    def = (def.innerType ?? def.in)?._zod?.def
  }
  if (!def || value === null || typeof value !== 'object') return
  if (def.type === 'object' && def.shape && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      const member = def.shape[key]
      if (member) unknownKeys(member, v, [...path, key], problems)
      else if (def.catchall === undefined) problems.push(`${[...path, key].join('.')}: unknown config key`)
    }
  } else if (def.type === 'array' && def.element && Array.isArray(value)) {
    value.forEach((v, i) => unknownKeys(def.element, v, [...path, String(i)], problems))
  }
  // Unions (sinks by type, auth credentials) are strict objects already, so Zod names their strays itself.
}

/**
 * Loads the configuration once: file, then environment, then CLI flags, validated by one schema. Every
 * problem is reported at once with its path. The result is frozen.
 */
export function loadConfig(options: LoadConfigOptions = {}): ConfigResult {
  const env = options.env ?? process.env
  const problems: string[] = []
  let raw: Record<string, unknown> = {}
  const file = options.file ?? env.COMFY_AUDIT_CONFIG
  if (file) {
    let text: string | undefined
    try {
      text = readFileSync(resolve(file), 'utf8')
    } catch (err) {
      problems.push(
        `config file ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      )
    }
    if (text !== undefined) {
      try {
        const parsed: unknown = JSON.parse(text)
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
          raw = parsed as Record<string, unknown>
        else problems.push(`config file ${file}: expected a JSON object`)
      } catch (err) {
        problems.push(`config file ${file}: invalid JSON (${(err as Error).message})`)
      }
    }
  }
  if (typeof raw.version === 'number' && raw.version !== CONFIG_VERSION) {
    problems.push(`version: this build reads config version ${CONFIG_VERSION}, the file says ${raw.version}`)
    return { ok: false, problems }
  }
  raw = substituteEnv(raw, env, problems, '') as Record<string, unknown>
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const v = env[name]
    if (v !== undefined && v !== '') setPath(raw, path, v)
  }
  for (const [dotted, v] of Object.entries(options.flags ?? {})) {
    if (v !== undefined) setPath(raw, dotted.split('.'), v)
  }
  // Non-strict objects drop unknown keys silently, so a misspelt key (`store.urll`) would leave the default in
  // force unnoticed: every key the schema does not know is a problem, named by its path.
  unknownKeys(zConfig, raw, [], problems)
  const parsed = zConfig.safeParse(raw)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(`${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    }
  }
  if (problems.length > 0 || !parsed.success) return { ok: false, problems }
  const value = parsed.data
  if (!value.origin) value.origin = `comfy-audit/${hostname()}`
  return { ok: true, value: deepFreeze(value) }
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/** Splits `HOST:PORT` (IPv6 in brackets). */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text)
  if (!m) throw new Error(`listen: expected HOST:PORT, got ${JSON.stringify(text)}`)
  return { host: m[1]!, port: Number(m[2]) }
}

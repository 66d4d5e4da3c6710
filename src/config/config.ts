import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import { z } from 'zod'

/** Major version of the config file format this build understands. */
export const CONFIG_VERSION = 1

const zHostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:8190')

/** The whole configuration: file, environment overrides and CLI flags all pass through this one schema. */
export const zConfig = z.object({
  /** Config file format version; an unknown major is refused. */
  version: z.literal(CONFIG_VERSION).default(CONFIG_VERSION),
  comfyui: z
    .object({
      /** Base URL of the ComfyUI server the gateway sits in front of. */
      url: z.string().url('expected a URL such as http://127.0.0.1:8188').default('http://127.0.0.1:8188'),
      /** Timeout for one request to ComfyUI, in milliseconds. */
      timeoutMillis: z.number().int().positive().default(300_000),
    })
    .prefault({}),
  /** Where the gateway listens. */
  listen: zHostPort.default('127.0.0.1:8190'),
  /** Data directory: SQLite file, the ledger key, sink spools. */
  data: z.string().min(1).default('./data'),
  /** Name of this gateway's log (one per gateway when several share a database). */
  origin: z.string().min(1).optional(),
  store: z
    .object({
      /** `sqlite` (default: `<data>/audit.sqlite`), `sqlite:/path/file.sqlite`, or `postgres://user@host:port/db`. */
      url: z.string().min(1).default('sqlite'),
    })
    .prefault({}),
  capture: z
    .object({
      /** How often GPU memory is sampled while a node runs (at most ~10/s). */
      gpuSampleIntervalMillis: z.number().int().min(100).default(100),
      /** Input strings longer than this are stored truncated, with their length and SHA-256. */
      maxInputLength: z.number().int().positive().default(4096),
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
}

export interface LoadConfigOptions {
  /** Path of a JSON config file (also `COMFY_AUDIT_CONFIG`). */
  file?: string
  env?: NodeJS.ProcessEnv
  /** CLI flags, as dotted paths (`{ 'comfyui.url': '...' }`); undefined values are ignored. */
  flags?: Record<string, unknown>
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

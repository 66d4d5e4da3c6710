/**
 * Shared pieces of the benchmark: percentiles, a gateway child process, /proc readings, small HTTP and
 * WebSocket clients. Everything runs on loopback and every wait has a deadline.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'

/** Repository root (bench/ is one level below). */
export const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')

/** Nearest-rank percentile of ascending `sorted` values; `p` in [0, 100]. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

/** Rounds for the report (figures are printed and stored with this precision). */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** Rejects with `message` after `ms` unless `promise` settles first. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (after ${ms} ms)`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function newestMtimeMs(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtimeMs(path))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts'))
      newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/** What {@link ensureBuild} did. */
export interface BuildOutcome {
  readonly built: boolean
  /** tsc's complaints when it exited non-zero (it still emits JavaScript then). */
  readonly problems: string | null
}

/**
 * Runs `tsc -p tsconfig.build.json` when dist/cli/main.js is missing or older than a source file, as
 * `npm run build` would. Throws only when no CLI comes out of it.
 */
export function ensureBuild(log: (line: string) => void): BuildOutcome {
  const main = join(ROOT, 'dist/cli/main.js')
  if (existsSync(main) && statSync(main).mtimeMs >= newestMtimeMs(join(ROOT, 'src')))
    return { built: false, problems: null }
  log('building dist/ (tsc -p tsconfig.build.json) ...')
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc')
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
  if (!existsSync(main))
    throw new Error(`build produced no dist/cli/main.js:\n${result.stdout}${result.stderr}`)
  const problems = result.status === 0 ? null : `${result.stdout}${result.stderr}`.trim()
  if (problems)
    log(
      `tsc reported problems (continuing with the emitted JavaScript):\n${problems.split('\n').slice(0, 20).join('\n')}`,
    )
  return { built: true, problems }
}

/** VmRSS / VmHWM of a process, in KiB (null when the process or the field is gone). */
export function readProcMemory(pid: number): { rssKiB: number; hwmKiB: number } | null {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return null
  }
  const field = (name: string): number | null => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)
    return m ? Number(m[1]) : null
  }
  const rss = field('VmRSS')
  const hwm = field('VmHWM')
  return rss === null || hwm === null ? null : { rssKiB: rss, hwmKiB: hwm }
}

/** A server started from the built CLI in its own process. */
export interface ChildServer {
  readonly url: string
  readonly pid: number
  /** Everything it wrote to stderr so far (for reports when something breaks). */
  stderr(): string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>
}

/** A gateway child process. */
export type GatewayProcess = ChildServer

/**
 * Spawns `node dist/cli/main.js ...args` and resolves once `ready` finds its URL in what it printed
 * (`ready` returns the URL, null to keep waiting, or an Error to give up).
 */
async function startChildServer(
  name: string,
  args: readonly string[],
  ready: (stdout: string) => string | null | Error,
  timeoutMs: number,
  nodeArgs: readonly string[] = [],
): Promise<ChildServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeArgs, join(ROOT, 'dist/cli/main.js'), ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // The benchmark's own settings only: no config file or overrides from the caller's environment.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('COMFY_AUDIT_'))),
    },
  )
  let out = ''
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err = (err + chunk).slice(-20_000)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = await withTimeout(
    new Promise<string>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        if (out.length < 100_000) out += chunk
        const r = ready(out)
        if (r instanceof Error) reject(new Error(`${name}: ${r.message}\n${out}${err}`))
        else if (r !== null) resolve(r)
      })
      child.once('exit', (code) =>
        reject(new Error(`${name} exited (${code}) before it was ready:\n${out}${err}`)),
      )
      child.once('error', reject)
    }),
    timeoutMs,
    `${name} did not start`,
  ).catch((e: unknown) => {
    child.kill('SIGKILL')
    throw e
  })
  let stopping: Promise<void> | null = null
  return {
    url,
    pid: child.pid!,
    stderr: () => err,
    stop(graceMs = 15_000) {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
        await exited
        clearTimeout(timer)
      })()
      return stopping
    },
  }
}

/**
 * Starts the ComfyUI stand-in (`createSimServer`, through `comfy-audit sim`) in its own process, as ComfyUI
 * would be, so that it does not share an event loop with the clients measuring it.
 */
export function startSimProcess(dataDir: string, speed: number): Promise<ChildServer> {
  return startChildServer(
    'stand-in',
    ['sim', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, '--speed', String(speed)],
    (out) => /listening on (http:\/\/\S+)/.exec(out)?.[1] ?? null,
    30_000,
  )
}

/**
 * Starts `node dist/cli/main.js serve --comfyui URL --listen 127.0.0.1:0 --data DIR` and resolves once it
 * listens and has found ComfyUI answering.
 */
export function startGatewayProcess(
  comfyuiUrl: string,
  dataDir: string,
  /** Options for node itself, e.g. `--cpu-prof` to profile the gateway. */
  nodeArgs: readonly string[] = [],
): Promise<GatewayProcess> {
  // Every benchmark client is the same local person: lift the per-person prompt rate limit for this run.
  mkdirSync(dataDir, { recursive: true })
  const configFile = join(dataDir, 'bench-config.json')
  writeFileSync(configFile, JSON.stringify({ limits: { promptsPerMinute: 0 } }))
  return startChildServer(
    'gateway',
    ['serve', '--comfyui', comfyuiUrl, '--listen', '127.0.0.1:0', '--data', dataDir, '--config', configFile],
    (out) => {
      if (/does not answer/.test(out)) return new Error(`cannot reach ComfyUI at ${comfyuiUrl}`)
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1]
      return url !== undefined && /ComfyUI answers/.test(out) ? url : null
    },
    30_000,
    nodeArgs,
  )
}

/** One HTTP exchange; resolves with the status and the whole body. */
export function request(
  agent: http.Agent,
  url: string,
  method = 'GET',
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {}
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = Buffer.byteLength(body)
    }
    const req = http.request(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** POSTs a prompt; resolves with its id or throws with ComfyUI's answer. */
export async function submitPrompt(
  agent: http.Agent,
  baseUrl: string,
  prompt: Record<string, unknown>,
  clientId: string,
): Promise<string> {
  const res = await request(
    agent,
    `${baseUrl}/prompt`,
    'POST',
    JSON.stringify({ prompt, client_id: clientId }),
  )
  let promptId: unknown
  try {
    promptId = (JSON.parse(res.body) as { prompt_id?: unknown }).prompt_id
  } catch {
    promptId = undefined
  }
  if (res.status !== 200 || typeof promptId !== 'string') {
    throw new Error(`POST ${baseUrl}/prompt answered ${res.status}: ${res.body.slice(0, 500)}`)
  }
  return promptId
}

/** A frame as the client saw it, with its arrival time (ms, performance.now()). */
export interface ArrivedFrame {
  readonly type: string
  readonly data: Record<string, unknown>
  readonly atMs: number
}

/**
 * A WebSocket client for one client id that hands every JSON frame to `onFrame` and can wait for the end
 * of a prompt (`execution_success`, `execution_error` or `execution_interrupted` naming it).
 */
export class BenchClient {
  readonly #ws: WebSocket
  readonly #ends = new Map<string, { resolve: (f: ArrivedFrame) => void }>()
  readonly #ended = new Map<string, ArrivedFrame>()
  readonly opened: Promise<void>
  readonly closed: Promise<void>
  readonly clientId: string

  constructor(baseUrl: string, clientId: string, onFrame?: (f: ArrivedFrame) => void) {
    this.clientId = clientId
    this.#ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/ws?clientId=${encodeURIComponent(clientId)}`)
    this.opened = new Promise((resolve, reject) => {
      this.#ws.once('open', () => resolve())
      this.#ws.once('error', reject)
    })
    this.closed = new Promise((resolve) => this.#ws.once('close', () => resolve()))
    this.#ws.on('message', (raw: Buffer, isBinary: boolean) => {
      const atMs = performance.now()
      if (isBinary) return
      let msg: { type?: unknown; data?: unknown }
      try {
        msg = JSON.parse(raw.toString('utf8')) as { type?: unknown; data?: unknown }
      } catch {
        // ComfyUI's frames can hold NaN, which JSON.parse refuses; none of the frames counted here do.
        return
      }
      const data = (msg.data && typeof msg.data === 'object' ? msg.data : {}) as Record<string, unknown>
      const frame: ArrivedFrame = { type: String(msg.type), data, atMs }
      onFrame?.(frame)
      if (
        (frame.type === 'execution_success' ||
          frame.type === 'execution_error' ||
          frame.type === 'execution_interrupted') &&
        typeof data.prompt_id === 'string'
      ) {
        this.#ended.set(data.prompt_id, frame)
        this.#ends.get(data.prompt_id)?.resolve(frame)
      }
    })
  }

  /** Resolves with the frame that ended `promptId` (already seen or future). */
  ended(promptId: string, timeoutMs: number): Promise<ArrivedFrame> {
    const seen = this.#ended.get(promptId)
    if (seen) return Promise.resolve(seen)
    return withTimeout(
      new Promise<ArrivedFrame>((resolve) => this.#ends.set(promptId, { resolve })),
      timeoutMs,
      `prompt ${promptId} did not finish`,
    ).finally(() => this.#ends.delete(promptId))
  }

  async close(): Promise<void> {
    if (this.#ws.readyState === WebSocket.CLOSED) return
    this.#ws.close()
    await withTimeout(this.closed, 5000, 'socket did not close').catch(() => this.#ws.terminate())
  }
}

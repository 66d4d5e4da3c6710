/**
 * Prompt bodies redacted on a worker thread (issue 9 class 5). Redaction is linear, but a 10 MB prompt still
 * takes a second or more; on the gateway's own thread that second would stall every other client's request.
 * Small bodies are analysed inline (a message round trip would cost more than the work).
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { parseJson } from '../audit/json.js'
import { isJsonObject, type PromptGraph } from '../comfyui/schemas.js'
import { analyzePromptBody, type PromptBodyAnalysis } from '../capture/prompt-analysis.js'
import type { RedactionConfig } from '../config/security-config.js'
import { createRedactor } from './redaction.js'

/** Options of {@link createOffThreadPromptAnalyzer}. */
interface OffThreadAnalyzerOptions {
  /** Bodies at least this large go to the worker, bytes (default 256 KiB). */
  readonly minBytes?: number
}

/** Analyses prompt bodies: inline when small, on a worker thread when large. */
export interface OffThreadPromptAnalyzer {
  analyze(body: Buffer, options: { maxTextBytes?: number }): Promise<PromptBodyAnalysis>
  /** Stops the worker (idempotent); later large bodies start a new one. */
  close(): Promise<void>
}

/** The compiled `.js` in production; from TypeScript sources (tests, tsx) through tsx's loader. */
function startWorker(redaction: RedactionConfig): Worker {
  const fromSources = import.meta.url.endsWith('.ts')
  const entry = new URL(fromSources ? './redaction-worker.ts' : './redaction-worker.js', import.meta.url)
  const workerData = { redaction }
  if (!fromSources) return new Worker(entry, { workerData })
  const tsx = pathToFileURL(
    createRequire(import.meta.url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(code, { eval: true, workerData })
}

/**
 * The worker's analysis read back with the spelling-preserving parser (`1.0` stays `1.0`), and `graph` and
 * `workflow` pointed back into `prompt` and `extra_data` as {@link analyzePrompt} returns them. Null when the
 * text does not read back (then the body is analysed inline).
 */
function fromWorker(json: string, hasGraph: boolean): PromptBodyAnalysis | null {
  const parsed = parseJson(json)
  if (!parsed.ok || !isJsonObject(parsed.value)) return null
  // cast-allowed: the worker wrote this text from a PromptBodyAnalysis
  const value = parsed.value as unknown as PromptBodyAnalysis
  if (!value.ok) return value
  const extra = value.extra_data
  const workflow =
    isJsonObject(extra) && isJsonObject(extra.extra_pnginfo) ? (extra.extra_pnginfo.workflow ?? null) : null
  // cast-allowed: hasGraph says the worker's schema check accepted this prompt as a graph
  const graph = hasGraph ? (value.prompt as unknown as PromptGraph) : null
  return { ...value, graph, workflow }
}

type Reply =
  | { readonly id: number; readonly ok: true; readonly json: string; readonly hasGraph: boolean }
  | { readonly id: number; readonly ok: false; readonly error: string }

/**
 * Builds the analyser capture's `analyzePromptBody` option takes. If the worker fails, the body is analysed
 * inline instead, still under the policy's time budget, so nothing is ever stored unredacted.
 *
 * @example
 * createCapture({ ..., analyzePromptBody: createOffThreadPromptAnalyzer(config.redaction).analyze })
 */
export function createOffThreadPromptAnalyzer(
  redaction: RedactionConfig,
  options: OffThreadAnalyzerOptions = {},
): OffThreadPromptAnalyzer {
  const minBytes = options.minBytes ?? 256 * 1024
  const inline = createRedactor(redaction)
  let worker: Worker | null = null
  let nextId = 1
  const waiting = new Map<number, (reply: Reply | null) => void>()

  const ensure = (): Worker => {
    if (worker) return worker
    const w = startWorker(redaction)
    w.unref()
    w.on('message', (reply: Reply) => {
      const done = waiting.get(reply.id)
      waiting.delete(reply.id)
      done?.(reply)
    })
    const failAll = (): void => {
      for (const done of waiting.values()) done(null)
      waiting.clear()
      worker = null
    }
    w.on('error', failAll)
    w.on('exit', failAll)
    worker = w
    return w
  }

  const analyzeInline = (body: Buffer, maxTextBytes: number | undefined): PromptBodyAnalysis =>
    analyzePromptBody(body, { redact: inline, ...(maxTextBytes !== undefined ? { maxTextBytes } : {}) })

  return {
    async analyze(body, { maxTextBytes }) {
      if (body.length < minBytes) return analyzeInline(body, maxTextBytes)
      const reply = await new Promise<Reply | null>((resolve) => {
        const id = nextId++
        waiting.set(id, resolve)
        try {
          ensure().postMessage({ id, body, ...(maxTextBytes !== undefined ? { maxTextBytes } : {}) })
        } catch {
          waiting.delete(id)
          resolve(null)
        }
      })
      const value = reply?.ok ? fromWorker(reply.json, reply.hasGraph) : null
      return value ?? analyzeInline(body, maxTextBytes)
    },
    async close() {
      const w = worker
      worker = null
      if (w) await w.terminate()
    },
  }
}

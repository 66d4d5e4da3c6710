/**
 * A port of tools/comfyui-device/record.py, the client that recorded fixtures/comfyui-0.8.0/trace.jsonl:
 * it drives a ComfyUI (or the stand-in, or the gateway in front of either) through the same scenarios with
 * the same requests and waits, and records every WebSocket frame each client receives, every HTTP exchange
 * and a `/system_stats` poll, in the same row format. Compare the result with `compareTraces`.
 *
 * The scenario's fixed pauses (0.5 s after connecting, 0.3 s before reading history, 1 s before an interrupt
 * or a reconnect, the 0.2 s history polls, the 0.1 s VRAM poll) are part of the script: they shape what the
 * server sees. Everything else waits on the event itself.
 *
 * Request bodies and the feature-flags frame are byte for byte what record.py sends (json.dumps spacing,
 * `1.0` kept as a float). Where this port differs, it does not change what a server is asked: trace.jsonl
 * lines are compact JSON, numbers in recorded answers read back as JS numbers (`1.0` as `1`), `saved_as`
 * is recorded even without `outDir`, and error texts (`ws_error`, `vram_error`, a failed scenario's
 * `error`) are JS messages and stacks, not Python reprs and tracebacks.
 */
import { createHash, randomUUID } from 'node:crypto'
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleepMillis } from 'node:timers/promises'
import { Agent, fetch } from 'undici'
import WebSocket from 'ws'
import type { Json, JsonObject, Wire, WireObject } from './python-values.js'
import {
  PyError,
  dumps,
  eq,
  float,
  get,
  isDict,
  isWireObject,
  item,
  iterate,
  or,
  py,
  str,
  toJson,
} from './python-values.js'
import type { TraceRow } from './trace-row.js'

export type { TraceRow } from './trace-row.js'

/** Options of `recordScenarios`. */
export interface RecordOptions {
  /** Also run `sd15_model_workflow` (record.py `--with-model`). Default false. */
  withModel?: boolean
  /** Where to write `trace.jsonl` (row by row, as recorded) and the bodies saved as files. Default: nowhere. */
  outDir?: string
  /**
   * How many times faster than real time the server runs its nodes (the stand-in's `speed`). The script's
   * fixed pauses (not the 0.1 s VRAM poll, nor the timeouts) are divided by it so that they fall at the same
   * point of a run. Default 1. Up to about 10 the stand-in still matches the recording; beyond that the
   * five prompts of `queue_and_clients` can finish before they are all queued, which changes their order.
   */
  speedHint?: number
  /** Headers sent with every HTTP request and every WebSocket upgrade (e.g. the gateway's credentials). */
  headers?: Record<string, string>
  /**
   * The WebSocket endpoint; `clientId` is appended as a query parameter.
   * Default: `baseUrl` with `ws:`/`wss:` and `/ws`.
   */
  wsUrl?: string
}

type RowFields = Record<string, Json>
type Predicate = (frame: Json) => boolean

/** The HTTP answer as record.py's `http()` returns it: parsed JSON, or `undefined` for a raw body. */
interface HttpAnswer {
  status: number
  json: Json | undefined
}

// record.py sends `json.dumps(ff)`: keep its exact text, since a proxy may pass it on byte for byte.
const FEATURE_FLAGS: JsonObject = { type: 'feature_flags', data: { supports_preview_metadata: true } }
const FEATURE_FLAGS_TEXT = '{"type": "feature_flags", "data": {"supports_preview_metadata": true}}'
// aiohttp's ClientTimeout(total=300).
const REQUEST_TIMEOUT_MILLIS = 300_000

const nowMillis = (): number => performance.timeOrigin + performance.now()
const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits
const hex8 = (): string => randomUUID().replaceAll('-', '').slice(0, 8)
const hex12 = (): string => randomUUID().replaceAll('-', '').slice(0, 12)

/** The shared state of one recording: the clock, the current scenario and the rows. */
interface Recording {
  scenario: string
  rec(kind: string, fields?: RowFields): void
}

/**
 * Runs record.py's scenarios against a ComfyUI-compatible server at `baseUrl` and returns the trace rows.
 * Throws only where record.py would stop (a failed startup request); a failing scenario is recorded as
 * `scenario_end` with `ok: false` and the run goes on.
 * @example
 * const rows = await recordScenarios('http://127.0.0.1:8188', { withModel: true, outDir: '/tmp/rec' })
 * const { lines, matched, total } = compareTraces(reference, rows)
 */
export async function recordScenarios(baseUrl: string, options: RecordOptions = {}): Promise<TraceRow[]> {
  const base = baseUrl.replace(/\/+$/, '')
  const outDir = options.outDir
  const speed = options.speedHint ?? 1
  if (!(speed > 0)) throw new Error(`speedHint must be a positive number, got ${speed}`)
  const headers = options.headers ?? {}
  const wsBase = options.wsUrl ?? `${base.replace(/^http/, 'ws')}/ws`
  const pause = (seconds: number, signal?: AbortSignal): Promise<void> =>
    sleepMillis((seconds * 1000) / speed, undefined, { signal })

  if (outDir !== undefined) mkdirSync(outDir, { recursive: true })
  const log = outDir === undefined ? null : openSync(join(outDir, 'trace.jsonl'), 'w')
  const t0 = nowMillis()
  const rows: TraceRow[] = []
  const recording: Recording = {
    scenario: 'startup',
    rec(kind, fields = {}) {
      const t = nowMillis()
      const row: TraceRow = {
        t_ms: round(t - t0, 2),
        wall: round(t / 1000, 4),
        scenario: this.scenario,
        kind,
      }
      Object.assign(row, fields)
      rows.push(row)
      if (log !== null) writeSync(log, JSON.stringify(row) + '\n')
    },
  }
  const rec = recording.rec.bind(recording)
  const agent = new Agent()
  const clients: WsClient[] = []

  async function http(
    method: string,
    path: string,
    body: Wire = null,
    saveAs?: string,
    quiet = false,
  ): Promise<HttpAnswer> {
    const t = nowMillis()
    const requestHeaders: Record<string, string> = { ...headers }
    if (body !== null) requestHeaders['Content-Type'] = 'application/json'
    const r = await fetch(base + path, {
      method,
      headers: requestHeaders,
      // aiohttp's `json=body` sends json.dumps(body): keep its bytes (`1.0` stays a float upstream).
      body: body === null ? undefined : dumps(body),
      dispatcher: agent,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MILLIS),
    })
    const raw = Buffer.from(await r.arrayBuffer())
    const ms = round(nowMillis() - t, 2)
    const ctype = r.headers.get('Content-Type') ?? ''
    let parsed: Json = null
    if (ctype.includes('json')) {
      try {
        parsed = JSON.parse(raw.toString('utf8')) as Json
      } catch {
        parsed = null
      }
    }
    const row: RowFields = {
      method,
      path,
      request: toJson(body),
      status: r.status,
      ms,
      content_type: ctype,
      bytes: raw.length,
    }
    if (saveAs !== undefined) {
      if (outDir !== undefined) writeFileSync(join(outDir, saveAs), raw)
      row.saved_as = saveAs
    } else if (parsed !== null) {
      row.response = parsed
    } else {
      row.response_text = decodeReplacing(raw.subarray(0, 2000))
    }
    if (!quiet) rec('http', row)
    return { status: r.status, json: parsed !== null ? parsed : undefined }
  }

  const newClient = (name: string, clientId: string): WsClient => {
    const c = new WsClient(
      recording,
      name,
      clientId,
      `${wsBase}${wsBase.includes('?') ? '&' : '?'}clientId=${clientId}`,
      headers,
    )
    clients.push(c)
    return c
  }

  async function submit(
    prompt: WireObject,
    clientId: string | null,
    extra: WireObject | null = null,
    fields: WireObject = {},
  ): Promise<HttpAnswer> {
    const body: WireObject = { prompt }
    if (clientId !== null) body.client_id = clientId
    const ed: WireObject = { extra_pnginfo: { workflow: uiWorkflow(prompt) } }
    if (extra) Object.assign(ed, extra)
    body.extra_data = ed
    Object.assign(body, fields)
    return http('POST', '/prompt', body)
  }

  async function scenario(name: string, run: () => Promise<void>): Promise<void> {
    recording.scenario = name
    rec('scenario_start')
    try {
      await run()
      rec('scenario_end', { ok: true })
    } catch (e) {
      rec('scenario_end', { ok: false, error: e instanceof Error ? (e.stack ?? String(e)) : String(e) })
    }
  }

  /** Polls `/history/{pid}` quietly (as record.py does) until it names the prompt, then records it once. */
  async function pollHistory(pid: Json, tries: number): Promise<void> {
    for (let i = 0; i < tries; i++) {
      const h = await http('GET', `/history/${str(py(pid))}`, null, undefined, true)
      if (isDict(h.json) && typeof pid === 'string' && Object.hasOwn(h.json, pid)) break
      await pause(0.2)
    }
    await http('GET', `/history/${str(py(pid))}`)
  }

  const vram = new VramPoller(
    recording,
    () =>
      fetch(base + '/system_stats', {
        headers,
        dispatcher: agent,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MILLIS),
      }),
    // Not scaled by speedHint: the poll only samples the server, and faster polls would load it.
    (signal) => sleepMillis(100, undefined, { signal }),
  )

  try {
    await http('GET', '/system_stats')
    await http('GET', '/features')
    await http('GET', '/queue')
    await http('GET', '/prompt')
    await http('GET', '/object_info', null, 'object_info.json')
    await http('GET', '/models')
    await http('GET', '/models/checkpoints')
    await http('GET', '/models/loras')
    await http('GET', '/embeddings')
    const a = newClient('A', `client-a-${hex8()}`)
    await a.connect()
    const b = newClient('B', `client-b-${hex8()}`)
    await b.connect()
    const obs = newClient('observer', `observer-${hex8()}`)
    await obs.connect(false)
    vram.start()
    await pause(0.5)

    async function runAndWait(
      client: WsClient | null,
      prompt: WireObject,
      extra: WireObject | null = null,
      fields: WireObject = {},
    ): Promise<void> {
      const mark = client?.mark()
      const answer = await submit(prompt, client ? client.clientId : null, extra, fields)
      if (answer.status !== 200) return
      const pid = item(answer.json, 'prompt_id')
      if (client) await client.waitFor(ended(pid), 240, mark)
      await pause(0.3)
      await http('GET', `/history/${str(py(pid))}`)
      await http('GET', `/api/jobs/${str(py(pid))}`)
    }

    await scenario('image_pipeline', () =>
      runAndWait(a, imagePipeline(), null, { prompt_id: `fixed-${hex12()}` }),
    )
    await scenario('image_pipeline_fully_cached', () => runAndWait(a, imagePipeline()))
    await scenario('image_pipeline_partly_cached', () => runAndWait(a, imagePipeline(5)))
    await scenario('partial_execution_targets', () =>
      runAndWait(a, imagePipeline(7), null, { partial_execution_targets: ['6'] }),
    )
    await scenario('validation_errors', async () => {
      const p = imagePipeline()
      inputs(p, '1').image = 'does-not-exist.png'
      await submit(p, a.clientId)
      const p2 = imagePipeline()
      inputs(p2, '3').blur_radius = 999
      const mark = a.mark()
      const r2 = await submit(p2, a.clientId)
      // ComfyUI accepts it and runs the outputs it can
      if (r2.status === 200 && isDict(r2.json)) await a.waitFor(ended(item(r2.json, 'prompt_id')), 60, mark)
      const p3 = imagePipeline()
      p3['9'] = { class_type: 'NoSuchNode', inputs: {} }
      await submit(p3, a.clientId)
      await http('POST', '/prompt', { prompt: 'not a graph' })
      await http('POST', '/prompt', { client_id: a.clientId })
    })
    await scenario('runtime_error_custom_node', () => {
      const p = imagePipeline(3, 'audit/fail')
      p['7'] = { class_type: 'AuditFail', inputs: { image: ['4', 0], message: 'planned failure in node 7' } }
      inputs(p, '5').images = ['7', 0]
      return runAndWait(a, p)
    })
    await scenario('runtime_error_corrupt_checkpoint', () =>
      runAndWait(a, {
        '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'corrupt-model.safetensors' } },
        '2': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
        '3': { class_type: 'VAEDecode', inputs: { samples: ['2', 0], vae: ['1', 2] } },
        '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'audit/corrupt' } },
      }),
    )
    await scenario('progress_events', () => {
      const p = imagePipeline(3, 'audit/slow')
      p['7'] = {
        class_type: 'AuditSlowProgress',
        inputs: { image: ['4', 0], seconds: float(1.5), steps: 15 },
      }
      inputs(p, '5').images = ['7', 0]
      return runAndWait(a, p)
    })
    await scenario('gpu_memory', () => {
      const p = imagePipeline(3, 'audit/gpu')
      p['7'] = {
        class_type: 'AuditGpuAlloc',
        inputs: { image: ['4', 0], megabytes: 4096, hold_seconds: float(1.0) },
      }
      p['8'] = { class_type: 'AuditSlowProgress', inputs: { image: ['7', 0], seconds: float(1.0), steps: 5 } }
      p['9'] = { class_type: 'AuditGpuFree', inputs: { image: ['8', 0] } }
      inputs(p, '5').images = ['9', 0]
      return runAndWait(a, p)
    })
    await scenario('interrupt', async () => {
      const p = imagePipeline(3, 'audit/interrupt')
      p['7'] = {
        class_type: 'AuditSlowProgress',
        inputs: { image: ['4', 0], seconds: float(8.0), steps: 40 },
      }
      inputs(p, '5').images = ['7', 0]
      const mark = a.mark()
      const answer = await submit(p, a.clientId)
      const pid = item(answer.json, 'prompt_id')
      await a.waitFor(of(pid, 'executing', { node: '7' }), 60, mark)
      await pause(1.0)
      await http('POST', '/interrupt', { prompt_id: pid })
      await a.waitFor(ended(pid), 60, mark)
      await pause(0.3)
      await http('GET', `/history/${str(py(pid))}`)
    })
    await scenario('queue_and_clients', async () => {
      const slow = (tag: string, seconds: number): WireObject => ({
        ...imagePipeline(3, `audit/q-${tag}`),
        '7': {
          class_type: 'AuditSlowProgress',
          inputs: { image: ['4', 0], seconds: float(seconds), steps: 4 },
        },
      })
      const ids: Array<{ tag: string; client: WsClient | null; pid: Json }> = []
      const plan: Array<[string, WsClient | null, WireObject]> = [
        ['a1', a, {}],
        ['b1', b, {}],
        ['none', null, {}],
        ['a-front', a, { front: true }],
        ['b-deleted', b, {}],
      ]
      for (const [tag, client, fields] of plan) {
        const p = slow(tag, 1.0 + ids.length * 0.1)
        inputs(p, '5').images = ['7', 0]
        const answer = await submit(p, client ? client.clientId : null, null, fields)
        ids.push({ tag, client, pid: get(answer.json, 'prompt_id') })
      }
      await http('GET', '/queue')
      await http('GET', '/api/jobs?status=pending,in_progress')
      await http('POST', '/queue', { delete: [ids.at(-1)!.pid] })
      await http('GET', '/queue')
      for (const { pid } of ids.slice(0, -1)) await pollHistory(pid, 200)
    })
    await scenario('reconnect_and_duplicate_client_id', async () => {
      const c = newClient('C', `client-c-${hex8()}`)
      await c.connect()
      const p = imagePipeline(3, 'audit/reconnect')
      p['7'] = { class_type: 'AuditSlowProgress', inputs: { image: ['4', 0], seconds: float(3.0), steps: 6 } }
      inputs(p, '5').images = ['7', 0]
      const mark = c.mark()
      const answer = await submit(p, c.clientId)
      const pid = item(answer.json, 'prompt_id')
      await c.waitFor(of(pid, 'executing', { node: '7' }), 60, mark)
      await c.close()
      // The node reports a step every 0.5 s from `executing`. record.py paused 1.0 s here, which put the
      // reconnect within a millisecond of the second step (the reference shows 1 ms between them), so
      // under load C-reconnected sometimes got that step's `progress` before C-duplicate took the id
      // over: a race real ComfyUI has too. Reconnecting mid-step (0.75 s) leaves 250 ms either side;
      // the events each socket gets are the same as in the reference.
      await pause(0.75)
      const c2 = newClient('C-reconnected', c.clientId)
      await c2.connect()
      const d1 = newClient('C-duplicate', c.clientId)
      await d1.connect()
      await pollHistory(pid, 100)
      await c2.close()
      await d1.close()
    })
    await scenario('sensitive_extra_data', async () => {
      await runAndWait(a, imagePipeline(2, 'audit/sensitive'), {
        api_key_comfy_org: 'secret-api-key-value',
        auth_token_comfy_org: 'secret-token',
      })
      await http('GET', '/queue')
    })
    if (options.withModel) {
      await scenario('sd15_model_workflow', async () => {
        await runAndWait(a, sd15(42))
        await runAndWait(a, sd15(43))
        await runAndWait(a, sd15(44, 6, false, 'audit/sd15-nolora'))
      })
    }
    recording.scenario = 'final'
    await vram.close()
    const hist = (await http('GET', '/history')).json
    await http('GET', '/history?max_items=2')
    await http('GET', '/api/jobs')
    await http('GET', '/api/jobs?limit=3&offset=1&sort_by=created_at&sort_order=asc')
    await http('GET', '/system_stats')
    await http('GET', '/internal/logs')
    await http('GET', '/view_metadata/checkpoints?filename=audit-sd15-random.safetensors')
    await http('GET', '/view_metadata/loras?filename=audit-style-lora.safetensors')
    // keep one output PNG of each kind to study metadata chunks
    let saved = 0
    if (isDict(hist)) {
      for (const entry of Object.values(hist)) {
        const outputs = or(get(entry, 'outputs'), {})
        if (!isDict(outputs)) throw new PyError(`'${typeof outputs}' object has no attribute 'items'`)
        for (const out of Object.values(outputs)) {
          for (const img of iterate(or(get(out, 'images', []), []))) {
            if (saved < 3 && eq(py(get(img, 'type')), 'output')) {
              const q = `/view?filename=${str(py(item(img, 'filename')))}&subfolder=${str(py(get(img, 'subfolder', '')))}&type=output`
              await http('GET', q, null, `output-${saved}.png`)
              saved += 1
            }
          }
        }
      }
    }
    for (const c of [a, b, obs]) await c.close()
  } finally {
    await vram.close()
    for (const c of clients) await c.close()
    await agent.close()
    if (log !== null) closeSync(log)
  }
  return rows
}

/** One WebSocket client of the script: records what it receives and lets the script wait for a frame. */
class WsClient {
  readonly name: string
  readonly clientId: string
  readonly #recording: Recording
  readonly #url: string
  readonly #headers: Record<string, string>
  readonly #seen: Json[] = []
  #waiters: Array<{ pred: Predicate; resolve: (frame: Json) => void }> = []
  #ws: WebSocket | null = null
  #closed: Promise<void> = Promise.resolve()
  // Frames that arrive before connect() has recorded its own rows wait here (aiohttp buffers them too).
  #backlog: Array<{ data: Buffer; isBinary: boolean }> | null = []
  // Set once the reader has stopped (record.py's read task ended): later frames are not read.
  #stopped = false
  #opened = false

  constructor(
    recording: Recording,
    name: string,
    clientId: string,
    url: string,
    headers: Record<string, string>,
  ) {
    this.#recording = recording
    this.name = name
    this.clientId = clientId
    this.#url = url
    this.#headers = headers
  }

  async connect(sendFeatureFlags = true): Promise<void> {
    const ws = new WebSocket(this.#url, {
      headers: this.#headers,
      perMessageDeflate: false, // aiohttp offers no compression by default
      maxPayload: 0, // record.py: max_msg_size=0 (no limit)
      handshakeTimeout: REQUEST_TIMEOUT_MILLIS,
    })
    this.#ws = ws
    this.#closed = new Promise((resolve) => ws.once('close', () => resolve()))
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.#backlog !== null) this.#backlog.push({ data, isBinary })
      else this.#read(data, isBinary)
    })
    ws.on('close', () => {
      if (this.#opened) this.#stop()
    })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    ws.on('error', (e) => {
      if (!this.#stopped) this.#recording.rec('ws_error', { client: this.name, error: String(e) })
    })
    this.#opened = true
    this.#recording.rec('ws_open', { client: this.name, client_id: this.clientId })
    if (sendFeatureFlags) {
      await new Promise<void>((resolve, reject) =>
        ws.send(FEATURE_FLAGS_TEXT, (e) => (e ? reject(e) : resolve())),
      )
      this.#recording.rec('ws_sent', { client: this.name, msg: FEATURE_FLAGS })
    }
    const backlog = this.#backlog ?? []
    this.#backlog = null
    for (const f of backlog) this.#read(f.data, f.isBinary)
  }

  /** How many JSON frames this client has received: pass it to `waitFor` as `since`. */
  mark(): number {
    return this.#seen.length
  }

  /**
   * Resolves with the first frame matching `pred`, failing after `timeoutSeconds`. With `since`, frames that
   * arrived from that mark on count too: through a proxy, frames can overtake the HTTP answer naming the prompt.
   */
  async waitFor(pred: Predicate, timeoutSeconds = 120, since?: number): Promise<Json> {
    if (since !== undefined) {
      for (const d of this.#seen.slice(since)) if (pred(d)) return d
    }
    return new Promise<Json>((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (frame: Json) => {
          clearTimeout(timer)
          resolve(frame)
        },
      }
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter)
        reject(new Error(`TimeoutError: client ${this.name} saw no matching frame in ${timeoutSeconds} s`))
      }, timeoutSeconds * 1000)
      this.#waiters.push(waiter)
    })
  }

  async close(): Promise<void> {
    const ws = this.#ws
    if (ws === null) return
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000)
    await this.#closed
  }

  #read(data: Buffer, isBinary: boolean): void {
    if (this.#stopped) return
    try {
      if (isBinary) {
        this.#recording.rec('ws_binary', { client: this.name, ...describeBinary(data) })
        return
      }
      const frame = JSON.parse(data.toString('utf8')) as Json
      this.#recording.rec('ws', { client: this.name, msg: frame })
      this.#seen.push(frame)
      for (const w of [...this.#waiters]) {
        if (w.pred(frame)) {
          this.#waiters = this.#waiters.filter((x) => x !== w)
          w.resolve(frame)
        }
      }
    } catch (e) {
      // record.py's reader task dies on a frame it cannot handle: it records the error and stops reading.
      this.#recording.rec('ws_error', { client: this.name, error: String(e) })
      this.#stop()
    }
  }

  #stop(): void {
    if (this.#stopped) return
    this.#stopped = true
    this.#recording.rec('ws_closed', { client: this.name })
  }
}

/** record.py's `VramPoller`: a `/system_stats` sample every 0.1 s while the scenarios run. */
class VramPoller {
  readonly #recording: Recording
  readonly #get: () => Promise<{ headers: { get(name: string): string | null }; text(): Promise<string> }>
  readonly #pause: (signal: AbortSignal) => Promise<void>
  readonly #abort = new AbortController()
  #stop = false
  #task: Promise<void> | null = null

  constructor(
    recording: Recording,
    get: () => Promise<{ headers: { get(name: string): string | null }; text(): Promise<string> }>,
    pause: (signal: AbortSignal) => Promise<void>,
  ) {
    this.#recording = recording
    this.#get = get
    this.#pause = pause
  }

  start(): void {
    this.#task = this.#run()
  }

  async close(): Promise<void> {
    this.#stop = true
    // Ends the pause between polls; a poll already under way still completes and is recorded.
    this.#abort.abort()
    await this.#task
  }

  async #run(): Promise<void> {
    while (!this.#stop) {
      try {
        const t = nowMillis()
        const r = await this.#get()
        const text = await r.text()
        // aiohttp's `r.json()` insists on this media type.
        const mime = (r.headers.get('Content-Type') ?? '').split(';')[0]!.trim().toLowerCase()
        if (mime !== 'application/json') throw new Error(`ContentTypeError: unexpected mimetype: ${mime}`)
        const d = JSON.parse(text) as Json
        const dev = first(or(get(d, 'devices'), [{}]))
        this.#recording.rec('vram', {
          ms: round(nowMillis() - t, 2),
          vram_total: get(dev, 'vram_total'),
          vram_free: get(dev, 'vram_free'),
          torch_vram_total: get(dev, 'torch_vram_total'),
          torch_vram_free: get(dev, 'torch_vram_free'),
          ram_free: get(get(d, 'system', {}), 'ram_free'),
        })
      } catch (e) {
        this.#recording.rec('vram_error', { error: String(e) })
      }
      if (this.#stop) break
      try {
        await this.#pause(this.#abort.signal)
      } catch {
        // aborted by close()
      }
    }
  }
}

/** Python `v[0]` on a JSON value. */
function first(v: Json): Json {
  if (Array.isArray(v) || typeof v === 'string') {
    if (v.length === 0) throw new PyError('IndexError: index out of range')
    return Array.isArray(v) ? v[0]! : Array.from(v)[0]!
  }
  throw new PyError(isDict(v) ? 'KeyError: 0' : 'TypeError: object is not subscriptable')
}

/** The fields record.py writes for a binary frame. */
function describeBinary(b: Buffer): RowFields {
  const etype = b.length >= 4 ? b.readUInt32BE(0) : null
  const row: RowFields = {
    event_type: etype,
    bytes: b.length,
    sha256: createHash('sha256').update(b).digest('hex'),
    head_hex: b.subarray(0, 48).toString('hex'),
  }
  try {
    if (etype === 3) {
      const n = uint32At(b, 4)
      row.node_id = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b.subarray(8, 8 + n))
      row.text = decodeReplacing(b.subarray(8 + n, 8 + n + 500))
    } else if (etype === 4) {
      const n = uint32At(b, 4)
      row.metadata = JSON.parse(
        new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b.subarray(8, 8 + n)),
      ) as Json
    } else if (etype === 1 || etype === 2) {
      row.image_format = uint32At(b, 4)
    }
  } catch (e) {
    row.decode_error = String(e)
  }
  return row
}

function uint32At(b: Buffer, offset: number): number {
  // struct.unpack(">I", b[4:8]) needs exactly four bytes
  if (b.length < offset + 4) throw new PyError('struct.error: unpack requires a buffer of 4 bytes')
  return b.readUInt32BE(offset)
}

/** Python `bytes.decode(errors="replace")`. */
function decodeReplacing(b: Uint8Array): string {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(b)
}

/** record.py `of()`: a frame of `type` for `promptId` whose data has the given values. */
function of(promptId: Json, type: string, data: JsonObject = {}): Predicate {
  return (d) => {
    if (!eq(py(get(d, 'type')), type)) return false
    const body = or(get(d, 'data'), {})
    if (!eq(py(get(body, 'prompt_id')), py(promptId))) return false
    return Object.entries(data).every(([k, v]) => eq(py(get(or(get(d, 'data'), {}), k)), py(v)))
  }
}

/** record.py `ended()`: the frame that ends `promptId`'s run. */
function ended(promptId: Json): Predicate {
  return (d) => {
    const t = get(d, 'type')
    if (!(t === 'execution_success' || t === 'execution_error' || t === 'execution_interrupted')) return false
    return eq(py(get(or(get(d, 'data'), {}), 'prompt_id')), py(promptId))
  }
}

function inputs(prompt: WireObject, nodeId: string): WireObject {
  const node = prompt[nodeId]
  const ins = isWireObject(node) ? node.inputs : undefined
  if (!isWireObject(ins)) throw new PyError(`node ${nodeId} has no inputs object`)
  return ins
}

/** A minimal UI-format workflow, as the front end would put in `extra_pnginfo`. */
function uiWorkflow(prompt: WireObject): WireObject {
  const nodes: Wire[] = []
  const links: Wire[] = []
  let linkId = 0
  for (const [i, nid] of Object.keys(prompt).entries()) {
    const classType = isWireObject(prompt[nid]) ? (prompt[nid].class_type ?? null) : null
    const ins = inputs(prompt, nid)
    const widgets = Object.values(ins).filter((v) => !Array.isArray(v))
    nodes.push({
      id: pyInt(nid),
      type: classType,
      pos: [100 + 250 * i, 100],
      size: [240, 120],
      flags: {},
      order: i,
      mode: 0,
      inputs: [],
      outputs: [],
      properties: { 'Node name for S&R': classType },
      widgets_values: widgets,
    })
    for (const v of Object.values(ins)) {
      if (Array.isArray(v)) {
        linkId += 1
        links.push([linkId, pyInt(v[0] ?? null), v[1] ?? null, pyInt(nid), 0, '*'])
      }
    }
  }
  return {
    last_node_id: Math.max(...Object.keys(prompt).map(pyInt)),
    last_link_id: linkId,
    nodes,
    links,
    groups: [],
    config: {},
    extra: { ds: { scale: 1, offset: [0, 0] } },
    version: float(0.4),
  }
}

/** Python `int(v)` for the node ids of a prompt. */
function pyInt(v: Wire): number {
  const n =
    typeof v === 'number'
      ? Math.trunc(v)
      : typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)
        ? Number(v)
        : NaN
  if (Number.isNaN(n)) throw new PyError(`ValueError: invalid literal for int(): ${JSON.stringify(v)}`)
  return n
}

function imagePipeline(blur = 3, prefix = 'audit/pipeline'): WireObject {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': {
      class_type: 'ImageScaleBy',
      inputs: { image: ['1', 0], upscale_method: 'bilinear', scale_by: float(1.5) },
    },
    '3': { class_type: 'ImageBlur', inputs: { image: ['2', 0], blur_radius: blur, sigma: float(1.0) } },
    '4': { class_type: 'ImageInvert', inputs: { image: ['3', 0] } },
    '5': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: prefix } },
    '6': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
  }
}

function sd15(seed = 42, steps = 6, lora = true, prefix = 'audit/sd15'): WireObject {
  const p: WireObject = {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'audit-sd15-random.safetensors' } },
    '3': {
      class_type: 'CLIPTextEncode',
      inputs: { text: 'a lighthouse at dusk, oil painting', clip: ['2', 1] },
    },
    '4': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry, low quality', clip: ['2', 1] } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 256, height: 256, batch_size: 1 } },
    '6': {
      class_type: 'KSampler',
      inputs: {
        model: ['2', 0],
        positive: ['3', 0],
        negative: ['4', 0],
        latent_image: ['5', 0],
        seed,
        steps,
        cfg: float(7.0),
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: float(1.0),
      },
    },
    '7': { class_type: 'VAEDecode', inputs: { samples: ['6', 0], vae: ['1', 2] } },
    '8': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: prefix } },
  }
  if (lora) {
    p['2'] = {
      class_type: 'LoraLoader',
      inputs: {
        model: ['1', 0],
        clip: ['1', 1],
        lora_name: 'audit-style-lora.safetensors',
        strength_model: float(0.8),
        strength_clip: float(0.6),
      },
    }
  } else {
    inputs(p, '6').model = ['1', 0]
    inputs(p, '3').clip = ['1', 1]
    inputs(p, '4').clip = ['1', 1]
  }
  // Integer-like keys already iterate in ascending order in JS, as `sorted(..., key=int)` orders them.
  return p
}

/**
 * The stand-in's HTTP routes, answering like ComfyUI 0.8's aiohttp server: every core route also under
 * `/api`, the jobs routes at `/api/jobs` and `/api/api/jobs`, `/internal/*` only bare, JSON written by
 * Python's json.dumps rules, aiohttp's 404/405/500 texts.
 */
import { createReadStream } from 'node:fs'
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { basename, extname, join, normalize, relative, resolve, sep } from 'node:path'
import type { Catalogue } from './catalogue.js'
import type { DataDir } from './data-dir.js'
import { MODEL_FOLDERS } from './data-dir.js'
import type { GpuModel } from './gpu-model.js'
import { getJob, listJobs } from './jobs-api.js'
import { parseMultipart } from '../comfyui/multipart.js'
import { publicTuple } from './prompt-queue.js'
import type { HistoryEntry } from './prompt-queue.js'
import { PyFloat, dumpPyJson, isPyObject, parsePyJson } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'
import { PyError, pyFloat, pyStr, pyTruthy } from './py-repr.js'
import { readSafetensorsHeader } from './safetensors.js'
import type { SimEngine } from './sim-engine.js'
import { sha256Hex } from './sim-engine.js'
import { validatePrompt } from './validate-prompt.js'
import type { LogEntry, LogTerminal } from './sim-logs.js'
import {
  cacheControl,
  fileResponse,
  registerFrontendRoutes,
  saveMask,
  serveStatic,
  webRootExtensions,
  viewChannel,
} from './sim-frontend-routes.js'
import { BodyTooLarge, empty, json, pyContains, readJson, serverError, text, withinDir } from './sim-http.js'
import type { Handler, Reply, Req } from './sim-http.js'

/** `--max-upload-size` (100 MB) limits every request body. */
const MAX_BODY_BYTES = 100 * 1024 * 1024

/** What a ComfyUI install reports of itself. */
export interface SimInstall {
  /** `comfyui_version`, default `0.8.0`. */
  comfyuiVersion: string
  /** `pytorch_version`, default `2.11.0+cu130`. */
  pytorchVersion: string
  /** `python_version` (Python's `sys.version`), default `3.12.3 (main, Aug 31 2026, 10:18:26) [GCC 13.3.0]`. */
  pythonVersion: string
}

interface RouteContext {
  readonly dir: DataDir
  readonly catalogue: Catalogue
  readonly engine: SimEngine
  readonly gpu: GpuModel
  readonly logs: () => readonly LogEntry[]
  /** The log terminal (`PATCH /internal/logs/subscribe`, its size in `/internal/logs/raw`). */
  readonly terminal?: LogTerminal
  /** A built ComfyUI front end to serve as ComfyUI's web root; without it `/` is a small page. */
  readonly webRoot?: string
  readonly log: (m: string) => void
  readonly now: () => number
  /** The versions `/system_stats` reports. */
  readonly install: SimInstall
  readonly argv: () => string[]
  readonly newPromptId: () => string
}

/** The server's feature flags (`/features` and the WS reply). */
export function serverFeatures(): PyObject {
  return {
    supports_preview_metadata: true,
    max_upload_size: MAX_BODY_BYTES,
    extension: { manager: { supports_v4: true } },
  }
}

const SENSITIVE_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org']
const CSP =
  "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'self';"

const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.json': 'application/json',
  '.txt': 'text/plain',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.wav': 'audio/x-wav',
  '.mp3': 'audio/mpeg',
  '.flac': 'audio/flac',
  '.svg': 'image/svg+xml',
}
const FORCED_DOWNLOAD = new Set(['.html', '.htm', '.xhtml', '.js', '.mjs', '.css'])

function historyJson(h: HistoryEntry): PyObject {
  return { prompt: h.prompt, outputs: h.outputs, status: h.status, meta: h.meta }
}

function stripSensitive(items: ReturnType<SimEngine['queue']['pending']>): PyValue[] {
  return items.map((it) => publicTuple(it))
}

/** Builds the route table; returns a request handler. */
export function createRoutes(ctx: RouteContext): (req: IncomingMessage, res: ServerResponse) => void {
  const { dir, engine } = ctx
  const userRoot = (): string => join(dir.user, 'default')
  const userPath = (file: string): string | undefined => {
    let f = file
    if (f.includes('%')) {
      try {
        f = decodeURIComponent(f)
      } catch {
        // keep as is, like urllib's lenient unquote
      }
    }
    const p = resolve(userRoot(), f)
    return withinDir(userRoot(), p) ? p : undefined
  }
  const settingsFile = (): string => join(userRoot(), 'comfy.settings.json')
  const readSettings = async (): Promise<PyObject> => {
    try {
      const parsed = parsePyJson(await readFile(settingsFile(), 'utf8'))
      return parsed.ok && isPyObject(parsed.value) ? parsed.value : {}
    } catch {
      return {}
    }
  }

  const core: Array<[string, RegExp, Handler]> = []
  const internal: Array<[string, RegExp, Handler]> = []
  const route = (table: typeof core, method: string, pattern: string, h: Handler): void => {
    const re = new RegExp(
      '^' + pattern.replace(/\{[a-z_]+:\.\*\}/g, '(.*)').replace(/\{[a-z_]+\}/g, '([^/]+)') + '$',
    )
    table.push([method, re, h])
  }

  const noCache = { 'Cache-Control': 'no-cache', Pragma: 'no-cache', Expires: '0' }
  route(core, 'GET', '/', async (req) =>
    ctx.webRoot !== undefined
      ? fileResponse(req, join(ctx.webRoot, 'index.html'), noCache)
      : {
          status: 200,
          body:
            '<!doctype html><html><head><title>ComfyUI stand-in</title></head><body>' +
            '<p>comfy-audit: the ComfyUI 0.8 stand-in (API and WebSocket only). ' +
            'Start it with <code>--web-root DIR</code> to serve a ComfyUI front end build here.</p>' +
            '</body></html>\n',
          contentType: 'text/html',
          headers: noCache,
        },
  )
  route(core, 'GET', '/embeddings', async () =>
    json(((await dir.listModels('embeddings')) ?? []).map((n) => n.slice(0, n.length - extname(n).length))),
  )
  route(core, 'GET', '/models', async () => json([...MODEL_FOLDERS]))
  route(core, 'GET', '/models/{folder}', async (_r, [folder]) => {
    const list = await dir.listModels(folder!)
    return list ? json(list) : empty(404)
  })
  // The front end's own extension scripts under the web root (no custom node adds any here).
  route(core, 'GET', '/extensions', async () =>
    json(ctx.webRoot === undefined ? [] : await webRootExtensions(ctx.webRoot)),
  )
  route(core, 'GET', '/features', async () => json(serverFeatures()))
  route(core, 'GET', '/prompt', async () => json(engine.queueInfo()))
  route(core, 'GET', '/object_info', async () => json(await ctx.catalogue.objectInfo()))
  route(core, 'GET', '/object_info/{node_class}', async (_r, [cls]) => {
    const def = await ctx.catalogue.node(cls!)
    return json(def ? { [cls!]: def } : {})
  })
  route(core, 'GET', '/system_stats', async () => {
    const s = ctx.gpu.stats()
    return json({
      system: {
        os: 'linux',
        ram_total: s.ram_total,
        ram_free: s.ram_free,
        comfyui_version: ctx.install.comfyuiVersion,
        required_frontend_version: '1.35.9',
        installed_templates_version: null,
        required_templates_version: '0.7.67',
        python_version: ctx.install.pythonVersion,
        pytorch_version: ctx.install.pytorchVersion,
        embedded_python: false,
        argv: ctx.argv(),
      },
      devices: [
        {
          name: 'cuda:0 NVIDIA H200 : cudaMallocAsync',
          type: 'cuda',
          index: 0,
          vram_total: s.vram_total,
          vram_free: s.vram_free,
          torch_vram_total: s.torch_vram_total,
          torch_vram_free: s.torch_vram_free,
        },
      ],
    })
  })
  route(core, 'GET', '/queue', async () =>
    json({
      queue_running: stripSensitive(engine.queue.running()),
      queue_pending: stripSensitive(engine.queue.pending()),
    }),
  )
  route(core, 'POST', '/prompt', async (req) => {
    ctx.log('got prompt\n')
    const body = await readJson(req)
    let number: number | PyFloat
    if (pyContains(body, 'number')) {
      number = pyFloat(isPyObject(body) ? body.number : undefined)
    } else {
      number = engine.counter
      if (pyContains(body, 'front') && isPyObject(body) && pyTruthy(body.front)) number = -number || 0
      engine.counter++
    }
    if (!pyContains(body, 'prompt')) {
      const error = {
        type: 'no_prompt',
        message: 'No prompt provided',
        details: 'No prompt provided',
        extra_info: {},
      }
      return json({ error, node_errors: {} }, 400)
    }
    if (!isPyObject(body)) throw new PyError('TypeError', 'indices must be integers')
    const prompt = body.prompt!
    const promptId = Object.hasOwn(body, 'prompt_id') ? pyStr(body.prompt_id) : ctx.newPromptId()
    const partial = Object.hasOwn(body, 'partial_execution_targets')
      ? body.partial_execution_targets
      : undefined
    const outcome = await validatePrompt(prompt, partial, ctx.catalogue, dir)
    if (outcome.kind === 'crash') throw new PyError('TypeError', outcome.reason)
    const extraData: PyValue = Object.hasOwn(body, 'extra_data') ? body.extra_data! : {}
    if (Object.hasOwn(body, 'client_id')) {
      if (!isPyObject(extraData)) throw new PyError('TypeError', 'object does not support item assignment')
      extraData.client_id = body.client_id!
    }
    if (outcome.kind === 'refused') {
      ctx.log(`invalid prompt: ${pyStr(outcome.error)}\n`)
      return json({ error: outcome.error, node_errors: outcome.nodeErrors }, 400)
    }
    if (!isPyObject(extraData)) throw new PyError('TypeError', 'object does not support item assignment')
    const sensitive: PyObject = {}
    for (const k of SENSITIVE_KEYS) {
      if (Object.hasOwn(extraData, k)) {
        sensitive[k] = extraData[k]!
        delete extraData[k]
      }
    }
    extraData.create_time = Math.trunc(ctx.now())
    engine.put({
      number,
      promptId,
      prompt: prompt as PyObject,
      extraData,
      outputs: outcome.outputs,
      sensitive,
    })
    return json({ prompt_id: promptId, number, node_errors: outcome.nodeErrors })
  })
  route(core, 'POST', '/queue', async (req) => {
    const body = await readJson(req)
    if (pyContains(body, 'clear') && isPyObject(body) && pyTruthy(body.clear)) {
      engine.queue.wipe()
      engine.statusBroadcast()
    }
    if (pyContains(body, 'delete') && isPyObject(body)) {
      const del = body.delete
      const ids: PyValue[] = Array.isArray(del)
        ? del
        : typeof del === 'string'
          ? [...del]
          : isPyObject(del)
            ? Object.keys(del)
            : []
      if (!Array.isArray(del) && typeof del !== 'string' && !isPyObject(del))
        throw new PyError('TypeError', 'not iterable')
      for (const id of ids) {
        if (typeof id !== 'string') continue
        const n = engine.queue.delete(id)
        for (let i = 0; i < n; i++) engine.statusBroadcast()
      }
    }
    return empty(200)
  })
  route(core, 'POST', '/interrupt', async (req) => {
    const raw = (await req.body()).toString('utf8')
    const parsed = parsePyJson(raw)
    const body: PyValue = parsed.ok ? parsed.value : {}
    if (!isPyObject(body)) throw new PyError('AttributeError', "object has no attribute 'get'")
    const pid = body.prompt_id
    if (pyTruthy(pid)) engine.interrupt(typeof pid === 'string' ? pid : pyStr(pid))
    else engine.interrupt()
    return empty(200)
  })
  route(core, 'POST', '/free', async (req) => {
    const body = await readJson(req)
    if (!isPyObject(body)) throw new PyError('AttributeError', "object has no attribute 'get'")
    if (pyTruthy(body.unload_models)) engine.setFlag('unload_models', true)
    if (pyTruthy(body.free_memory)) engine.setFlag('free_memory', true)
    return empty(200)
  })
  route(core, 'GET', '/history', async (req) => {
    const toInt = (s: string): number => {
      if (!/^\s*[-+]?\d+\s*$/.test(s))
        throw new PyError('ValueError', `invalid literal for int() with base 10: '${s}'`)
      return Number.parseInt(s, 10)
    }
    const maxItems = req.query.has('max_items') ? toInt(req.query.get('max_items')!) : undefined
    let offset = req.query.has('offset') ? toInt(req.query.get('offset')!) : -1
    const h = engine.queue.history
    if (offset < 0 && maxItems !== undefined) offset = h.size - maxItems
    const out = new Map<string, PyValue>()
    let i = 0
    let n = 0
    for (const [k, v] of h) {
      if (i >= offset) {
        out.set(k, historyJson(v))
        n++
        if (maxItems !== undefined && n >= maxItems) break
      }
      i++
    }
    return json(out)
  })
  route(core, 'GET', '/history/{prompt_id}', async (_r, [id]) => {
    const h = engine.queue.history.get(id!)
    return json(h ? new Map([[id!, historyJson(h)]]) : {})
  })
  route(core, 'POST', '/history', async (req) => {
    const body = await readJson(req)
    if (pyContains(body, 'clear') && isPyObject(body) && pyTruthy(body.clear)) engine.queue.history.clear()
    if (pyContains(body, 'delete') && isPyObject(body)) {
      const del = body.delete
      const ids: PyValue[] = Array.isArray(del) ? del : []
      for (const id of ids) if (typeof id === 'string') engine.queue.history.delete(id)
    }
    return empty(200)
  })
  const jobsList: Handler = async (req) => {
    const r = listJobs(req.query, engine.queue.running(), engine.queue.pending(), engine.queue.history)
    return json(r.body, r.status)
  }
  const jobOne: Handler = async (_req, [id]) => {
    const r = getJob(id!, engine.queue.running(), engine.queue.pending(), engine.queue.history)
    return json(r.body, r.status)
  }
  route(core, 'GET', '/api/jobs', jobsList)
  route(core, 'GET', '/api/jobs/{job_id}', jobOne)
  route(core, 'GET', '/view', async (req) => {
    const q = req.query
    if (!q.has('filename')) return empty(404)
    let filename = q.get('filename')!
    let base: string | undefined
    for (const [suffix, d] of [
      ['[output]', dir.output],
      ['[input]', dir.input],
      ['[temp]', dir.temp],
    ] as const) {
      if (filename.endsWith(suffix)) {
        filename = filename.slice(0, -suffix.length - 1)
        base = d
        break
      }
    }
    if (!filename) return empty(400)
    if (filename.startsWith('/') || filename.includes('..')) return empty(400)
    if (base === undefined) base = dir.dirByType(q.get('type') ?? 'output')
    if (base === undefined) return empty(400)
    if (q.has('subfolder')) {
      const full = resolve(base, q.get('subfolder')!)
      if (!withinDir(base, full)) return empty(403)
      base = full
    }
    const name = basename(filename)
    const file = join(base, name)
    try {
      if (!(await stat(file)).isFile()) return empty(404)
    } catch {
      return empty(404)
    }
    const channel = q.get('channel') ?? 'rgba'
    if (channel === 'rgb' || channel === 'a') {
      return {
        status: 200,
        body: await viewChannel(file, channel),
        contentType: 'image/png',
        headers: { 'Content-Disposition': `filename="${name}"` },
      }
    }
    const ext = extname(name).toLowerCase()
    const type = FORCED_DOWNLOAD.has(ext)
      ? 'application/octet-stream'
      : (MIME[ext] ?? 'application/octet-stream')
    return { status: 200, file, contentType: type, headers: { 'Content-Disposition': `filename="${name}"` } }
  })
  route(core, 'GET', '/view_metadata/{folder_name}', async (req, [folder]) => {
    const filename = req.query.get('filename')
    if (filename === null || !filename.endsWith('.safetensors')) return empty(404)
    const legacy: Record<string, string> = { unet: 'diffusion_models', clip: 'text_encoders' }
    const path = await dir.findModel(legacy[folder!] ?? folder!, filename)
    if (!path) return empty(404)
    const header = await readSafetensorsHeader(path, 1024 * 1024)
    if (!header.ok) return empty(404)
    const metadata = header.header.__metadata__
    if (metadata === undefined) return empty(404)
    return json(metadata)
  })
  /** `image_upload`: the multipart form's image into input/ (or type=), with ComfyUI's duplicate naming. */
  const imageUpload = async (
    req: Req,
    save?: (fields: Map<string, string>, data: Buffer, filepath: string) => Promise<void>,
  ): Promise<Reply> => {
    // aiohttp reads the boundary from the Content-Type; a body that is not multipart/form-data is an error.
    const contentType = String(req.headers['content-type'] ?? '')
    const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
    if (!/^multipart\/form-data/i.test(contentType) || !boundary) return serverError()
    const parsed = parseMultipart(await req.body(), boundary[1] ?? boundary[2])
    if (!parsed.ok) return serverError()
    const field = (n: string): string | undefined => {
      const p = parsed.parts.find((x) => x.name === n && x.filename === null)
      return p?.data.toString('utf8')
    }
    const image = parsed.parts.find((p) => p.name === 'image' && p.filename !== null)
    const type = field('type') ?? 'input'
    const uploadDir = dir.dirByType(type)
    if (!uploadDir) return serverError()
    if (!image) return empty(400)
    let filename = image.filename!
    if (!filename) return empty(400)
    const subfolder = field('subfolder') ?? ''
    const folder = resolve(uploadDir, normalize(subfolder || '.'))
    let filepath = resolve(folder, filename)
    if (!withinDir(uploadDir, filepath) || filepath === uploadDir) return empty(400)
    await mkdir(folder, { recursive: true })
    const overwrite = field('overwrite')
    let duplicate = false
    if (overwrite !== 'true' && overwrite !== '1') {
      const ext = extname(filename)
      const stem = filename.slice(0, filename.length - ext.length)
      const hash = sha256Hex(image.data)
      for (let i = 1; ; i++) {
        let existing: Buffer
        try {
          existing = await readFile(filepath)
        } catch {
          break
        }
        if (sha256Hex(existing) === hash) {
          duplicate = true
          break
        }
        filename = `${stem} (${i})${ext}`
        filepath = join(folder, filename)
      }
    }
    if (!duplicate) {
      if (save) {
        const fields = new Map<string, string>()
        for (const p of parsed.parts) if (p.filename === null) fields.set(p.name, p.data.toString('utf8'))
        await save(fields, image.data, filepath)
      } else await writeFile(filepath, image.data)
    }
    return json({ name: filename, subfolder, type })
  }
  route(core, 'POST', '/upload/image', (req) => imageUpload(req))
  route(core, 'POST', '/upload/mask', (req) =>
    imageUpload(req, (fields, data, filepath) => saveMask(dir, fields, data, filepath)),
  )
  route(core, 'GET', '/users', async () => json({ storage: 'server', migrated: true }))
  route(core, 'GET', '/userdata/{file}', async (_r, [file]) => {
    const p = userPath(file!)
    if (!p) return empty(403)
    try {
      if (!(await stat(p)).isFile()) return empty(404)
    } catch {
      return empty(404)
    }
    const ext = extname(p).toLowerCase()
    return { status: 200, file: p, contentType: MIME[ext] ?? 'application/octet-stream' }
  })
  route(core, 'POST', '/userdata/{file}', async (req, [file]) => {
    const p = userPath(file!)
    if (!p) return empty(403)
    const overwrite = req.query.get('overwrite') !== 'false'
    const fullInfo = (req.query.get('full_info') ?? 'false').toLowerCase() === 'true'
    let exists = false
    try {
      await stat(p)
      exists = true
    } catch {
      exists = false
    }
    if (!overwrite && exists) return text(409, 'File already exists')
    const body = await req.body()
    try {
      await mkdir(resolve(p, '..'), { recursive: true })
      await writeFile(p, body)
    } catch {
      return empty(400)
    }
    const rel = relative(userRoot(), p)
    if (!fullInfo) return json(rel)
    const s = await stat(p)
    return json({
      path: rel.split(sep).join('/'),
      size: s.size,
      modified: new PyFloat(s.mtimeMs / 1000),
      created: new PyFloat(s.ctimeMs / 1000),
    })
  })
  route(core, 'DELETE', '/userdata/{file}', async (_r, [file]) => {
    const p = userPath(file!)
    if (!p) return empty(403)
    try {
      await stat(p)
    } catch {
      return empty(404)
    }
    await rm(p, { force: true })
    return empty(204)
  })
  route(core, 'GET', '/settings', async () => json(await readSettings()))
  route(core, 'GET', '/settings/{id}', async (_r, [id]) => {
    const s = await readSettings()
    return json(Object.hasOwn(s, id!) ? s[id!] : null)
  })
  route(core, 'POST', '/settings', async (req) => {
    const s = await readSettings()
    const body = await readJson(req)
    if (!isPyObject(body)) throw new PyError('TypeError', "'list' object is not a mapping")
    await writeFile(settingsFile(), dumpPyJson({ ...s, ...body }))
    return empty(200)
  })
  route(core, 'POST', '/settings/{id}', async (req, [id]) => {
    const s = await readSettings()
    s[id!] = await readJson(req)
    await writeFile(settingsFile(), dumpPyJson(s))
    return empty(200)
  })

  route(internal, 'GET', '/internal/logs', async () =>
    json(
      ctx
        .logs()
        .map((l) => `${l.t} - ${l.m}`)
        .join(''),
    ),
  )
  route(internal, 'GET', '/internal/logs/raw', async () => {
    ctx.terminal?.updateSize()
    return json({ entries: ctx.logs().map((l) => ({ t: l.t, m: l.m })), size: { cols: 80, rows: 24 } })
  })
  route(internal, 'PATCH', '/internal/logs/subscribe', async (req) => {
    const body = await readJson(req)
    if (!isPyObject(body)) throw new PyError('TypeError', 'list indices must be integers or slices, not str')
    if (!Object.hasOwn(body, 'clientId')) throw new PyError('KeyError', "'clientId'")
    if (!Object.hasOwn(body, 'enabled')) throw new PyError('KeyError', "'enabled'")
    const id = body.clientId!
    if (id !== null && typeof id === 'object') throw new PyError('TypeError', 'unhashable type')
    // A non-string id can never name a socket; ComfyUI keeps it until the next flush drops it.
    if (typeof id === 'string') {
      if (pyTruthy(body.enabled!)) ctx.terminal?.subscribe(id)
      else ctx.terminal?.unsubscribe(id)
    }
    return empty(200)
  })
  route(internal, 'GET', '/internal/folder_paths', async () => json(dir.folderPaths()))
  route(internal, 'GET', '/internal/files/{directory_type}', async (_r, [type]) => {
    const d = type === 'output' || type === 'input' || type === 'temp' ? dir.dirByType(type) : undefined
    if (!d) return json({ error: 'Invalid directory type' }, 400)
    const entries = await readdir(d, { withFileTypes: true })
    const files: Array<[string, number]> = []
    for (const e of entries) {
      if (!e.isFile() || e.name.startsWith('.')) continue
      files.push([e.name, (await stat(join(d, e.name))).mtimeMs])
    }
    return json(files.sort((a, b) => b[1] - a[1]).map((f) => f[0]))
  })

  registerFrontendRoutes(
    (m, p, h) => route(core, m, p, h),
    (m, p, h) => route(internal, m, p, h),
    { dir, userRoot, newId: ctx.newPromptId, log: ctx.log },
  )

  const find = (method: string, path: string): { h?: Handler; params: string[]; allowed: string[] } => {
    const allowed: string[] = []
    const search = (table: typeof core, p: string): { h?: Handler; params: string[] } | undefined => {
      for (const [m, re, h] of table) {
        const mm = re.exec(p)
        if (!mm) continue
        if (m === method || (method === 'HEAD' && m === 'GET')) {
          return { h, params: mm.slice(1).map((s) => safeDecode(s)) }
        }
        allowed.push(m)
      }
      return undefined
    }
    const direct = search(core, path) ?? search(internal, path)
    if (direct) return { ...direct, allowed }
    if (path.startsWith('/api/')) {
      const viaApi = search(core, path.slice(4))
      if (viaApi) return { ...viaApi, allowed }
    }
    return { params: [], allowed }
  }

  // ComfyUI warns once per legacy path for the life of the server.
  const deprecatedWarned = new Set<string>()
  return (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost')
      const method = (req.method ?? 'GET').toUpperCase()
      let bodyPromise: Promise<Buffer> | undefined
      const r: Req = {
        method,
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: () => (bodyPromise ??= readBody(req)),
      }
      let reply: Reply
      const p = url.pathname
      if ((p.startsWith('/scripts/ui') || p.startsWith('/extensions/core/')) && !deprecatedWarned.has(p)) {
        deprecatedWarned.add(p)
        ctx.log(
          `[DEPRECATION WARNING] Detected import of deprecated legacy API: ${p}. This is likely caused by a custom node extension using outdated APIs. Please update your extensions or contact the extension author for an updated version.\n`,
        )
      }
      const origin = originRejected(req)
      if (origin) reply = empty(403)
      else if (method === 'OPTIONS') reply = empty(200)
      else {
        const found = find(method, url.pathname)
        if (found.h) {
          try {
            reply = await found.h(r, found.params)
          } catch (e) {
            if (e instanceof BodyTooLarge) {
              reply = text(
                413,
                `Maximum request body size ${MAX_BODY_BYTES} exceeded, actual body size ${e.size}`,
              )
            } else {
              ctx.log(`Error handling request from ${req.socket.remoteAddress ?? '127.0.0.1'}\n`)
              reply = serverError()
            }
          }
        } else if (ctx.webRoot !== undefined && (method === 'GET' || method === 'HEAD')) {
          // Last in ComfyUI's route table: web.static('/', web_root) answers every other GET.
          reply = await serveStatic(ctx.webRoot, r)
        } else if (ctx.webRoot !== undefined) {
          reply = {
            ...text(405, '405: Method Not Allowed'),
            headers: { Allow: [...new Set([...found.allowed, 'GET', 'HEAD'])].sort().join(',') },
          }
        } else if (found.allowed.length > 0) {
          reply = {
            ...text(405, '405: Method Not Allowed'),
            headers: { Allow: [...new Set(found.allowed)].join(',') },
          }
        } else reply = text(404, '404: Not Found')
      }
      // Drain an unread body so keep-alive connections stay usable.
      if (!bodyPromise && !req.readableEnded) req.resume()
      reply.headers = { ...(reply.headers ?? {}) }
      cacheControl(url.pathname, reply.status, reply.headers)
      await send(res, reply, method === 'HEAD')
    })().catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' })
        res.end('500 Internal Server Error\n\nServer got itself in trouble')
      } else res.destroy()
    })
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    req.on('data', (c: Buffer) => {
      if (failed) return
      size += c.length
      if (size > MAX_BODY_BYTES) {
        failed = true
        reject(new BodyTooLarge(size))
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      if (!failed) resolveBody(Buffer.concat(chunks))
    })
    req.on('error', (e) => {
      if (!failed) reject(e)
    })
  })
}

/** ComfyUI's origin-only middleware: a loopback Host with a different Origin host gets 403. */
export function originRejected(req: IncomingMessage): boolean {
  const host = req.headers.host
  const origin = req.headers.origin
  if (!host || !origin) return false
  let o: URL
  let h: URL
  try {
    o = new URL(origin)
    h = new URL('http://' + host)
  } catch {
    return false
  }
  const hostname = h.hostname.replace(/^\[|\]$/g, '')
  const loopback = hostname === 'localhost' || hostname.startsWith('127.') || hostname === '::1'
  if (!loopback) return false
  const hostCmp = o.port === '' ? h.hostname : h.host
  const originCmp = h.port === '' ? o.hostname : o.host
  return hostCmp.length > 0 && originCmp.length > 0 && hostCmp.toLowerCase() !== originCmp.toLowerCase()
}

async function send(res: ServerResponse, reply: Reply, head: boolean): Promise<void> {
  const headers: Record<string, string | number> = {
    'Content-Security-Policy': CSP,
    ...(reply.headers ?? {}),
  }
  if (reply.contentType) headers['Content-Type'] = reply.contentType
  if (reply.file) {
    let size: number
    try {
      size = (await stat(reply.file)).size
    } catch {
      res.writeHead(404, { 'Content-Security-Policy': CSP, 'Content-Length': 0 })
      res.end()
      return
    }
    const range = reply.range && reply.range.end < size ? reply.range : undefined
    headers['Content-Length'] = range ? range.end - range.start + 1 : size
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`
    res.writeHead(range ? 206 : reply.status, headers)
    if (head) {
      res.end()
      return
    }
    const stream = createReadStream(reply.file, range ? { start: range.start, end: range.end } : {})
    stream.on('error', () => res.destroy())
    stream.pipe(res)
    return
  }
  const body =
    reply.body === undefined
      ? Buffer.alloc(0)
      : Buffer.isBuffer(reply.body)
        ? reply.body
        : Buffer.from(reply.body, 'utf8')
  headers['Content-Length'] = body.length
  res.writeHead(reply.status, headers)
  res.end(head ? undefined : body)
}

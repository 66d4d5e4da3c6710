/**
 * The routes ComfyUI 0.8's own front end calls besides the prompt API, answered as its `app/user_manager.py`,
 * `app/model_manager.py`, `app/custom_node_manager.py` and `app/subgraph_manager.py` do, and its static web
 * root (`web.static('/', web_root)` behind the `cache_control` middleware).
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, rename, stat, writeFile, cp, rm } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path'
import type { DataDir } from './data-dir.js'
import { decodePng, encodePng } from './png.js'
import { PyFloat, dumpPyJson, isPyObject, parsePyJson } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'
import { PyError, pyStr } from './py-repr.js'
import { empty, json, readJson, text, withinDir } from './sim-http.js'
import type { Handler, Reply, Req } from './sim-http.js'

/** Registers one route: `{name}` is one path segment, `{name:.*}` the rest of the path. */
type AddRoute = (method: string, pattern: string, h: Handler) => void

interface FrontendRouteContext {
  readonly dir: DataDir
  /** The user directory of the request's user (`user/default`: the stand-in runs without --multi-user). */
  readonly userRoot: () => string
  /** A fresh uuid4 string (user ids). */
  readonly newId: () => string
  readonly log: (m: string) => void
}

/** Python's `folder_paths.supported_pt_extensions`. */
const PT_EXTENSIONS = new Set(['.ckpt', '.pt', '.pt2', '.bin', '.pth', '.safetensors', '.pkl', '.sft'])
const EXAMPLE_WORKFLOW_FOLDERS = ['example_workflows', 'example', 'examples', 'workflow', 'workflows']
const LOCALE_EXTRAS = ['nodeDefs.json', 'commands.json', 'settings.json']

const seconds = (ms: number): PyFloat => new PyFloat(ms / 1000)
const posix = (p: string): string => p.split(sep).join('/')

async function statOrNull(p: string): Promise<Stats | null> {
  try {
    return await stat(p)
  } catch {
    return null
  }
}

async function entriesSorted(d: string): Promise<Array<{ name: string; isDir: boolean }>> {
  let names: string[]
  try {
    names = await readdir(d)
  } catch {
    return []
  }
  const out: Array<{ name: string; isDir: boolean }> = []
  // Directory order is the file system's in Python; sorting keeps the stand-in reproducible.
  for (const name of names.sort()) {
    const s = await statOrNull(join(d, name))
    if (s) out.push({ name, isDir: s.isDirectory() })
  }
  return out
}

/** Python's `glob.glob(join(d, '*'))`: names not starting with '.', as full paths. */
async function globStar(d: string): Promise<Array<{ path: string; isDir: boolean }>> {
  return (await entriesSorted(d))
    .filter((e) => !e.name.startsWith('.'))
    .map((e) => ({ path: join(d, e.name), isDir: e.isDir }))
}

/** `glob.glob(join(d, '**', '*'), recursive=True)`: every non-hidden path below d, directory by directory. */
async function globRecursive(d: string): Promise<Array<{ path: string; isDir: boolean }>> {
  const out: Array<{ path: string; isDir: boolean }> = []
  const dirs = [d]
  const visit = async (p: string): Promise<void> => {
    for (const e of await globStar(p)) {
      if (e.isDir) {
        dirs.push(e.path)
        await visit(e.path)
      }
    }
  }
  await visit(d)
  for (const p of dirs) out.push(...(await globStar(p)))
  return out
}

function mergeJsonRecursive(base: PyValue, update: PyValue): PyValue {
  if (!isPyObject(base) || !isPyObject(update)) {
    if (Array.isArray(base) && Array.isArray(update)) return [...base, ...update]
    return update
  }
  const merged: PyObject = { ...base }
  for (const [k, v] of Object.entries(update)) {
    merged[k] = Object.hasOwn(merged, k) ? mergeJsonRecursive(merged[k]!, v) : v
  }
  return merged
}

/** `safe_load_json_file`: {} when absent or not valid JSON. */
async function loadJsonFile(p: string): Promise<PyValue> {
  let raw: string
  try {
    raw = await readFile(p, 'utf8')
  } catch {
    return {}
  }
  const parsed = parsePyJson(raw)
  return parsed.ok ? parsed.value : {}
}

export function registerFrontendRoutes(add: AddRoute, bare: AddRoute, ctx: FrontendRouteContext): void {
  const { dir } = ctx
  /** `get_request_user_filepath`: the path of `file` in the user's directory, or undefined outside it. */
  const userPath = async (file: string | undefined, createDir = true): Promise<string | undefined> => {
    const root = ctx.userRoot()
    let p = root
    if (file !== undefined) {
      let f = file
      if (f.includes('%')) {
        try {
          f = decodeURIComponent(f)
        } catch {
          // urllib's unquote is lenient: keep the text
        }
      }
      p = resolve(root, f)
      if (!withinDir(root, p)) return undefined
    }
    if (createDir) await mkdir(dirname(p), { recursive: true })
    return p
  }
  const fileInfo = async (p: string, relativeTo: string): Promise<PyObject> => {
    const s = await stat(p)
    return {
      path: posix(relative(relativeTo, p)),
      size: s.size,
      modified: seconds(s.mtimeMs),
      created: seconds(s.ctimeMs),
    }
  }

  add('GET', '/userdata', async (req) => {
    const directory = req.query.get('dir') ?? ''
    if (!directory) return text(400, 'Directory not provided')
    const path = await userPath(directory)
    if (!path) return text(403, 'Invalid directory')
    if (!(await statOrNull(path))) return text(404, 'Directory not found')
    const flag = (n: string): boolean => (req.query.get(n) ?? '').toLowerCase() === 'true'
    const [recurse, fullInfo, split] = [flag('recurse'), flag('full_info'), flag('split')]
    const found = recurse ? await globRecursive(path) : await globStar(path)
    const out: PyValue[] = []
    for (const e of found) {
      if (e.isDir) continue
      if (fullInfo) out.push(await fileInfo(e.path, path))
      else {
        const rel = posix(relative(path, e.path))
        out.push(split ? [rel, ...rel.split('/')] : rel)
      }
    }
    return json(out)
  })

  add('GET', '/v2/userdata', async (req) => {
    let requested = req.query.get('path') ?? ''
    try {
      requested = decodeURIComponent(requested)
    } catch {
      // unquote leaves bad escapes as they are
    }
    const base = ctx.userRoot()
    const target = requested ? await userPath(requested, false) : base
    if (!target) return text(400, 'Invalid path requested')
    const s = await statOrNull(target)
    if (!s) return target === base ? json([]) : text(404, 'Requested path not found')
    if (!s.isDirectory()) return text(400, 'Requested path is not a directory')
    const results: PyObject[] = []
    // os.walk, top down: a directory's subdirectories and files, then each subdirectory in turn.
    const walk = async (d: string): Promise<void> => {
      const entries = await entriesSorted(d)
      for (const e of entries) {
        if (e.isDir)
          results.push({ name: e.name, path: posix(relative(base, join(d, e.name))), type: 'directory' })
      }
      for (const e of entries) {
        if (e.isDir) continue
        const p = join(d, e.name)
        const st = await statOrNull(p)
        const info: PyObject = { name: e.name, path: posix(relative(base, p)), type: 'file' }
        if (st) {
          info.size = st.size
          info.modified = seconds(st.mtimeMs)
        }
        results.push(info)
      }
      for (const e of entries) if (e.isDir) await walk(join(d, e.name))
    }
    await walk(target)
    const key = (x: PyObject): [number, string] => [
      x.type === 'directory' ? 0 : 1,
      String(x.name).toLowerCase(),
    ]
    // Array.prototype.sort is stable, as Python's sort.
    results.sort((a, b) => {
      const [ka, kb] = [key(a), key(b)]
      if (ka[0] !== kb[0]) return ka[0] - kb[0]
      return ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0
    })
    return json(results)
  })

  add('POST', '/userdata/{file}/move/{dest}', async (req, [file, dest]) => {
    const source = await userPath(file!)
    if (!source) return empty(403)
    if (!(await statOrNull(source))) return empty(404)
    const target = await userPath(dest!)
    if (!target) return empty(403)
    const overwrite = req.query.get('overwrite') !== 'false'
    const fullInfo = (req.query.get('full_info') ?? 'false').toLowerCase() === 'true'
    if (!overwrite && (await statOrNull(target))) return text(409, 'File already exists')
    ctx.log(`moving '${source}' -> '${target}'\n`)
    // shutil.move: a rename, or copy-and-delete across devices.
    try {
      await rename(source, target)
    } catch {
      await cp(source, target, { recursive: true })
      await rm(source, { recursive: true, force: true })
    }
    const root = ctx.userRoot()
    return json(fullInfo ? await fileInfo(target, root) : relative(root, target))
  })

  // The stand-in runs without --multi-user: one user "default", and POST /users still adds to users.json.
  const users = new Map<string, string>([['default', 'default']])
  add('POST', '/users', async (req) => {
    const body = await readJson(req)
    if (!isPyObject(body)) throw new PyError('TypeError', 'list indices must be integers or slices, not str')
    if (!Object.hasOwn(body, 'username')) throw new PyError('KeyError', "'username'")
    const username = body.username!
    if (typeof username === 'string' && [...users.values()].includes(username))
      return json({ error: 'Duplicate username.' }, 400)
    if (typeof username !== 'string') throw new PyError('AttributeError', "object has no attribute 'strip'")
    const name = username.trim()
    if (!name) return json({ error: 'username not provided' }, 400)
    if (name.startsWith('__')) return json({ error: 'System User prefix not allowed' }, 400)
    const base = name.replace(/[^a-zA-Z0-9\-_]+/g, '-')
    if (base.startsWith('__')) return json({ error: 'System User prefix not allowed' }, 400)
    const userId = `${base}_${ctx.newId()}`
    users.set(userId, name)
    await writeFile(join(dir.user, 'users.json'), dumpPyJson(Object.fromEntries(users)))
    return json(userId)
  })

  add('GET', '/experiment/models', async () => {
    const out: PyObject[] = []
    for (const [name, folders] of Object.entries(dir.folderPaths())) {
      if (name === 'configs' || name === 'custom_nodes') continue
      out.push({ name, folders: [...folders] })
    }
    return json(out)
  })

  add('GET', '/experiment/models/{folder}', async (_r, [folder]) => {
    const paths = Object.hasOwn(dir.folderPaths(), folder!) ? dir.folderPaths()[folder!]! : undefined
    if (!paths) return empty(404)
    const out: PyObject[] = []
    for (const [index, root] of paths.entries()) {
      if (!(await statOrNull(root))?.isDirectory()) continue
      const walk = async (d: string): Promise<void> => {
        const entries = (await entriesSorted(d)).filter((e) => !e.name.startsWith('.'))
        for (const e of entries) {
          if (e.isDir || !PT_EXTENSIONS.has(extname(e.name).toLowerCase())) continue
          const p = join(d, e.name)
          const s = await statOrNull(p)
          if (!s) continue
          out.push({
            name: relative(root, p),
            pathIndex: index,
            modified: seconds(s.mtimeMs),
            created: seconds(s.ctimeMs),
            size: s.size,
          })
        }
        for (const e of entries) if (e.isDir && e.name !== '.git') await walk(join(d, e.name))
      }
      await walk(root)
    }
    return json(out)
  })

  add(
    'GET',
    '/experiment/models/preview/{folder}/{path_index}/{filename:.*}',
    async (_r, [folder, index]) => {
      const paths = Object.hasOwn(dir.folderPaths(), folder!) ? dir.folderPaths()[folder!]! : undefined
      if (!/^\s*[-+]?\d+\s*$/.test(index!))
        throw new PyError('ValueError', `invalid literal for int() with base 10: '${index}'`)
      if (!paths) return empty(404)
      const i = Number.parseInt(index!, 10)
      if ((i < 0 ? paths.length + i : i) >= paths.length || paths.length + i < 0)
        throw new PyError('IndexError', 'list index out of range')
      // The stand-in's model files carry no preview image (ComfyUI converts one to WebP when present).
      return empty(404)
    },
  )

  const customNodeDirs = (): string[] => dir.folderPaths().custom_nodes ?? []

  add('GET', '/workflow_templates', async () => {
    const out = new Map<string, string[]>()
    for (const root of customNodeDirs()) {
      for (const folderName of EXAMPLE_WORKFLOW_FOLDERS) {
        for (const pack of await globStar(root)) {
          if (!pack.isDir) continue
          for (const f of await globStar(join(pack.path, folderName))) {
            if (f.isDir || !f.path.endsWith('.json')) continue
            const packName = basename(pack.path)
            const list = out.get(packName) ?? []
            list.push(basename(f.path).slice(0, -'.json'.length))
            out.set(packName, list)
          }
        }
      }
    }
    return json(out)
  })

  add('GET', '/i18n', async () => {
    let translations: PyObject = {}
    for (const root of customNodeDirs()) {
      for (const pack of await globStar(root)) {
        if (!pack.isDir) continue
        const locales = join(pack.path, 'locales')
        for (const lang of await globStar(locales)) {
          if (!lang.isDir) continue
          const code = basename(lang.path)
          if (!Object.hasOwn(translations, code)) translations = { ...translations, [code]: {} }
          const main = await loadJsonFile(join(lang.path, 'main.json'))
          const node: PyObject = isPyObject(main) ? { ...main } : {}
          for (const extra of LOCALE_EXTRAS) {
            const data = await loadJsonFile(join(lang.path, extra))
            if (
              isPyObject(data) ? Object.keys(data).length > 0 : Array.isArray(data) ? data.length > 0 : !!data
            )
              node[extra.slice(0, -'.json'.length)] = data
          }
          if (Object.keys(node).length > 0) translations[code] = mergeJsonRecursive(translations[code]!, node)
        }
      }
    }
    return json(translations)
  })

  interface SubgraphEntry {
    source: string
    name: string
    path: string
    info: PyObject
    data?: string
  }
  // ComfyUI scans the custom node folders once and keeps the result for the life of the server.
  let subgraphs: Map<string, SubgraphEntry> | undefined
  const loadSubgraphs = async (): Promise<Map<string, SubgraphEntry>> => {
    if (subgraphs) return subgraphs
    const found = new Map<string, SubgraphEntry>()
    for (const root of customNodeDirs()) {
      for (const pack of await globStar(root)) {
        if (!pack.isDir) continue
        for (const f of await globStar(join(pack.path, 'subgraphs'))) {
          if (f.isDir || !f.path.endsWith('.json')) continue
          const file = posix(f.path)
          const id = createHash('sha256').update(`custom_node${file}`).digest('hex')
          found.set(id, {
            source: 'custom_node',
            name: basename(file, '.json'),
            path: file,
            info: { node_pack: 'custom_nodes.' + file.split('/').at(-3)! },
          })
        }
      }
    }
    subgraphs = found
    return found
  }
  const sanitize = (e: SubgraphEntry, removeData: boolean): PyObject => {
    const out: PyObject = { source: e.source, name: e.name, info: e.info }
    if (!removeData && e.data !== undefined) out.data = e.data
    return out
  }
  add('GET', '/global_subgraphs', async () => {
    const all = await loadSubgraphs()
    return json(new Map([...all].map(([id, e]) => [id, sanitize(e, true)])))
  })
  add('GET', '/global_subgraphs/{id}', async (_r, [id]) => {
    const e = (await loadSubgraphs()).get(id!)
    if (!e) return json(null)
    e.data ??= await readFile(e.path, 'utf8')
    return json(sanitize(e, false))
  })

  // The workflow-templates package as an empty catalogue: its index (and localized indexes) list nothing,
  // so the front end's template browser opens empty instead of failing. Served bare, as ComfyUI does.
  bare('GET', '/templates/{path:.*}', async (_r, [path]) => {
    if (/^index(\.[A-Za-z-]+)?\.json$/.test(path!))
      return { status: 200, body: '[]', contentType: 'application/json' }
    return text(404, '404: Not Found')
  })
}

/**
 * The alpha-copy of `POST /upload/mask`: the referenced original image with the uploaded mask's alpha
 * channel, keeping the original's text chunks. Nothing is written when the reference does not resolve
 * (ComfyUI ignores the 400/403 its save function returns and answers as for any upload).
 */
export async function saveMask(
  dir: DataDir,
  post: Map<string, string>,
  mask: Buffer,
  filepath: string,
): Promise<void> {
  if (!post.has('original_ref')) throw new PyError('TypeError', 'the JSON object must be str, not NoneType')
  const parsed = parsePyJson(post.get('original_ref')!)
  if (!parsed.ok) throw new PyError('json.decoder.JSONDecodeError', parsed.reason)
  const ref = parsed.value
  if (!isPyObject(ref)) throw new PyError('TypeError', 'list indices must be integers or slices, not str')
  if (!Object.hasOwn(ref, 'filename')) throw new PyError('KeyError', "'filename'")
  let filename = pyStr(ref.filename!)
  let outputDir: string | undefined
  for (const [suffix, d] of [
    ['[output]', dir.output],
    ['[input]', dir.input],
    ['[temp]', dir.temp],
  ] as const) {
    if (filename.endsWith(suffix)) {
      filename = filename.slice(0, -suffix.length - 1)
      outputDir = d
      break
    }
  }
  if (!filename || filename.startsWith('/') || filename.includes('..')) return
  outputDir ??= dir.dirByType(typeof ref.type === 'string' ? ref.type : 'output')
  if (outputDir === undefined) return
  const subfolder = typeof ref.subfolder === 'string' ? ref.subfolder : ''
  if (subfolder !== '') {
    const full = resolve(outputDir, subfolder)
    if (!withinDir(outputDir, full)) return
    outputDir = full
  }
  const file = join(outputDir, filename)
  if (!(await statOrNull(file))?.isFile()) return
  const original = decodePng(await readFile(file))
  const maskPng = decodePng(mask)
  if (!original.ok) throw new PyError('PIL.UnidentifiedImageError', `cannot identify image file '${file}'`)
  if (!maskPng.ok) throw new PyError('PIL.UnidentifiedImageError', 'cannot identify image file')
  const o = original.value
  const m = maskPng.value
  if (o.width !== m.width || o.height !== m.height) throw new PyError('ValueError', 'images do not match')
  const n = o.width * o.height
  const out = new Uint8Array(n * 4)
  for (let i = 0; i < n; i++) {
    const src = i * o.channels
    const rgb =
      o.channels <= 2
        ? [o.data[src]!, o.data[src]!, o.data[src]!]
        : [o.data[src]!, o.data[src + 1]!, o.data[src + 2]!]
    out.set(rgb, i * 4)
    // convert('RGBA') gives an opaque alpha to a mask without one.
    out[i * 4 + 3] = m.channels === 2 || m.channels === 4 ? m.data[i * m.channels + m.channels - 1]! : 255
  }
  const textChunks = [...o.text].map(([k, v]) => [k, v] as const)
  await writeFile(
    filepath,
    encodePng({ width: o.width, height: o.height, channels: 4, data: out }, { text: textChunks, level: 4 }),
  )
}

/** aiohttp's `FileResponse` content types: Python 3.12's built-in table (aiohttp keeps its own copy). */
const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.htm': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/vnd.microsoft.icon',
  '.txt': 'text/plain',
  '.webm': 'video/webm',
  '.mp4': 'video/mp4',
  '.wasm': 'application/wasm',
  '.map': 'application/octet-stream',
  '.gz': 'application/gzip',
}

function httpDate(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toUTCString()
}

/** A file reply as aiohttp's `FileResponse` gives it: ETag, Last-Modified, conditional 304. */
export async function fileResponse(
  req: Req,
  file: string,
  extra: Record<string, string> = {},
): Promise<Reply> {
  const s = await statOrNull(file)
  if (!s || !s.isFile()) return text(404, '404: Not Found')
  const mtimeNs = BigInt(Math.round(s.mtimeMs * 1e6))
  const etag = `"${mtimeNs.toString(16)}-${s.size.toString(16)}"`
  const headers: Record<string, string> = {
    ETag: etag,
    'Last-Modified': httpDate(s.mtimeMs),
    'Accept-Ranges': 'bytes',
    ...extra,
  }
  const inm = req.headers['if-none-match']
  if (typeof inm === 'string') {
    const tags = inm.split(',').map((t) => t.trim().replace(/^W\//, ''))
    if (tags.includes(etag) || tags.includes('*')) return { status: 304, headers }
  } else {
    const ims = req.headers['if-modified-since']
    if (typeof ims === 'string' && Date.parse(ims) >= Math.floor(s.mtimeMs / 1000) * 1000)
      return { status: 304, headers }
  }
  const reply: Reply = {
    status: 200,
    file,
    contentType: STATIC_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    headers,
  }
  const rangeHeader = req.headers.range
  if (typeof rangeHeader !== 'string') return reply
  // aiohttp's single-range support: `bytes=a-b`, `bytes=a-`, `bytes=-n`; anything else cannot be satisfied.
  const m = /^bytes=(\d*)-(\d*)$/.exec(rangeHeader.trim())
  let start = -1
  let end = s.size - 1
  if (m && (m[1] !== '' || m[2] !== '')) {
    if (m[1] === '') start = Math.max(0, s.size - Number(m[2]))
    else {
      start = Number(m[1])
      if (m[2] !== '') end = Math.min(end, Number(m[2]))
    }
  }
  if (start < 0 || start >= s.size || end < start)
    return { status: 416, headers: { 'Content-Range': `bytes */${s.size}` } }
  return { ...reply, range: { start, end } }
}

/** `web.static('/', web_root)`: the file under the root, 403 for a directory, 404 otherwise. */
export async function serveStatic(webRoot: string, req: Req): Promise<Reply> {
  let rel: string
  try {
    rel = decodeURIComponent(req.path)
  } catch {
    rel = req.path
  }
  const root = resolve(webRoot)
  const p = resolve(root, '.' + rel)
  if (!withinDir(root, p) || rel.includes('\0')) return text(404, '404: Not Found')
  const s = await statOrNull(p)
  if (s?.isDirectory()) return text(403, '403: Forbidden')
  return fileResponse(req, p)
}

const IMAGE_SUFFIXES = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp']

/** ComfyUI's `cache_control` middleware, on every response: decides Cache-Control from the path. */
export function cacheControl(path: string, status: number, headers: Record<string, string>): void {
  if (Object.keys(headers).some((k) => k.toLowerCase() === 'cache-control')) return
  const last = path.slice(path.lastIndexOf('/') + 1)
  const entryPoint = last.startsWith('index') && last.endsWith('.json')
  if (path.endsWith('.js') || path.endsWith('.css') || entryPoint) {
    headers['Cache-Control'] = 'no-cache'
    return
  }
  if (!IMAGE_SUFFIXES.some((s) => path.toLowerCase().endsWith(s))) return
  if (status === 404) headers['Cache-Control'] = 'public, max-age=3600'
  else if ([200, 201, 202, 203, 204, 205, 206, 301, 308].includes(status))
    headers['Cache-Control'] = 'public, max-age=86400'
  else if ([302, 303, 307].includes(status)) headers['Cache-Control'] = 'no-cache'
}

/**
 * `/view?channel=rgb` and `channel=a`: the image without its alpha, or only its alpha on black (an image
 * that is not RGBA, grey-and-alpha included, counts as opaque, as in ComfyUI's `img.mode == "RGBA"` test).
 */
export async function viewChannel(file: string, channel: 'rgb' | 'a'): Promise<Buffer> {
  const png = decodePng(await readFile(file))
  if (!png.ok) throw new PyError('PIL.UnidentifiedImageError', `cannot identify image file '${file}'`)
  const img = png.value
  const n = img.width * img.height
  const c = img.channels
  if (channel === 'rgb') {
    const out = new Uint8Array(n * 3)
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < 3; k++) out[i * 3 + k] = c <= 2 ? img.data[i * c]! : img.data[i * c + k]!
    }
    return encodePng({ width: img.width, height: img.height, channels: 3, data: out }, { level: 6 })
  }
  const out = new Uint8Array(n * 4)
  for (let i = 0; i < n; i++) out[i * 4 + 3] = c === 4 ? img.data[i * 4 + 3]! : 255
  return encodePng({ width: img.width, height: img.height, channels: 4, data: out }, { level: 6 })
}

/** `GET /extensions` with a web root: every .js file below web_root/extensions (a recursive glob), as URL paths. */
export async function webRootExtensions(webRoot: string): Promise<string[]> {
  const root = resolve(webRoot)
  const found = await globRecursive(join(root, 'extensions'))
  return found
    .filter((e) => !e.isDir && e.path.endsWith('.js'))
    .map((e) => '/' + posix(relative(root, e.path)))
}

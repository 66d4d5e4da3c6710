/**
 * Issue 15 items 1 and 2: the stand-in serves a front end build as ComfyUI's web root, and answers the
 * routes ComfyUI 0.8's front end calls with the shapes of server.py, app/*.py and api_server/.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodePng, encodePng } from './png.js'
import type { PyObject } from './py-json.js'
import { RecordingClient, request, startSim } from './sim-test-kit.js'

let web: string
let sim: Awaited<ReturnType<typeof startSim>>
let plain: Awaited<ReturnType<typeof startSim>>

beforeAll(async () => {
  web = await mkdtemp(join(tmpdir(), 'sim-web-'))
  await mkdir(join(web, 'assets'), { recursive: true })
  await writeFile(join(web, 'index.html'), '<!doctype html><title>front end</title>')
  await writeFile(join(web, 'assets', 'app.js'), 'console.log(1)\n')
  await writeFile(join(web, 'assets', 'app.css'), 'body{}')
  await writeFile(
    join(web, 'assets', 'logo.png'),
    encodePng({ width: 1, height: 1, channels: 3, data: new Uint8Array(3) }),
  )
  await writeFile(join(web, 'assets', 'index-en.json'), '{}')
  sim = await startSim({ webRoot: web })
  plain = await startSim()
})
afterAll(async () => {
  await sim.dispose()
  await plain.dispose()
  await rm(web, { recursive: true, force: true })
})

describe('issue 15 item 1: --web-root', () => {
  it('serves index.html at / with no-cache headers, and every non-API path from the root', async () => {
    const root = await fetch(sim.url + '/')
    expect(await root.text()).toBe('<!doctype html><title>front end</title>')
    expect(root.headers.get('content-type')).toBe('text/html')
    expect(root.headers.get('cache-control')).toBe('no-cache')
    expect(root.headers.get('pragma')).toBe('no-cache')
    expect(root.headers.get('expires')).toBe('0')
    const js = await fetch(sim.url + '/assets/app.js')
    expect(await js.text()).toBe('console.log(1)\n')
    expect(js.headers.get('content-type')).toBe('text/javascript')
    expect(js.headers.get('cache-control')).toBe('no-cache')
    expect(js.headers.get('etag')).toMatch(/^"[0-9a-f]+-f"$/)
    const again = await fetch(sim.url + '/assets/app.js', {
      headers: { 'if-none-match': js.headers.get('etag')! },
    })
    expect(again.status).toBe(304)
    const part = await fetch(sim.url + '/assets/app.js', { headers: { range: 'bytes=8-10' } })
    expect([part.status, part.headers.get('content-range'), await part.text()]).toEqual([
      206,
      'bytes 8-10/15',
      'log',
    ])
    const tail = await fetch(sim.url + '/assets/app.js', { headers: { range: 'bytes=-3' } })
    expect([tail.status, await tail.text()]).toEqual([206, '1)\n'])
    const beyond = await fetch(sim.url + '/assets/app.js', { headers: { range: 'bytes=99-' } })
    expect([beyond.status, beyond.headers.get('content-range')]).toEqual([416, 'bytes */15'])
    expect((await fetch(sim.url + '/assets/app.css')).headers.get('cache-control')).toBe('no-cache')
    expect((await fetch(sim.url + '/assets/index-en.json')).headers.get('cache-control')).toBe('no-cache')
    const png = await fetch(sim.url + '/assets/logo.png')
    expect([png.status, png.headers.get('cache-control')]).toEqual([200, 'public, max-age=86400'])
    const missing = await fetch(sim.url + '/user.css')
    expect([missing.status, await missing.text()]).toEqual([404, '404: Not Found'])
    const missingPng = await fetch(sim.url + '/nope.png')
    expect([missingPng.status, missingPng.headers.get('cache-control')]).toEqual([
      404,
      'public, max-age=3600',
    ])
    expect((await fetch(sim.url + '/assets')).status).toBe(403)
    expect((await fetch(sim.url + '/%2e%2e/%2e%2e/etc/passwd')).status).toBe(404)
    expect((await request(sim.url, 'GET', '/api/extensions')).body).toEqual([])
    await mkdir(join(web, 'extensions', 'core', 'sub'), { recursive: true })
    await writeFile(join(web, 'extensions', 'core', 'b.js'), '')
    await writeFile(join(web, 'extensions', 'core', 'sub', 'a.js'), '')
    await writeFile(join(web, 'extensions', 'core', 'notes.txt'), '')
    expect((await request(sim.url, 'GET', '/api/extensions')).body).toEqual([
      '/extensions/core/b.js',
      '/extensions/core/sub/a.js',
    ])
    expect((await request(plain.url, 'GET', '/api/extensions')).body).toEqual([])
    await fetch(sim.url + '/extensions/core/b.js')
    await fetch(sim.url + '/extensions/core/b.js')
    expect(
      sim.logs().filter((l) => l.m.includes('deprecated legacy API: /extensions/core/b.js.')).length,
    ).toBe(1)
    // The API still answers at the root and under /api.
    expect((await request(sim.url, 'GET', '/api/queue')).body).toEqual({
      queue_running: [],
      queue_pending: [],
    })
    expect((await request(sim.url, 'GET', '/queue')).status).toBe(200)
    // The static route takes every GET, so a POST-only route read with GET is a missing file.
    expect((await fetch(sim.url + '/interrupt')).status).toBe(404)
    const post = await fetch(sim.url + '/nothing-here', { method: 'POST' })
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET,HEAD'])
  })

  it('without a web root, / is a short page that says what it is', async () => {
    const root = await fetch(plain.url + '/')
    expect(root.status).toBe(200)
    expect(await root.text()).toContain('ComfyUI 0.8 stand-in')
    expect((await fetch(plain.url + '/assets/app.js')).status).toBe(404)
  })
})

describe('issue 15 item 2: the front end routes', () => {
  it('lists userdata as /api/userdata?dir=&recurse=&full_info=&split= does', async () => {
    const put = async (f: string, body: string): Promise<void> => {
      const r = await fetch(`${sim.url}/api/userdata/${encodeURIComponent(f)}`, { method: 'POST', body })
      expect(r.status).toBe(200)
    }
    await put('workflows/b.json', '{}')
    await put('workflows/a.json', '{"x": 1}')
    await put('workflows/sub/c.json', '[]')
    await put('workflows/.index.json', '{}')
    expect((await request(sim.url, 'GET', '/api/userdata')).status).toBe(400)
    expect((await request(sim.url, 'GET', '/api/userdata?dir=nothing')).text).toBe('Directory not found')
    expect((await request(sim.url, 'GET', '/api/userdata?dir=../..')).status).toBe(403)
    expect((await request(sim.url, 'GET', '/api/userdata?dir=workflows')).body).toEqual(['a.json', 'b.json'])
    expect((await request(sim.url, 'GET', '/api/userdata?dir=workflows&recurse=true')).body).toEqual([
      'a.json',
      'b.json',
      'sub/c.json',
    ])
    expect(
      (await request(sim.url, 'GET', '/api/userdata?dir=workflows&recurse=true&split=true')).body,
    ).toEqual([
      ['a.json', 'a.json'],
      ['b.json', 'b.json'],
      ['sub/c.json', 'sub', 'c.json'],
    ])
    const full = await request(
      sim.url,
      'GET',
      '/api/userdata?dir=workflows&recurse=true&full_info=true&split=true',
    )
    const rows = full.body as PyObject[]
    expect(rows.map((r) => [r.path, r.size])).toEqual([
      ['a.json', 8],
      ['b.json', 2],
      ['sub/c.json', 2],
    ])
    expect(full.text).toMatch(/"modified": \d+\.\d+, "created": \d+\.\d+/)

    const v2 = await request(sim.url, 'GET', '/api/v2/userdata?path=workflows')
    expect((v2.body as PyObject[]).map((r) => [r.name, r.path, r.type, r.size ?? null])).toEqual([
      ['sub', 'workflows/sub', 'directory', null],
      ['.index.json', 'workflows/.index.json', 'file', 2],
      ['a.json', 'workflows/a.json', 'file', 8],
      ['b.json', 'workflows/b.json', 'file', 2],
      ['c.json', 'workflows/sub/c.json', 'file', 2],
    ])
    expect((await request(sim.url, 'GET', '/api/v2/userdata?path=nope')).status).toBe(404)
    expect((await request(sim.url, 'GET', '/api/v2/userdata?path=workflows%2Fa.json')).text).toBe(
      'Requested path is not a directory',
    )

    const mv = await request(
      sim.url,
      'POST',
      '/api/userdata/workflows%2Fb.json/move/workflows%2Fnew%2Fd.json',
    )
    expect(mv.body).toBe('workflows/new/d.json')
    expect(await readFile(join(sim.dir.user, 'default', 'workflows', 'new', 'd.json'), 'utf8')).toBe('{}')
    expect((await request(sim.url, 'POST', '/api/userdata/workflows%2Fb.json/move/x.json')).status).toBe(404)
    const clash = await request(
      sim.url,
      'POST',
      '/api/userdata/workflows%2Fa.json/move/workflows%2Fnew%2Fd.json?overwrite=false',
    )
    expect([clash.status, clash.text]).toEqual([409, 'File already exists'])
    const info = await request(
      sim.url,
      'POST',
      '/api/userdata/workflows%2Fa.json/move/workflows%2Fe.json?full_info=true',
    )
    expect((info.body as PyObject).path).toBe('workflows/e.json')
    expect((info.body as PyObject).size).toBe(8)
  })

  it('adds users with POST /users as user_manager does', async () => {
    expect(await request(sim.url, 'POST', '/api/users', { username: 'default' })).toMatchObject({
      status: 400,
      body: { error: 'Duplicate username.' },
    })
    expect((await request(sim.url, 'POST', '/api/users', { username: '  ' })).body).toEqual({
      error: 'username not provided',
    })
    expect((await request(sim.url, 'POST', '/api/users', { username: '__sys' })).body).toEqual({
      error: 'System User prefix not allowed',
    })
    expect((await request(sim.url, 'POST', '/api/users', {})).status).toBe(500)
    const added = await request(sim.url, 'POST', '/api/users', { username: 'Ann Lee!' })
    expect(added.body).toMatch(/^Ann-Lee-_[0-9a-f-]{36}$/)
    const file = JSON.parse(await readFile(join(sim.dir.user, 'users.json'), 'utf8')) as Record<
      string,
      string
    >
    expect(file).toEqual({ default: 'default', [String(added.body)]: 'Ann Lee!' })
    expect((await request(sim.url, 'POST', '/api/users', { username: 'Ann Lee!' })).status).toBe(400)
  })

  it('answers /api/experiment/models and /api/experiment/models/{folder}', async () => {
    const folders = (await request(sim.url, 'GET', '/api/experiment/models')).body as PyObject[]
    expect(folders.map((f) => f.name)).not.toContain('configs')
    expect(folders.map((f) => f.name)).not.toContain('custom_nodes')
    expect(folders[0]).toEqual({
      name: 'checkpoints',
      folders: [join(sim.dir.models, 'checkpoints'), join(sim.dir.output, 'checkpoints')],
    })
    await mkdir(join(sim.dir.models, 'loras', 'style', '.hidden'), { recursive: true })
    await writeFile(join(sim.dir.models, 'loras', 'style', 'b.safetensors'), 'x')
    await writeFile(join(sim.dir.models, 'loras', 'style', 'notes.txt'), 'x')
    await writeFile(join(sim.dir.models, 'loras', 'style', '.hidden', 'h.safetensors'), 'x')
    const loras = (await request(sim.url, 'GET', '/api/experiment/models/loras')).body as PyObject[]
    expect(loras.map((m) => [m.name, m.pathIndex])).toEqual([
      ['audit-style-lora.safetensors', 0],
      ['style/b.safetensors', 0],
    ])
    expect(Object.keys(loras[1]!)).toEqual(['name', 'pathIndex', 'modified', 'created', 'size'])
    expect(loras[1]!.size).toBe(1)
    expect((await request(sim.url, 'GET', '/api/experiment/models/unet')).status).toBe(404)
    expect(
      (await request(sim.url, 'GET', '/api/experiment/models/preview/loras/0/style/b.safetensors')).status,
    ).toBe(404)
    expect(
      (await request(sim.url, 'GET', '/api/experiment/models/preview/loras/x/b.safetensors')).status,
    ).toBe(500)
  })

  it('gives empty, well-formed catalogues: templates, i18n, global subgraphs; /docs is absent', async () => {
    expect((await request(sim.url, 'GET', '/api/workflow_templates')).body).toEqual({})
    expect((await request(sim.url, 'GET', '/api/i18n')).body).toEqual({})
    expect((await request(sim.url, 'GET', '/api/global_subgraphs')).body).toEqual({})
    expect((await request(sim.url, 'GET', '/api/global_subgraphs/abc')).body).toBeNull()
    const index = await fetch(sim.url + '/templates/index.json')
    expect([index.status, index.headers.get('content-type'), await index.text()]).toEqual([
      200,
      'application/json',
      '[]',
    ])
    expect((await fetch(sim.url + '/templates/index.fr.json')).status).toBe(200)
    expect((await fetch(sim.url + '/templates/default.json')).status).toBe(404)
    expect((await fetch(plain.url + '/templates/index.json')).status).toBe(200)
    expect((await fetch(sim.url + '/docs/KSampler/en.md')).status).toBe(404)
    expect((await fetch(plain.url + '/docs/KSampler/en.md')).status).toBe(404)
  })

  it('reads custom node packs for templates, translations and subgraphs', async () => {
    const s = await startSim()
    try {
      const pack = join(s.dir.base, 'custom_nodes', 'pack-a')
      await mkdir(join(pack, 'example_workflows'), { recursive: true })
      await mkdir(join(pack, 'locales', 'en'), { recursive: true })
      await mkdir(join(pack, 'subgraphs'), { recursive: true })
      await writeFile(join(pack, 'example_workflows', 'demo.json'), '{}')
      await writeFile(join(pack, 'locales', 'en', 'main.json'), '{"a": {"b": 1}}')
      await writeFile(join(pack, 'locales', 'en', 'nodeDefs.json'), '{"N": {"display_name": "n"}}')
      await writeFile(join(pack, 'subgraphs', 'sg.json'), '{"nodes": []}')
      expect((await request(s.url, 'GET', '/api/workflow_templates')).body).toEqual({ 'pack-a': ['demo'] })
      expect((await request(s.url, 'GET', '/api/i18n')).body).toEqual({
        en: { a: { b: 1 }, nodeDefs: { N: { display_name: 'n' } } },
      })
      const list = (await request(s.url, 'GET', '/api/global_subgraphs')).body as PyObject
      const [id] = Object.keys(list)
      expect(list[id!]).toEqual({
        source: 'custom_node',
        name: 'sg',
        info: { node_pack: 'custom_nodes.pack-a' },
      })
      expect(((await request(s.url, 'GET', `/api/global_subgraphs/${id}`)).body as PyObject).data).toBe(
        '{"nodes": []}',
      )
    } finally {
      await s.dispose()
    }
  })

  it('serves /internal/logs and sends logs events after PATCH /internal/logs/subscribe', async () => {
    const c = new RecordingClient(sim.url, 'log-watcher')
    await c.opened
    const sub = await fetch(sim.url + '/internal/logs/subscribe', {
      method: 'PATCH',
      body: JSON.stringify({ clientId: 'log-watcher', enabled: true }),
    })
    expect(sub.status).toBe(200)
    expect(
      (await fetch(sim.url + '/api/internal/logs/subscribe', { method: 'PATCH', body: '{}' })).status,
    ).not.toBe(200)
    await request(sim.url, 'POST', '/prompt', { prompt: {} })
    const ev = await c.waitFor((f) => f.type === 'logs')
    const entries = ev.data.entries as PyObject[]
    expect(entries).toHaveLength(1)
    expect(entries[0]!.m).toBe('got prompt\n')
    expect(String(entries[0]!.t)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/)
    expect(Object.keys(ev.data)).toEqual(['entries', 'size'])
    await fetch(sim.url + '/internal/logs/subscribe', {
      method: 'PATCH',
      body: JSON.stringify({ clientId: 'log-watcher', enabled: false }),
    })
    await request(sim.url, 'POST', '/prompt', { prompt: {} })
    // Frames on one socket keep their order: after re-subscribing, the next prompt's lines arrive last,
    // so any line sent while unsubscribed would already be here.
    await fetch(sim.url + '/internal/logs/subscribe', {
      method: 'PATCH',
      body: JSON.stringify({ clientId: 'log-watcher', enabled: true }),
    })
    await request(sim.url, 'POST', '/prompt', { prompt: {}, client_id: 'third' })
    await c.waitFor(
      (f) =>
        f.type === 'logs' &&
        (f.data.entries as PyObject[])[0]!.m !== 'got prompt\n' &&
        c.frames.filter((x) => x.type === 'logs').length >= 4,
    )
    const lines = c.frames
      .filter((f) => f.type === 'logs')
      .map((f) => String((f.data.entries as PyObject[])[0]!.m).slice(0, 14))
    expect(lines).toEqual(['got prompt\n', 'invalid prompt', 'got prompt\n', 'invalid prompt'])
    expect(sim.logs().filter((l) => l.m === 'got prompt\n').length).toBeGreaterThanOrEqual(3)
    // The size is sent once, then only when it changes.
    expect(c.frames.filter((f) => f.type === 'logs').map((f) => f.data.size)).toEqual([
      { cols: 80, rows: 24 },
      null,
      null,
      null,
    ])
    expect((await request(sim.url, 'PATCH', '/internal/logs/subscribe', { enabled: true })).status).toBe(500)
    const logs = await request(sim.url, 'GET', '/internal/logs')
    expect(String(logs.body)).toContain(' - got prompt\n')
    await c.close()
  })

  it('applies an uploaded mask to the referenced image with POST /upload/mask', async () => {
    const size = 2
    const original = encodePng(
      {
        width: size,
        height: size,
        channels: 3,
        data: new Uint8Array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]),
      },
      { text: [['prompt', '{"1": {}}']] },
    )
    await writeFile(join(sim.dir.input, 'masked-src.png'), original)
    const mask = encodePng({
      width: size,
      height: size,
      channels: 4,
      data: new Uint8Array(16).fill(0).map((_, i) => (i % 4 === 3 ? i * 10 : 0)),
    })
    const form = new FormData()
    form.append('image', new Blob([mask], { type: 'image/png' }), 'clipspace-mask.png')
    form.append('type', 'input')
    form.append('subfolder', 'clipspace')
    form.append('original_ref', JSON.stringify({ filename: 'masked-src.png', type: 'input', subfolder: '' }))
    const r = await fetch(sim.url + '/api/upload/mask', { method: 'POST', body: form })
    expect(await r.json()).toEqual({ name: 'clipspace-mask.png', subfolder: 'clipspace', type: 'input' })
    const saved = decodePng(await readFile(join(sim.dir.input, 'clipspace', 'clipspace-mask.png')))
    expect(saved.ok).toBe(true)
    if (!saved.ok) return
    expect(saved.value.channels).toBe(4)
    expect([...saved.value.data]).toEqual([
      10, 20, 30, 30, 40, 50, 60, 70, 70, 80, 90, 110, 100, 110, 120, 150,
    ])
    expect(saved.value.text).toEqual([['prompt', '{"1": {}}']])
    // The editor reads the two halves back through /view?channel=.
    const view = (ch: string): string =>
      `${sim.url}/api/view?filename=clipspace-mask.png&type=input&subfolder=clipspace&channel=${ch}`
    const rgb = decodePng(Buffer.from(await (await fetch(view('rgb'))).arrayBuffer()))
    const alpha = decodePng(Buffer.from(await (await fetch(view('a'))).arrayBuffer()))
    expect(rgb.ok && [rgb.value.channels, [...rgb.value.data]]).toEqual([
      3,
      [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120],
    ])
    expect(alpha.ok && [...alpha.value.data]).toEqual([0, 0, 0, 30, 0, 0, 0, 70, 0, 0, 0, 110, 0, 0, 0, 150])
    const opaque = decodePng(
      Buffer.from(
        await (await fetch(`${sim.url}/view?filename=masked-src.png&type=input&channel=a`)).arrayBuffer(),
      ),
    )
    expect(opaque.ok && [...opaque.value.data].filter((_, i) => i % 4 === 3)).toEqual([255, 255, 255, 255])
    // A reference that does not resolve writes nothing and still answers as an upload.
    const bad = new FormData()
    bad.append('image', new Blob([mask], { type: 'image/png' }), 'other-mask.png')
    bad.append('original_ref', JSON.stringify({ filename: '../x.png' }))
    const r2 = await fetch(sim.url + '/upload/mask', { method: 'POST', body: bad })
    expect(r2.status).toBe(200)
    const noRef = new FormData()
    noRef.append('image', new Blob([mask], { type: 'image/png' }), 'third-mask.png')
    expect((await fetch(sim.url + '/upload/mask', { method: 'POST', body: noRef })).status).toBe(500)
  })
})

import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodePng } from './png.js'
import { isPyObject, parsePyJson } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'
import { RecordingClient, imagePipeline, request, startSim } from './sim-test-kit.js'

describe('the stand-in HTTP API', () => {
  let sim: Awaited<ReturnType<typeof startSim>>
  let a: RecordingClient
  const ids: string[] = []
  let clock = 1_795_665_242_000
  beforeAll(async () => {
    sim = await startSim({ now: () => (clock += 7) })
    a = new RecordingClient(sim.url, 'client-a')
    await a.opened
    for (const [blur, wf] of [
      [3, 'wf-1'],
      [4, 'wf-2'],
      [5, 'wf-1'],
    ] as const) {
      const r = await request(sim.url, 'POST', '/prompt', {
        prompt: imagePipeline(blur),
        client_id: 'client-a',
        extra_data: { extra_pnginfo: { workflow: { id: wf, nodes: [] } } },
      })
      ids.push(String((r.body as PyObject).prompt_id))
    }
    await a.ended(ids[2]!)
    await sim.idle()
  })
  afterAll(async () => {
    await a.close()
    await sim.dispose()
  })

  it('writes SaveImage files with ComfyUI names and its prompt/workflow text chunks', async () => {
    const hist = (await request(sim.url, 'GET', `/history/${ids[0]}`)).body as PyObject
    const images = (((hist[ids[0]!] as PyObject).outputs as PyObject)['5'] as PyObject).images as PyObject[]
    expect(images).toEqual([{ filename: 'pipeline_00001_.png', subfolder: 'audit', type: 'output' }])
    const res = await fetch(`${sim.url}/view?filename=pipeline_00001_.png&subfolder=audit&type=output`)
    expect(res.headers.get('content-type')).toBe('image/png')
    const png = decodePng(Buffer.from(await res.arrayBuffer()))
    expect(png.ok).toBe(true)
    if (!png.ok) return
    expect([png.value.width, png.value.height]).toEqual([384, 384])
    const text = Object.fromEntries(png.value.text)
    const prompt = parsePyJson(text.prompt!)
    expect(prompt.ok && isPyObject(prompt.value)).toBe(true)
    const node1 = (prompt.ok ? (prompt.value as PyObject)['1'] : null) as PyObject
    expect((node1.is_changed as string[])[0]).toMatch(/^[0-9a-f]{64}$/)
    expect(text.prompt).toContain(
      '"scale_by": 1.5}}, "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 3, "sigma": 1.0}}',
    )
    expect(text.workflow).toBe('{"id": "wf-1", "nodes": []}')
    // The counter continues from the highest existing file.
    const third = (await request(sim.url, 'GET', `/history/${ids[2]}`)).body as PyObject
    expect(JSON.stringify((third[ids[2]!] as PyObject).outputs)).toContain('pipeline_00003_.png')
  })

  it('names PreviewImage files ComfyUI_temp_<5 letters>_NNNNN_.png in temp', async () => {
    const hist = (await request(sim.url, 'GET', `/history/${ids[0]}`)).body as PyObject
    const img = (
      (((hist[ids[0]!] as PyObject).outputs as PyObject)['6'] as PyObject).images as PyObject[]
    )[0]!
    expect(img.filename).toMatch(/^ComfyUI_temp_[a-z]{5}_00001_\.png$/)
    expect(img.type).toBe('temp')
    const res = await fetch(`${sim.url}/api/view?filename=${String(img.filename)} [temp]`)
    expect(res.status).toBe(200)
  })

  it.each([
    ['/view?filename=../secret.png', 400],
    ['/view?filename=/etc/passwd', 400],
    ['/view?filename=x.png&subfolder=../../', 403],
    ['/view?filename=missing.png', 404],
    ['/view', 404],
    ['/view?filename=x.png&type=nope', 400],
  ])('answers %s with %i', async (path, status) => {
    expect((await fetch(sim.url + path)).status).toBe(status)
  })

  it('lists jobs with filters, sorting and pagination', async () => {
    const all = (await request(sim.url, 'GET', '/api/jobs')).body as PyObject
    expect((all.jobs as PyObject[]).map((j) => j.id)).toEqual([...ids].reverse())
    expect(all.pagination).toEqual({ offset: 0, limit: null, total: 3, has_more: false })
    const page = (await request(sim.url, 'GET', '/api/jobs?limit=1&offset=1&sort_order=asc')).body as PyObject
    expect((page.jobs as PyObject[]).map((j) => j.id)).toEqual([ids[1]])
    expect(page.pagination).toEqual({ offset: 1, limit: 1, total: 3, has_more: true })
    const wf = (await request(sim.url, 'GET', '/api/api/jobs?workflow_id=wf-1')).body as PyObject
    expect((wf.jobs as PyObject[]).map((j) => j.id)).toEqual([ids[2], ids[0]])
    const job = (wf.jobs as PyObject[])[0]!
    expect(Object.keys(job)).toEqual([
      'id',
      'status',
      'priority',
      'create_time',
      'execution_start_time',
      'execution_end_time',
      'outputs_count',
      'preview_output',
      'workflow_id',
    ])
    expect(job.preview_output).toMatchObject({ type: 'output', nodeId: '5', mediaType: 'images' })
    const none = (await request(sim.url, 'GET', '/api/jobs?status=pending')).body as PyObject
    expect(none.jobs).toEqual([])
  })

  it.each([
    [
      '/api/jobs?status=done',
      'Invalid status value(s): done. Valid values: pending, in_progress, completed, failed',
    ],
    ['/api/jobs?sort_by=name', "sort_by must be 'created_at' or 'execution_duration'"],
    ['/api/jobs?sort_order=up', "sort_order must be 'asc' or 'desc'"],
    ['/api/jobs?limit=0', 'limit must be a positive integer'],
    ['/api/jobs?limit=x', 'limit must be an integer'],
    ['/api/jobs?offset=x', 'offset must be an integer'],
  ])('refuses %s with 400', async (path, error) => {
    const r = await request(sim.url, 'GET', path)
    expect(r.status).toBe(400)
    expect(r.body).toEqual({ error })
  })

  it('answers unknown jobs with 404 and has no /jobs route', async () => {
    const r = await request(sim.url, 'GET', '/api/jobs/nope')
    expect([r.status, r.body]).toEqual([404, { error: 'Job not found' }])
    expect((await request(sim.url, 'GET', '/jobs')).status).toBe(404)
  })

  it('pages history like ComfyUI: max_items gives the newest, offset counts from the oldest', async () => {
    const newest = (await request(sim.url, 'GET', '/history?max_items=2')).body as PyObject
    expect(Object.keys(newest)).toEqual([ids[1], ids[2]])
    const fromOffset = (await request(sim.url, 'GET', '/api/history?offset=1&max_items=1')).body as PyObject
    expect(Object.keys(fromOffset)).toEqual([ids[1]])
    expect((await request(sim.url, 'GET', '/history/unknown')).body).toEqual({})
    expect((await request(sim.url, 'GET', '/history?max_items=x')).status).toBe(500)
  })

  it('serves the catalogue with file lists that follow the folders', async () => {
    const before = (await request(sim.url, 'GET', '/object_info/LoadImage')).body as PyObject
    expect((((before.LoadImage as PyObject).input as PyObject).required as PyObject).image).toEqual([
      ['audit-input.png', 'example.png'],
      { image_upload: true },
    ])
    await writeFile(join(sim.dir.input, 'added.png'), await readFile(join(sim.dir.input, 'example.png')))
    const after = (await request(sim.url, 'GET', '/object_info')).body as PyObject
    expect(
      ((((after.LoadImage as PyObject).input as PyObject).required as PyObject).image as PyValue[])[0],
    ).toEqual(['added.png', 'audit-input.png', 'example.png'])
    expect((await request(sim.url, 'GET', '/object_info/NoSuch')).body).toEqual({})
  })

  it('lists models, reads safetensors metadata and 404s unknown folders', async () => {
    expect((await request(sim.url, 'GET', '/models/loras')).body).toEqual(['audit-style-lora.safetensors'])
    expect((await fetch(`${sim.url}/models/nope`)).status).toBe(404)
    expect(
      (await request(sim.url, 'GET', '/view_metadata/checkpoints?filename=audit-sd15-random.safetensors'))
        .body,
    ).toEqual({
      'modelspec.title': 'audit-sd15-random',
    })
    expect(
      (await request(sim.url, 'GET', '/api/view_metadata/loras?filename=audit-style-lora.safetensors')).body,
    ).toEqual({
      ss_output_name: 'audit-style-lora',
    })
    expect(
      (await fetch(`${sim.url}/view_metadata/checkpoints?filename=corrupt-model.safetensors`)).status,
    ).toBe(404)
  })

  it('stores uploads, reuses a name for the same content and renames different content', async () => {
    const send = async (content: string): Promise<PyObject> => {
      const form = new FormData()
      form.append('image', new Blob([content], { type: 'image/png' }), 'up.png')
      form.append('subfolder', 'uploads')
      const res = await fetch(`${sim.url}/upload/image`, { method: 'POST', body: form })
      expect(res.status).toBe(200)
      return JSON.parse(await res.text()) as PyObject
    }
    expect(await send('one')).toEqual({ name: 'up.png', subfolder: 'uploads', type: 'input' })
    expect(await send('one')).toEqual({ name: 'up.png', subfolder: 'uploads', type: 'input' })
    expect(await send('two')).toEqual({ name: 'up (1).png', subfolder: 'uploads', type: 'input' })
    expect(await readFile(join(sim.dir.input, 'uploads', 'up (1).png'), 'utf8')).toBe('two')
  })

  it('keeps user data inside the user folder', async () => {
    expect((await request(sim.url, 'POST', '/userdata/workflows%2Fa.json', '{"x": 1}')).body).toBe(
      'workflows/a.json',
    )
    expect((await request(sim.url, 'GET', '/api/userdata/workflows%2Fa.json')).text).toBe('{"x": 1}')
    expect((await fetch(`${sim.url}/userdata/..%2F..%2Fetc%2Fpasswd`)).status).toBe(403)
    expect((await fetch(`${sim.url}/userdata/workflows%2Fa.json`, { method: 'DELETE' })).status).toBe(204)
    expect((await fetch(`${sim.url}/userdata/workflows%2Fa.json`)).status).toBe(404)
  })

  it('answers unknown routes and wrong methods like aiohttp, and a 100 MiB body with 413', async () => {
    const nf = await request(sim.url, 'GET', '/nope')
    expect([nf.status, nf.text, nf.contentType]).toEqual([404, '404: Not Found', 'text/plain; charset=utf-8'])
    expect((await fetch(`${sim.url}/interrupt`)).status).toBe(405)
    const big = await fetch(`${sim.url}/prompt`, {
      method: 'POST',
      body: Buffer.alloc(100 * 1024 * 1024 + 10, 32),
    })
    expect(big.status).toBe(413)
    expect((await request(sim.url, 'GET', '/prompt')).status).toBe(200)
  })

  it('reports logs as one JSON string and the simulated H200', async () => {
    const logs = await request(sim.url, 'GET', '/internal/logs')
    expect(typeof logs.body).toBe('string')
    expect(String(logs.body)).toContain(' - got prompt\n')
    const stats = (await request(sim.url, 'GET', '/system_stats')).body as PyObject
    const dev = (stats.devices as PyObject[])[0]!
    expect(dev.name).toBe('cuda:0 NVIDIA H200 : cudaMallocAsync')
    expect(dev.vram_total).toBe(150109880320)
  })
})

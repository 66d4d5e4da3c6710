/**
 * Issue 9 ("secrets test") and issue 10 item 5: no planted secret reaches any byte the gateway writes.
 *
 * The real gateway runs as `comfy-audit serve --auth token` in a child process (so its stdout and stderr are
 * what an operator's log collector would keep), in front of the real stand-in, with a JSONL sink rotating and
 * gzipping small files and every HTTP sink (webhook, Loki, Elasticsearch, OTLP) pointed at a recording
 * receiver. One secret per known form is planted in every field a user can reach: prompt inputs, extra_data
 * (free text, secret keys, the UI workflow), filename_prefix (output file names and subfolders), an exception
 * message and the inputs ComfyUI echoes with it, request headers, query strings of ComfyUI and audit-API
 * routes, action bodies, an upload, a failed login, the gateway's own token and login cookie. After a clean
 * stop every file under the data dir (store, WAL, spools, rotated and gunzipped JSONL), the gateway's output
 * and every receiver's bodies are searched; a hit names the form and the field it was planted in.
 *
 * Each secret's needle is the part that must never be written, derived from its form and field, so a hit
 * says where the leak came from. Planted data must also be seen to arrive (sessions ended, receivers fed,
 * `[REDACTED]` written, a rotated .gz present), so the search cannot pass on an empty trail.
 */
import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { constants as zlibConstants, gunzipSync } from 'node:zlib'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createSimServer } from '../../src/sim/index.js'
import { sd15 } from '../../src/sim/sim-test-kit.js'
import { startRecordingServer, type RecordingServer } from '../../src/sinks/sink-test-kit.js'
import { cli } from '../helpers/cli.js'
import { spawnCli } from '../helpers/gateway-process.js'
import { findPostgresBin, startPostgres, type PostgresCluster } from '../helpers/postgres.js'

const DEADLINE_MS = 90_000

/** Where a secret was planted. */
const FIELDS = [
  'prompt_input', // a CLIPTextEncode text
  'prompt_input_key', // a node input under a secret-looking name
  'extra_data', // free text in extra_data
  'workflow', // extra_data.extra_pnginfo.workflow widgets_values
  'filename', // SaveImage filename_prefix (file name and subfolder of the output)
  'exception', // AuditFail's message: exception_message, current_inputs, the node run's error_message
  'header', // User-Agent and Referer of the requests
  'query', // query strings of ComfyUI routes (prompt, interrupt, queue, history, free, upload)
  'audit_url', // query strings of audit-API URLs
  'action_body', // interrupt / queue / history bodies
  'upload', // an uploaded file's name and subfolder
  'login', // a failed login's token field
] as const
type Field = (typeof FIELDS)[number]

/** The known forms of secret and how each is written around its needle. */
const FORMS = {
  bearer: (n: string) => `Bearer ${n}`,
  bearer_upper: (n: string) => `BEARER ${n}`,
  authorization_basic: (n: string) => `Authorization: Basic ${n}`,
  url_password: (n: string) => `https://svc-user:${n}@models.example.com/ckpt.safetensors`,
  redis_password: (n: string) => `redis://:${n}@cache.internal:6379/0`,
  query_token: (n: string) => `https://cdn.example.com/file.bin?token=${n}`,
  query_api_key: (n: string) => `https://api.example.com/v1/run?model=x&api_key=${n}`,
  amz_signature: (n: string) =>
    `https://bucket.s3.amazonaws.com/out.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300&X-Amz-Signature=${n}`,
  jwt: (n: string) => `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ${n}.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA`,
  openai_key: (n: string) => `sk-proj-${n}`,
  email: (n: string) => `${n}@example.org`,
} as const
type Form = keyof typeof FORMS

const cleanups: (() => Promise<void>)[] = []

/** Where each needle came from, to name a leak. */
const origins = new Map<string, string>()

/** The needle of one form in one field: hex, unique, and long enough for every pattern's minimum. */
function needle(form: string, field: string): string {
  const n = createHash('sha256').update(`${form}\u0000${field}`).digest('hex').slice(0, 40)
  origins.set(n, `${form} in ${field}`)
  return n
}
const secret = (form: Form, field: Field): string => FORMS[form](needle(form, field))
/** Every text form, one per line, planted in one field. */
const allForms = (field: Field): string =>
  (Object.keys(FORMS) as Form[]).map((form) => secret(form, field)).join('\n')

/** Secrets that are whole values (keys ComfyUI and the policy treat as secret, the gateway's credentials). */
function plantNeedle(label: string, value: string): string {
  origins.set(value, label)
  return value
}

interface Run {
  readonly stdout: string
  readonly stderr: string
  readonly dataDir: string
  /** The data dir's files as they were read while the gateway ran. */
  readonly running: { name: string; bytes: Buffer }[]
  readonly receivers: Record<string, RecordingServer>
  readonly promptIds: string[]
}

function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const started = Date.now()
  return new Promise<T>((resolve, reject) => {
    const tick = async (): Promise<void> => {
      try {
        const v = await probe()
        if (v !== undefined) return resolve(v)
      } catch {
        // not yet: the probe is retried until the deadline
      }
      if (Date.now() - started > DEADLINE_MS) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(() => void tick(), 50)
    }
    void tick()
  })
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode)
    else child.once('exit', (code) => resolve(code))
  })
}

function multipart(
  fields: Record<string, string>,
  file: { name: string; data: Buffer },
): {
  body: Buffer
  type: string
} {
  const boundary = 'secretsboundary7MA4YWxkTrZu0gW'
  const parts: Buffer[] = []
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`))
  }
  parts.push(
    Buffer.from(
      `--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="${file.name}"\r\n` +
        'content-type: image/png\r\n\r\n',
    ),
    file.data,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  )
  return { body: Buffer.concat(parts), type: `multipart/form-data; boundary=${boundary}` }
}

/** Runs the whole scenario against one store URL and returns everything the gateway wrote. */
async function runScenario(dir: string, storeUrl: string | null): Promise<Run> {
  const dataDir = join(dir, 'data')
  // A stand-in of its own per run, so its output folder holds only this run's images.
  const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 50 })
  cleanups.push(() => sim.close())
  const receivers: Record<string, RecordingServer> = {
    webhook: await startRecordingServer(),
    loki: await startRecordingServer(() => ({ status: 204 })),
    elasticsearch: await startRecordingServer(() => ({ status: 200, body: '{"errors":false,"items":[]}' })),
    otlp: await startRecordingServer(() => ({ status: 200, body: '{}' })),
  }
  for (const r of Object.values(receivers)) cleanups.push(() => r.close())
  await mkdir(dir, { recursive: true })
  const batch = { scheduledDelayMillis: 50 }
  const configFile = join(dir, 'config.json')
  await writeFile(
    configFile,
    JSON.stringify({
      ...(storeUrl ? { store: { url: storeUrl } } : {}),
      sinks: [
        // Small files, so the run rotates and gzips some of them.
        { type: 'jsonl', batch, rotation: { maxFileBytes: 8192, gzip: true } },
        {
          type: 'webhook',
          batch,
          url: `${receivers.webhook!.url}/hook`,
          secret: 'webhook-hmac-key-for-test',
        },
        { type: 'loki', batch, url: receivers.loki!.url },
        { type: 'elasticsearch', batch, url: receivers.elasticsearch!.url },
        { type: 'otlp', batch, url: receivers.otlp!.url },
      ],
    }),
  )
  const storeArgs = storeUrl ? ['--store', storeUrl] : []
  const added = await cli('users', 'add', 'alice', '--role', 'artist', '--data', dataDir, ...storeArgs)
  if (added.code !== 0) throw new Error(`users add failed: ${added.stderr}`)
  const token = plantNeedle('the gateway login token', added.stdout.trim().split('\n').at(-1)!)
  // An admin may delete any queue item and free memory: their actions are recorded, bodies and all.
  const addedAdmin = await cli('users', 'add', 'root', '--role', 'admin', '--data', dataDir, ...storeArgs)
  if (addedAdmin.code !== 0) throw new Error(`users add failed: ${addedAdmin.stderr}`)
  const adminToken = plantNeedle('the admin login token', addedAdmin.stdout.trim().split('\n').at(-1)!)

  const child = spawnCli([
    'serve',
    '--config',
    configFile,
    '--data',
    dataDir,
    '--auth',
    'token',
    '--listen',
    '127.0.0.1:0',
    '--comfyui',
    sim.url,
  ])
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
  const promptIds: string[] = []
  const running: { name: string; bytes: Buffer }[] = []
  try {
    const url = await waitFor('the gateway to listen', () => {
      if (child.exitCode !== null) throw new Error(`serve exited: ${stderr}`)
      return /listening on (http:\/\/\S+)/.exec(stdout)?.[1]
    })
    const userAgent = `secret-client/1.0 (${secret('openai_key', 'header')}; ${secret('bearer', 'header')})`
    const headers = {
      authorization: `Bearer ${token}`,
      'user-agent': userAgent,
      referer: secret('url_password', 'header'),
      'x-api-key': secret('openai_key', 'header'),
    }
    const clientId = 'secrets-client'
    const ws = new WebSocket(`${url.replace('http', 'ws')}/ws?clientId=${clientId}&token=${token}`, {
      headers: { 'user-agent': userAgent },
    })
    await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
    const ended = new Map<string, string>()
    ws.on('message', (raw, isBinary) => {
      if (isBinary) return
      const msg = JSON.parse(raw.toString()) as { type: string; data: { prompt_id?: string } }
      if (['execution_success', 'execution_error', 'execution_interrupted'].includes(msg.type)) {
        ended.set(msg.data.prompt_id ?? '', msg.type)
      }
    })

    const extraData = (field: Field) => ({
      note: allForms(field),
      api_key_comfy_org: plantNeedle(
        `api_key_comfy_org in ${field}`,
        `comfyorg-${needle('comfy_key', field)}`,
      ),
      auth_token_comfy_org: plantNeedle(
        `auth_token_comfy_org in ${field}`,
        `comfyorgauth${needle('comfy_auth', field)}`,
      ),
      Authorization: `Basic ${needle('authorization_key', field)}`,
      password: needle('password_key', field),
      extra_pnginfo: { workflow: { nodes: [{ id: 3, widgets_values: [allForms('workflow')] }] } },
    })
    const submit = async (prompt: Record<string, unknown>, field: Field): Promise<string> => {
      const res = await fetch(`${url}/prompt?api_key=${needle('query_api_key', 'query')}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt, client_id: clientId, extra_data: extraData(field) }),
      })
      const body = (await res.json()) as { prompt_id?: string }
      if (res.status !== 200 || !body.prompt_id)
        throw new Error(`POST /prompt: ${res.status} ${JSON.stringify(body)}`)
      promptIds.push(body.prompt_id)
      return body.prompt_id
    }

    // A successful run: secrets in a prompt text, under a secret input name, in extra_data and the
    // workflow, and in the SaveImage prefix, so they reach the output's file name and subfolder.
    const good = sd15(7, 2)
    ;(good['3'] as { inputs: Record<string, unknown> }).inputs.text = allForms('prompt_input')
    ;(good['3'] as { inputs: Record<string, unknown> }).inputs.api_key = needle(
      'input_key',
      'prompt_input_key',
    )
    ;(good['8'] as { inputs: Record<string, unknown> }).inputs.filename_prefix =
      `${secret('jwt', 'filename')}/${secret('openai_key', 'filename')}_${secret('email', 'filename')}`
    const goodId = await submit(good, 'extra_data')
    // A failing run: every form in the exception message (ComfyUI also echoes it in current_inputs).
    const failing = {
      '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
      '2': { class_type: 'AuditFail', inputs: { image: ['1', 0], message: allForms('exception') } },
      '3': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
    }
    const failId = await submit(failing, 'extra_data')
    await waitFor('both runs to end', () => (ended.has(goodId) && ended.has(failId) ? true : undefined))
    expect([ended.get(goodId), ended.get(failId)]).toEqual(['execution_success', 'execution_error'])

    // Actions with secrets in their query strings and bodies.
    const q = `?api_key=${needle('query_api_key', 'query')}&token=${needle('query_token', 'query')}`
    const post = (path: string, body: unknown, bearer = token): Promise<Response> =>
      fetch(`${url}${path}${q}`, {
        method: 'POST',
        headers: { ...headers, authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    const ids = [secret('openai_key', 'action_body'), secret('jwt', 'action_body')]
    expect((await post('/interrupt', { prompt_id: goodId })).status).toBe(200)
    // An artist's delete of ids that are not theirs is refused (and logged); an admin's is recorded.
    expect((await post('/queue', { delete: ids })).status).toBe(403)
    expect((await post('/queue', { delete: ids }, adminToken)).status).toBe(200)
    expect((await post('/history', { delete: ids }, adminToken)).status).toBe(200)
    expect((await post('/interrupt', { prompt_id: ids[0] }, adminToken)).status).toBe(200)
    expect((await post('/free', { unload_models: false, free_memory: false }, adminToken)).status).toBe(200)
    const upload = multipart(
      { subfolder: secret('email', 'upload'), type: 'input', overwrite: 'true' },
      {
        name: `${secret('openai_key', 'upload')}.png`,
        data: await readFile(join(sim.dir.base, 'input', 'audit-input.png')),
      },
    )
    const uploaded = await fetch(`${url}/upload/image${q}`, {
      method: 'POST',
      headers: { ...headers, 'content-type': upload.type },
      body: upload.body,
    })
    expect(uploaded.status).toBe(200)

    // The browser login: a failed one with a key pasted as the token, then a good one whose cookie is used.
    const login = (tokenField: string): Promise<Response> =>
      fetch(`${url}/_audit/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': userAgent },
        body: new URLSearchParams({ token: tokenField, next: '/' }).toString(),
      })
    expect((await login(secret('openai_key', 'login'))).status).toBe(401)
    const good303 = await login(token)
    expect(good303.status).toBe(303)
    const cookie = /^([^=]+)=([^;]+)/.exec(good303.headers.get('set-cookie') ?? '')
    if (!cookie) throw new Error('no session cookie')
    plantNeedle('the login session cookie', cookie[2]!)
    const cookieHeader = `${cookie[1]}=${cookie[2]}`

    // Audit-API reads: the token as ?token= (how a browser link would carry it), a cookie, secret queries.
    const auditGet = (path: string, h: Record<string, string>): Promise<Response> =>
      fetch(`${url}${path}`, { headers: { 'user-agent': userAgent, ...h } })
    // Refused or not (a token belongs in a header), the URL reached the gateway.
    await auditGet(`/_audit/api/sessions?token=${token}`, {})
    const read = await auditGet(
      `/_audit/api/sessions?limit=5&api_key=${needle('query_api_key', 'audit_url')}&x=${secret('url_password', 'audit_url')}`,
      { cookie: cookieHeader },
    )
    expect(read.status).toBe(200)
    expect(
      (
        await auditGet(`/_audit/api/sessions/${goodId}?token=${needle('query_token', 'audit_url')}`, {
          authorization: `Bearer ${token}`,
        })
      ).status,
    ).toBe(200)
    ws.close()

    // The trail must hold the runs before the search means anything.
    await waitFor('both sessions to be final in the store', async () => {
      const res = await fetch(`${url}/_audit/api/sessions?limit=10`, {
        headers: { authorization: `Bearer ${token}` },
      })
      const text = await res.text()
      return text.includes('"success"') && text.includes('"error"') ? true : undefined
    })
    // The output whose name held secrets is recorded under its redacted name, and still hashed: the image
    // itself (under its real name in ComfyUI's output folder) traces to its run.
    const outputDir = join(sim.dir.base, 'output')
    const produced = (await readdir(outputDir, { recursive: true })).filter((f) =>
      f.includes(needle('openai_key', 'filename')),
    )
    expect(produced.length).toBe(1)
    const image = await readFile(join(outputDir, produced[0]!))
    const traced = await waitFor('the image with a secret in its name to trace to its run', async () => {
      const res = await fetch(`${url}/_audit/api/trace`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'image/png' },
        body: image,
      })
      const text = await res.text()
      return res.status === 200 && text.includes(goodId) ? text : undefined
    })
    expect(traced).toContain('[REDACTED]')
    // The data dir's bytes while the gateway runs: the WAL and the spools as they are before a clean stop
    // folds them away.
    running.push(...(await allBytes(dataDir, false)))
  } finally {
    child.kill('SIGTERM')
    await exited(child)
  }
  const code = child.exitCode
  expect({ code, stderr }).toMatchObject({ code: 0 })
  return { stdout, stderr, dataDir, running, receivers, promptIds }
}

/**
 * Every file under `dir`, gzipped ones also unzipped. Read while the gateway runs too: a file renamed away
 * meanwhile (a cursor's temp file) is skipped, and a gzip file still being written is unzipped as far as it goes.
 */
async function allBytes(dir: string, stopped: boolean): Promise<{ name: string; bytes: Buffer }[]> {
  const out: { name: string; bytes: Buffer }[] = []
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    const name = path.slice(dir.length + 1)
    let bytes: Buffer
    try {
      bytes = await readFile(path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw error
    }
    out.push({ name, bytes })
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
      let unzipped: Buffer
      try {
        unzipped = gunzipSync(bytes, { finishFlush: zlibConstants.Z_SYNC_FLUSH })
      } catch (error) {
        // Only a file caught mid-write may be cut inside its header; after the stop every one must unzip.
        if (stopped) throw error
        continue
      }
      out.push({ name: `${name} (gunzipped)`, bytes: unzipped })
    }
  }
  return out
}

/** Every planted needle found in `places`, one line per origin: `form in field → where, where`. */
function leaks(places: { name: string; bytes: Buffer }[]): string[] {
  const found = new Map<string, Set<string>>()
  const add = (origin: string, place: string): void => {
    // Rotated JSONL files are many: one entry for them all keeps the report readable.
    const where = /jsonl\/.*\.jsonl/.test(place) ? 'JSONL files' : place
    found.set(origin, (found.get(origin) ?? new Set()).add(where))
  }
  for (const [n, origin] of origins) {
    const forms = [n, Buffer.from(n).toString('hex')]
    for (const p of places) if (forms.some((f) => p.bytes.includes(f))) add(origin, p.name)
  }
  // The stand-in's tracebacks name /home/artist: maskHomePaths must hide the user name.
  for (const p of places) if (p.bytes.includes('/home/artist')) add('home path in a traceback', p.name)
  return [...found].map(([origin, where]) => `${origin} → ${[...where].sort().join(', ')}`).sort()
}

async function checkRun(run: Run, extra: { name: string; bytes: Buffer }[] = []): Promise<void> {
  const files = await allBytes(run.dataDir, true)
  // Positive controls: the trail was written, rotated, redacted, and every receiver got the failing run.
  expect(files.some((f) => f.name.endsWith('.gz'))).toBe(true)
  const jsonl = files.filter((f) => f.name.includes('jsonl')).map((f) => f.bytes.toString('utf8'))
  expect(jsonl.join('').includes(run.promptIds[1]!)).toBe(true)
  expect(
    files.some((f) => f.bytes.includes('[REDACTED]')) || extra.some((f) => f.bytes.includes('[REDACTED]')),
  ).toBe(true)
  const bodies: { name: string; bytes: Buffer }[] = []
  for (const [name, r] of Object.entries(run.receivers)) {
    const all = r.requests
      .map((q) => `${q.method} ${q.url}\n${JSON.stringify(q.headers)}\n${q.body}`)
      .join('\n')
    expect([name, all.includes(run.promptIds[1]!)]).toEqual([name, true])
    bodies.push({ name: `${name} receiver`, bytes: Buffer.from(all) })
  }
  // Every field of the list got its secrets (a field dropped from the scenario would pass unseen).
  const planted = [...origins.values()]
  expect(FIELDS.filter((f) => !planted.some((o) => o.endsWith(` in ${f}`)))).toEqual([])
  const places = [
    ...files.map((f) => ({ ...f, name: `data/${f.name}` })),
    ...run.running.map((f) => ({ ...f, name: `data while running/${f.name}` })),
    { name: 'gateway stdout', bytes: Buffer.from(run.stdout) },
    { name: 'gateway stderr', bytes: Buffer.from(run.stderr) },
    ...bodies,
    ...extra,
  ]
  expect(leaks(places)).toEqual([])
}

describe('no planted secret reaches any byte the gateway writes', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secrets-everywhere-'))
  })
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!()
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('on SQLite: store, WAL, spools, JSONL (gzipped too), logs and every sink body', async () => {
    const run = await runScenario(join(dir, 'sqlite'), null)
    expect(existsSync(join(run.dataDir, 'audit.sqlite'))).toBe(true)
    // The write-ahead log was there to be searched.
    expect(run.running.some((f) => f.name === 'audit.sqlite-wal' && f.bytes.length > 0)).toBe(true)
    await checkRun(run)
  }, 180_000)

  const pgBin = findPostgresBin()
  describe.skipIf(!pgBin)('on PostgreSQL', () => {
    let cluster: PostgresCluster
    beforeAll(async () => {
      cluster = await startPostgres()
    }, 60_000)
    afterAll(async () => {
      await cluster?.stop()
    })

    it('tables dumped as text, the data dir, logs and every sink body', async () => {
      const url = await cluster.createDatabase()
      const run = await runScenario(join(dir, 'pg'), url)
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      const dump: string[] = []
      try {
        const tables = await client.query<{ t: string }>(
          "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
        )
        expect(tables.rows.length).toBeGreaterThan(0)
        for (const { t } of tables.rows) {
          const rows = await client.query<{ r: string }>(`SELECT row_to_json(x)::text AS r FROM ${t} AS x`)
          dump.push(`-- ${t}`, ...rows.rows.map((r) => r.r))
        }
      } finally {
        await client.end()
      }
      const text = dump.join('\n')
      expect(text.includes(run.promptIds[1]!)).toBe(true)
      await checkRun(run, [{ name: 'PostgreSQL tables', bytes: Buffer.from(text) }])
    }, 180_000)
  })
})

/**
 * Issue 10 item 12, a versioned record format: a real gateway in front of the stand-in, with every sink type
 * pointed at local receivers, runs a graph whose inputs ComfyUI spelled as floats (`cfg: 1.0`, `denoise: 1.00`,
 * `1e5`, `-0.0`, NaN in extra_data) and whose output file name holds a lone surrogate, a failing graph and an
 * interrupt. Then every export line (`export` of node runs, sessions and outputs, `sessions --json`,
 * `show --json`) and every record in every sink body (JSONL files, webhook, Loki, Elasticsearch) must carry
 * `schema_version` and validate against schemas/*.schema.json; OTLP spans carry the version as an attribute;
 * the floats keep their spelling on disk, in exports and in sink bodies; and `verify` says OK.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { parseJson, stringifyJson } from '../../src/audit/json.js'
import { RECORD_SCHEMA_VERSION, type JsonObject, type JsonValue } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { sd15 } from '../../src/sim/sim-test-kit.js'
import { startRecordingServer, type RecordingServer } from '../../src/sinks/sink-test-kit.js'
import { cli } from '../helpers/cli.js'
import { schemaErrors, schemaOfSinkRecord, type RecordSchema } from '../helpers/record-schemas.js'

// The gateway refuses a lone surrogate in a request body (src/gateway/strict-json.ts); ComfyUI reports one in a
// file name of a run that did not pass the gateway, which the bypass sweep then records.
const ODD_PREFIX = 'audit/rf\ud800'
let sim: SimServer
let audit: AuditGateway | undefined
let data: string
const receivers: Record<'webhook' | 'loki' | 'elasticsearch' | 'otlp', RecordingServer> = {} as never
const ids = { ok: '', failed: '', bypass: '' }

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function parseTagged(line: string): JsonObject {
  const parsed = parseJson(line, { tagged: true })
  if (!parsed.ok) throw new Error(`${parsed.reason}: ${line.slice(0, 200)}`)
  return parsed.value as JsonObject
}

/** The sd15 graph (2 steps, 64x64) as request text, with the float spellings under test. */
function promptBody(): string {
  const graph = sd15(7, 2) as Record<string, { inputs: Record<string, unknown> }>
  graph['5']!.inputs.width = 64
  graph['5']!.inputs.height = 64
  graph['8']!.inputs.filename_prefix = 'audit/rf'
  const text = stringifyJson({
    prompt: graph,
    client_id: 'rf',
    extra_data: { scale: 0, shift: 0, nan: 0 },
  } as unknown as JsonObject)
  // Spellings JS would never write: the request text is what ComfyUI (Python) parses and keeps.
  return text
    .replace('"cfg":7', '"cfg":1.0')
    .replace('"denoise":1', '"denoise":1.00')
    .replace('"strength_clip":0.6', '"strength_clip":-0.0')
    .replace('"scale":0', '"scale":1e5')
    .replace('"shift":0', '"shift":-0.0')
    .replace('"nan":0', '"nan":NaN')
}

beforeAll(async () => {
  sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'rf-sim-')), port: 0, speed: 1000 })
  data = mkdtempSync(join(tmpdir(), 'rf-data-'))
  receivers.webhook = await startRecordingServer()
  receivers.loki = await startRecordingServer(() => ({ status: 204 }))
  receivers.elasticsearch = await startRecordingServer(() => ({
    status: 200,
    body: '{"errors":false,"items":[]}',
  }))
  receivers.otlp = await startRecordingServer()
  const file = join(data, 'config.json')
  const retry = { maxAttempts: 3 }
  await writeFile(
    file,
    JSON.stringify({
      sinks: [
        { type: 'jsonl' },
        { type: 'webhook', url: receivers.webhook.url, secret: 'a-webhook-secret-for-tests', retry },
        { type: 'loki', url: receivers.loki.url, retry },
        { type: 'elasticsearch', url: receivers.elasticsearch.url, retry },
        { type: 'otlp', url: receivers.otlp.url, retry },
      ],
    }),
  )
  const config = loadConfig({
    file,
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: 'rf-test' },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const gateway = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  audit = gateway
  const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/ws?clientId=rf`)
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  const ended = new Set<string>()
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return
    const msg = JSON.parse(raw.toString()) as { type: string; data: { prompt_id?: string } }
    if (/^execution_(success|error|interrupted)$/.test(msg.type) && msg.data.prompt_id)
      ended.add(msg.data.prompt_id)
  })
  const submit = async (body: string): Promise<string> => {
    const res = await fetch(`${gateway.url}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    })
    const answer = (await res.json()) as { prompt_id?: string }
    if (res.status !== 200) throw new Error(`POST /prompt answered ${res.status}: ${JSON.stringify(answer)}`)
    return answer.prompt_id ?? ''
  }
  ids.ok = await submit(promptBody())
  await waitUntil('the float graph to finish', () => ended.has(ids.ok))
  ids.failed = await submit(
    stringifyJson({
      client_id: 'rf',
      prompt: {
        '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
        '2': { class_type: 'AuditFail', inputs: { image: ['1', 0], message: 'planned failure' } },
        '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/rf-fail' } },
      },
    }),
  )
  await waitUntil('the failing graph to finish', () => ended.has(ids.failed))
  const direct = await fetch(`${sim.url}/prompt`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: stringifyJson({
      prompt: {
        '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
        '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: 2, sigma: 1 } },
        '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: ODD_PREFIX } },
      },
    }).replace('"sigma":1', '"sigma":1.0'),
  })
  ids.bypass = ((await direct.json()) as { prompt_id: string }).prompt_id
  await waitUntil('the bypass run in ComfyUI history', async () => {
    const history = (await (await fetch(`${sim.url}/history/${ids.bypass}`)).json()) as Record<
      string,
      unknown
    >
    return ids.bypass in history
  })
  await gateway.reconcileNow()
  expect((await fetch(`${gateway.url}/interrupt`, { method: 'POST' })).status).toBe(200)
  ws.close()
  // Output hashes arrive after the run; wait until the JSONL sink has shipped one, then close everything.
  await waitUntil('an output SHA-256 in the JSONL sink', async () => {
    await gateway.sinks.forceFlush()
    return jsonlSinkRecords().some(
      (r) =>
        r.record_type === 'session' &&
        Array.isArray(r.outputs) &&
        JSON.stringify(r.outputs).includes('sha256'),
    )
  })
  await waitUntil('the action in the webhook body', async () => {
    await gateway.sinks.forceFlush()
    return receivers.webhook.requests.some((r) => r.body.includes('"record_type":"action"'))
  })
  await gateway.close()
  audit = undefined
}, 180_000)

afterAll(async () => {
  await audit?.close()
  for (const r of Object.values(receivers)) await r?.close()
  await sim?.close()
})

function jsonlSinkLines(): string[] {
  const dir = join(data, 'jsonl', 'jsonl')
  let names: string[]
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.jsonl'))
  } catch {
    return []
  }
  return names.flatMap((n) =>
    readFileSync(join(dir, n), 'utf8')
      .split('\n')
      .filter((l) => l.length > 0),
  )
}

function jsonlSinkRecords(): JsonObject[] {
  return jsonlSinkLines().map(parseTagged)
}

function expectValid(name: RecordSchema, records: readonly JsonObject[], where: string): void {
  expect(records.length, `${where}: no records`).toBeGreaterThan(0)
  const errors = records.flatMap((r) =>
    schemaErrors(name, r).map((e) => `${where} ${String(r.id ?? r.session_id)}: ${e}`),
  )
  expect(errors).toEqual([])
  for (const r of records) expect(r.schema_version).toBe(RECORD_SCHEMA_VERSION)
}

function expectValidSinkRecords(records: readonly JsonObject[], where: string): void {
  expect(records.length, `${where}: no records`).toBeGreaterThan(0)
  const errors = records.flatMap((r) =>
    schemaErrors(schemaOfSinkRecord(r), r).map((e) => `${where} ${String(r.id)}: ${e}`),
  )
  expect(errors).toEqual([])
  const types = new Set(records.map((r) => r.record_type))
  expect([...types].sort()).toEqual(['action', 'node_run', 'session'])
}

async function exportLines(...args: string[]): Promise<JsonObject[]> {
  const r = await cli(...args, '--data', data)
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  return r.stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map(parseTagged)
}

describe('issue 10 item 12: a versioned record format', () => {
  it('validates every export line against the schemas, with schema_version', async () => {
    const nodeRuns = await exportLines('export')
    expectValid('node-run', nodeRuns, 'export node_runs')
    expectValid('session', await exportLines('export', '--table', 'sessions'), 'export sessions')
    expectValid('session', await exportLines('sessions', '--json'), 'sessions --json')
    const outputs = await exportLines('export', '--table', 'outputs')
    expectValid('output', outputs, 'export outputs')
    expect(outputs.some((o) => String(o.filename).startsWith('rf\ud800'))).toBe(true)
    for (const id of [ids.ok, ids.failed, ids.bypass]) {
      const [shown] = await exportLines('show', id, '--json')
      const { node_runs: runs, ...session } = shown as JsonObject & { node_runs: JsonObject[] }
      expectValid('session', [{ ...session, node_runs: [] }], `show --json ${id}`)
      expectValid('node-run', runs, `show --json ${id} node_runs`)
    }
  })

  it('validates every record of every sink body against the schemas, with schema_version', () => {
    expectValidSinkRecords(jsonlSinkRecords(), 'jsonl sink')
    const webhook = receivers.webhook.requests.flatMap((r) => parseTagged(r.body).records as JsonObject[])
    expectValidSinkRecords(webhook, 'webhook body')
    const loki = receivers.loki.requests.flatMap((r) =>
      (parseTagged(r.body).streams as { values: [string, string, unknown][] }[]).flatMap((s) =>
        s.values.map((v) => parseTagged(v[1])),
      ),
    )
    expectValidSinkRecords(loki, 'loki line')
    const es = receivers.elasticsearch.requests
      .filter((r) => r.url.includes('_bulk'))
      .flatMap((r) =>
        r.body
          .split('\n')
          .filter((l) => l.length > 0)
          .map(parseTagged)
          .filter((doc) => !('create' in doc))
          .map((doc) => doc.comfyui as JsonObject),
      )
    expectValidSinkRecords(es, 'elasticsearch document')
    type Span = { attributes: { key: string; value: { intValue?: string } }[] }
    const spans = receivers.otlp.requests.flatMap((r) =>
      (parseTagged(r.body).resourceSpans as { scopeSpans: { spans: Span[] }[] }[]).flatMap((rs) =>
        rs.scopeSpans.flatMap((ss) => ss.spans),
      ),
    )
    expect(spans.length).toBeGreaterThan(0)
    for (const span of spans) {
      const version = span.attributes.find((a) => a.key === 'comfyui.schema_version')
      expect(version?.value.intValue).toBe(String(RECORD_SCHEMA_VERSION))
    }
  })

  it('keeps 1.0, 1.00, 1e5 and -0.0 as sent, on disk, in exports and in sink bodies; NaN comes back as NaN', async () => {
    const spelled = ['"cfg":1.0', '"denoise":1.00']
    const db = new Database(join(data, 'audit.sqlite'), { readonly: true })
    try {
      const payloads = (
        db.prepare('SELECT payload FROM events WHERE session_id = ?').all(ids.ok) as { payload: string }[]
      )
        .map((r) => r.payload)
        .join('\n')
      for (const s of [...spelled, '"strength_clip":-0.0', '"scale":1e5', '"shift":-0.0'])
        expect(payloads).toContain(s)
      const row = db
        .prepare(
          `SELECT json_valid(prompt) AS prompt_ok, json_valid(extra_data) AS extra_ok,
                  json_extract(extra_data, '$.nan."$float"') AS nan, json_extract(prompt, '$."6".inputs.cfg') AS cfg
           FROM sessions WHERE session_id = ?`,
        )
        .get(ids.ok)
      expect(row).toEqual({ prompt_ok: 1, extra_ok: 1, nan: 'NaN', cfg: 1 })
      const inputs = db
        .prepare(`SELECT inputs FROM node_runs WHERE session_id = ? AND node_id = '6'`)
        .get(ids.ok) as { inputs: string }
      for (const s of spelled) expect(inputs.inputs).toContain(s)
    } finally {
      db.close()
    }
    const exported = (await cli('export', '--data', data)).stdout
    for (const s of spelled) expect(exported).toContain(s)
    const sessions = (await cli('export', '--table', 'sessions', '--data', data)).stdout
    expect(sessions).toContain('"scale":1e5,"shift":-0.0,"nan":{"$float":"NaN"}')
    const [shown] = await exportLines('show', ids.ok, '--json')
    expect(Number.isNaN(((shown as JsonObject).extra_data as JsonObject).nan)).toBe(true)
    expect(stringifyJson((shown as JsonObject).prompt as JsonValue)).toContain('"cfg":1.0')
    expect(jsonlSinkLines().join('\n')).toContain('"cfg":1.0')
    expect(receivers.webhook.requests.map((r) => r.body).join('\n')).toContain('"denoise":1.00')
  })

  it('records an output file name with a lone surrogate, and verify says OK (not tampering)', async () => {
    const [session] = (await exportLines('export', '--table', 'sessions')).filter(
      (s) => s.session_id === ids.bypass,
    )
    expect(session?.flags).toContain('bypass')
    const files = (session?.outputs ?? []) as JsonObject[]
    expect(files.some((f) => String(f.filename).startsWith('rf\ud800'))).toBe(true)
    const verify = await cli('verify', '--data', data, '--origin', 'rf-test')
    expect(verify.stderr).toBe('')
    expect(verify.stdout).toMatch(/OK\n$/)
    expect(verify.code).toBe(0)
  })
})

/**
 * The spine of the product, end to end: the ComfyUI stand-in behind the audit gateway, driven through every
 * recorded scenario by the port of the recording client. The client must see what the real recording shows,
 * and the store must hold what happened.
 */
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { NodeRunRecord, SessionRecord } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { sha256Hex } from '../../src/audit/json.js'
import { loadOrCreateSigningKey } from '../../src/ledger/key-store.js'
import { verifyLedger } from '../../src/ledger/verify-ledger.js'
import { traceImage } from '../../src/provenance/trace.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { compareTraces } from '../conformance/compare-traces.js'
import { recordScenarios, type TraceRow } from '../conformance/recorder.js'
import { readTraceFile } from '../conformance/trace-row.js'

const FIXTURE = new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url).pathname
const SECRETS = ['secret-api-key-value', 'secret-token']

let sim: SimServer
let audit: AuditGateway
let dataDir: string
let rows: TraceRow[]
let sessions: SessionRecord[]

function filesUnder(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...filesUnder(p))
    else out.push(p)
  }
  return out
}

/** The POST /prompt exchanges the client made, with the prompt id the answer (or the request) names. */
function promptPosts(): { scenario: string; status: number; promptId: string | null; request: unknown }[] {
  return rows
    .filter((r) => r.kind === 'http' && r.method === 'POST' && String(r.path).endsWith('/prompt'))
    .map((r) => {
      const response = r.response as Record<string, unknown> | undefined
      const id = response && typeof response.prompt_id === 'string' ? response.prompt_id : null
      return { scenario: String(r.scenario), status: Number(r.status), promptId: id, request: r.request }
    })
}

beforeAll(async () => {
  sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'e2e-sim-')), port: 0, speed: 1 })
  dataDir = mkdtempSync(join(tmpdir(), 'e2e-gateway-'))
  const config = loadConfig({
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data: dataDir, origin: 'e2e-gateway' },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  rows = await recordScenarios(audit.url, { withModel: true })
  await audit.provenanceIdle()
  sessions = await audit.store.sessions({ limit: 1000 })
}, 240_000)

afterAll(async () => {
  await audit?.close()
  await sim?.close()
})

describe('the stand-in behind the gateway, every recorded scenario', () => {
  it('shows the client what the real recording shows (compare_traces rules)', async () => {
    const reference = await readTraceFile(FIXTURE)
    const result = compareTraces(reference, rows)
    console.log(result.lines.join('\n'))
    expect(result.lines.filter((l) => l.startsWith('DIFF'))).toEqual([])
    expect(result.matched).toBe(16)
  })

  it('records one session per POST /prompt, with the status the client saw', () => {
    const posts = promptPosts()
    expect(sessions.length).toBe(posts.length)
    const byId = new Map(sessions.map((s) => [s.session_id, s]))
    const rejected = sessions.filter((s) => s.status === 'rejected')
    // validation_errors: missing image (400), unknown node (400), not a graph (500), no prompt (400)
    expect(rejected.map((s) => s.http_status).sort()).toEqual([400, 400, 400, 500])
    for (const post of posts.filter((p) => p.promptId !== null)) {
      const s = byId.get(post.promptId!)
      expect(s, `session for ${post.promptId}`).toBeDefined()
      expect(s!.http_status).toBe(200)
    }
    const finals = sessions.map((s) => s.status)
    expect(finals).not.toContain('queued')
    expect(finals).not.toContain('running')
    expect(sessions.filter((s) => s.status === 'cancelled')).toHaveLength(1)
    expect(sessions.filter((s) => s.status === 'interrupted')).toHaveLength(1)
    expect(sessions.filter((s) => s.status === 'error')).toHaveLength(2)
  })

  it('records a node run for every node that ran or was cached, with the right status', async () => {
    const fixed = sessions.find((s) => s.session_id.startsWith('fixed-'))!
    const first = await audit.store.nodeRuns({ sessionId: fixed.session_id })
    expect(first.map((r) => [r.node_id, r.node_type, r.status]).sort()).toEqual([
      ['1', 'LoadImage', 'success'],
      ['2', 'ImageScaleBy', 'success'],
      ['3', 'ImageBlur', 'success'],
      ['4', 'ImageInvert', 'success'],
      ['5', 'SaveImage', 'success'],
      ['6', 'PreviewImage', 'success'],
    ])
    for (const r of first) {
      expect(r.duration_ms).toBeGreaterThanOrEqual(0)
      expect(Date.parse(r.timestamp_end!) - Date.parse(r.timestamp_start)).toBe(r.duration_ms)
      expect(r.timestamp_start).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    }
    expect(first.find((r) => r.node_id === '3')!.inputs).toEqual({
      image: { node: '2', output: 0 },
      blur_radius: 3,
      sigma: 1,
    })
    const cachedRun = promptPosts().find((p) => p.scenario === 'image_pipeline_fully_cached')!
    const cached = await audit.store.nodeRuns({ sessionId: cachedRun.promptId! })
    expect(cached.map((r) => r.status)).toEqual(Array(6).fill('cached'))
  })

  it('puts the error message on the failing node', async () => {
    const failed = sessions.filter((s) => s.status === 'error')
    const runs: NodeRunRecord[] = []
    for (const s of failed) runs.push(...(await audit.store.nodeRuns({ sessionId: s.session_id })))
    const errors = runs.filter((r) => r.status === 'error')
    expect(errors.map((r) => [r.node_type, r.exception_type]).sort()).toEqual([
      ['AuditFail', 'ValueError'],
      ['CheckpointLoaderSimple', 'safetensors._safetensors_rust.SafetensorError'],
    ])
    const fail = errors.find((r) => r.node_type === 'AuditFail')!
    expect(fail.error_message).toBe('planned failure in node 7\n')
    expect(fail.traceback?.length).toBeGreaterThan(0)
  })

  it('captures the prompt sent without client_id fully', async () => {
    const post = promptPosts().find(
      (p) => p.scenario === 'queue_and_clients' && !(p.request as Record<string, unknown>).client_id,
    )!
    const s = sessions.find((x) => x.session_id === post.promptId)!
    expect(s.status).toBe('success')
    const runs = await audit.store.nodeRuns({ sessionId: s.session_id })
    expect(runs.find((r) => r.node_type === 'AuditSlowProgress')).toMatchObject({
      status: 'success',
      progress: { value: 4, max: 4 },
    })
    expect(runs.find((r) => r.node_type === 'SaveImage')?.status).toBe('success')
  })

  it('answers the audit API with sessions in a time range and names a bad time', async () => {
    const all = await fetch(`${audit.url}/_audit/api/sessions?since=1h&limit=1000`)
    expect(all.status).toBe(200)
    expect(((await all.json()) as { sessions: unknown[] }).sessions).toHaveLength(sessions.length)
    const none = await fetch(`${audit.url}/_audit/api/sessions?until=2000-01-01`)
    expect(((await none.json()) as { sessions: unknown[] }).sessions).toHaveLength(0)
    const bad = await fetch(`${audit.url}/_audit/api/node-runs?since=yesterday`)
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: string }).error).toMatch(/^since: not a time: "yesterday"/)
  })

  it('keeps seeds exact and records the models a run named', () => {
    const sd = sessions.filter((s) =>
      s.models.some((m) => m.folder === 'checkpoints' && m.name === 'audit-sd15-random.safetensors'),
    )
    expect(sd.flatMap((s) => s.seeds.map((x) => x.value)).sort()).toEqual([42, 43, 44])
  })

  it('writes [REDACTED] where the secrets were and the secret values nowhere under the data dir', async () => {
    const s = sessions.find((x) => JSON.stringify(x.extra_data ?? null).includes('api_key_comfy_org'))!
    expect((s.extra_data as Record<string, unknown>).api_key_comfy_org).toBe('[REDACTED]')
    expect((s.extra_data as Record<string, unknown>).auth_token_comfy_org).toBe('[REDACTED]')
    await audit.store.flush()
    const files = filesUnder(dataDir)
    expect(files.length).toBeGreaterThan(0)
    for (const file of files) {
      let bytes = readFileSync(file)
      if (file.endsWith('.gz')) bytes = gunzipSync(bytes)
      for (const secret of SECRETS) expect(bytes.includes(secret), `${secret} in ${file}`).toBe(false)
    }
  })

  it('hashes the models a run used and finds the run that produced each output PNG', async () => {
    const sd = sessions.find((s) => s.models.some((m) => m.name === 'audit-sd15-random.safetensors'))!
    const fresh = (await audit.store.session(sd.session_id))!
    const ckpt = fresh.models.find((m) => m.name === 'audit-sd15-random.safetensors')!
    const onDisk = sha256Hex(
      readFileSync(join(sim.dir.models, 'checkpoints', 'audit-sd15-random.safetensors')),
    )
    expect(ckpt.sha256).toBe(onDisk)
    expect(ckpt.autov2).toBe(onDisk.slice(0, 10))
    const pngs = filesUnder(sim.dir.output).filter((f) => f.endsWith('.png'))
    expect(pngs.length).toBeGreaterThan(5)
    const viaApi = await fetch(`${audit.url}/_audit/api/trace`, {
      method: 'POST',
      body: readFileSync(pngs[0]!),
    })
    expect(viaApi.status).toBe(200)
    expect(((await viaApi.json()) as { session_id: string }).session_id).toBeTruthy()
    for (const png of pngs) {
      const found = await traceImage(audit.store, readFileSync(png))
      expect(found.ok, png).toBe(true)
      if (found.ok) {
        expect(found.value.match).toBe('sha256')
        expect(found.value.producing_node).not.toBeNull()
      }
    }
  })

  it('indexes the input images a run loaded by hash, without calling the loading run their producer', async () => {
    const input = readFileSync(join(sim.dir.input, 'audit-input.png'))
    const rows = await audit.store.outputsBySha256(sha256Hex(input))
    const fixed = sessions.find((s) => s.session_id.startsWith('fixed-'))!
    expect(rows.find((r) => r.session_id === fixed.session_id)).toMatchObject({
      node_id: '1',
      type: 'input',
      filename: 'audit-input.png',
      width: 256,
      height: 256,
    })
    const traced = await traceImage(audit.store, input)
    expect(traced).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/is an input image, loaded by \d+ run/),
    })
  })

  it('keeps a log that verifies against its signed checkpoints, derived tables included', async () => {
    await audit.ledger.checkpoint()
    const report = await verifyLedger({
      store: audit.store,
      verifierKey: (await loadOrCreateSigningKey(dataDir, 'e2e-gateway')).verifierKey,
    })
    expect(report.problems).toEqual([])
    expect(report.ok).toBe(true)
  })
})

/**
 * The render farm of issue 6: two ComfyUI stand-ins, each behind its own gateway, both gateways writing to ONE
 * PostgreSQL database under their own log origin, started at the same moment (the migration lock must keep
 * them from racing). The CLI, run as a user runs it, then lists the runs of both.
 */
import { cli } from '../helpers/cli.js'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { stringifyJson } from '../../src/audit/json.js'
import type { JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'

let cluster: PostgresCluster
let pgUrl: string
const sims: SimServer[] = []
const gateways: AuditGateway[] = []
const promptIds = new Map<string, string>()

/** Submits a small image pipeline through the gateway and resolves with its prompt id once it has run. */
async function runPrompt(gatewayUrl: string, clientId: string, blur: number): Promise<string> {
  const ws = new WebSocket(`${gatewayUrl.replace('http', 'ws')}/ws?clientId=${clientId}`)
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  try {
    const ended = new Map<string, string>()
    let waiting: ((status: string) => void) | null = null
    let waitingFor = ''
    ws.on('message', (raw, isBinary) => {
      if (isBinary) return
      const msg = JSON.parse(raw.toString()) as { type: string; data: { prompt_id?: string } }
      const id = msg.data.prompt_id
      if (!id || !['execution_success', 'execution_error', 'execution_interrupted'].includes(msg.type)) return
      ended.set(id, msg.type)
      if (id === waitingFor) waiting?.(msg.type)
    })
    const prompt = {
      '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
      '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: blur, sigma: 1.0 } },
      '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: `farm/${clientId}` } },
    }
    const res = await fetch(`${gatewayUrl}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stringifyJson({ prompt, client_id: clientId } as unknown as JsonObject),
    })
    const body = (await res.json()) as { prompt_id?: string }
    expect(res.status).toBe(200)
    const id = body.prompt_id!
    const outcome = ended.has(id)
      ? ended.get(id)!
      : await new Promise<string>((resolve) => {
          waitingFor = id
          waiting = resolve
        })
    expect(outcome).toBe('execution_success')
    return id
  } finally {
    ws.close()
  }
}

beforeAll(async () => {
  cluster = await startPostgres()
  pgUrl = await cluster.createDatabase()
  for (let i = 0; i < 2; i++) {
    sims.push(
      await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'farm-sim-')), port: 0, speed: 20 }),
    )
  }
  const configs = (['gw-a', 'gw-b'] as const).map((origin, i) => {
    const config = loadConfig({
      env: {},
      flags: {
        'comfyui.url': sims[i]!.url,
        listen: '127.0.0.1:0',
        data: mkdtempSync(join(tmpdir(), `farm-${origin}-`)),
        'store.url': pgUrl,
        origin,
      },
    })
    if (!config.ok) throw new Error(config.problems.join('; '))
    return config.value
  })
  // Both start at the same moment against an empty database: both try to migrate it.
  gateways.push(...(await Promise.all(configs.map((c) => startAuditGateway(c, { sweepIntervalMillis: 0 })))))
  const [a, b] = gateways as [AuditGateway, AuditGateway]
  const [idA, idB] = await Promise.all([runPrompt(a.url, 'farm-a', 2), runPrompt(b.url, 'farm-b', 3)])
  promptIds.set('gw-a', idA)
  promptIds.set('gw-b', idB)
  for (const g of gateways) {
    await g.capture.flush()
    await g.store.flush()
  }
}, 120_000)

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.close()))
  await Promise.all(sims.map((s) => s.close()))
  await cluster?.stop()
})

describe('two gateways, one PostgreSQL store', () => {
  it('migrated the shared database exactly once although both gateways started together', async () => {
    const client = new pg.Client({ connectionString: pgUrl })
    await client.connect()
    try {
      const { rows } = await client.query<{ version: number; n: string }>(
        'SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY version',
      )
      expect(rows.length).toBeGreaterThan(0)
      expect(rows.every((r) => Number(r.n) === 1)).toBe(true)
      const origins = await client.query<{ origin: string }>(
        'SELECT DISTINCT origin FROM events ORDER BY origin',
      )
      expect(origins.rows.map((r) => r.origin)).toEqual(['gw-a', 'gw-b'])
    } finally {
      await client.end()
    }
  })

  it('keeps each gateway in its own log, numbered from 0 without gaps', async () => {
    for (const g of gateways) {
      const seqs: number[] = []
      for await (const e of g.store.events({ origin: g.store.origin })) seqs.push(e.seq)
      expect(seqs.length).toBeGreaterThan(0)
      expect(seqs).toEqual(seqs.map((_, i) => i))
    }
  })

  it('lists the runs of both gateways with `comfy-audit sessions --store postgres://…`', async () => {
    const data = mkdtempSync(join(tmpdir(), 'farm-cli-'))
    const r = await cli('sessions', '--store', pgUrl, '--data', data, '--json')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { origin: string; session_id: string; status: string })
    expect(rows.map((s) => `${s.origin} ${s.session_id} ${s.status}`).sort()).toEqual([
      `gw-a ${promptIds.get('gw-a')} success`,
      `gw-b ${promptIds.get('gw-b')} success`,
    ])
  })

  it('shows and exports runs of either gateway from the shared store', async () => {
    const data = mkdtempSync(join(tmpdir(), 'farm-cli-'))
    const shown = await cli(
      'show',
      promptIds.get('gw-b')!,
      '--origin',
      'gw-b',
      '--store',
      pgUrl,
      '--data',
      data,
      '--json',
    )
    expect(shown.code).toBe(0)
    const session = JSON.parse(shown.stdout) as { origin: string; node_runs: { node_type: string }[] }
    expect(session.origin).toBe('gw-b')
    expect(session.node_runs.map((n) => n.node_type).sort()).toEqual(['ImageBlur', 'LoadImage', 'SaveImage'])

    const file = join(data, 'farm.sqlite')
    const exported = await cli('export', '--format', 'sqlite', '-o', file, '--store', pgUrl, '--data', data)
    expect(exported.code).toBe(0)
    expect(exported.stderr).toMatch(/^exported 2 sessions, 6 node runs, /)
    const fromFile = await cli('sessions', '--store', `sqlite:${file}`, '--data', data, '--json')
    expect(
      fromFile.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { origin: string }).origin)
        .sort(),
    ).toEqual(['gw-a', 'gw-b'])
  })
})

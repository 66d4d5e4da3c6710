/**
 * The query commands (`sessions`, `show`, `export`) run as a user runs them, in a child process, against a
 * data directory the gateway filled by proxying real runs to the stand-in.
 */
import { cli } from '../helpers/cli.js'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { parseJson, stringifyJson } from '../../src/audit/json.js'
import type { JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'

let sim: SimServer
let data: string
const ids: { ok: string; failed: string; rejected: string } = { ok: '', failed: '', rejected: '' }

function pipeline(blur: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: blur, sigma: 1.0 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/cli' } },
    ...extra,
  }
}

beforeAll(async () => {
  sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'cli-sim-')), port: 0, speed: 20 })
  data = mkdtempSync(join(tmpdir(), 'cli-data-'))
  const config = loadConfig({
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: 'cli-test' },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  const ws = new WebSocket(`${audit.url.replace('http', 'ws')}/ws?clientId=cli`)
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  const ended = new Map<string, () => void>()
  const endedIds = new Set<string>()
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return
    const msg = JSON.parse(raw.toString()) as { type: string; data: { prompt_id?: string } }
    if (
      ['execution_success', 'execution_error', 'execution_interrupted'].includes(msg.type) &&
      msg.data.prompt_id
    ) {
      endedIds.add(msg.data.prompt_id)
      ended.get(msg.data.prompt_id)?.()
    }
  })
  const submit = async (prompt: Record<string, unknown>): Promise<{ status: number; id: string }> => {
    const res = await fetch(`${audit.url}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'cli-test/1.0' },
      body: stringifyJson({ prompt, client_id: 'cli' } as unknown as JsonObject),
    })
    const body = (await res.json()) as { prompt_id?: string }
    return { status: res.status, id: body.prompt_id ?? '' }
  }
  const finished = (id: string): Promise<void> =>
    endedIds.has(id) ? Promise.resolve() : new Promise((resolve) => ended.set(id, resolve))
  const ok = await submit(pipeline(3))
  await finished(ok.id)
  ids.ok = ok.id
  const failed = await submit({
    ...pipeline(4),
    '4': { class_type: 'AuditFail', inputs: { image: ['2', 0], message: 'planned, for the CLI test' } },
    '3': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: 'audit/cli' } },
  })
  await finished(failed.id)
  ids.failed = failed.id
  const rejected = await submit(pipeline(999, { '9': { class_type: 'NoSuchNode', inputs: {} } }))
  expect(rejected.status).toBe(400)
  ws.close()
  await audit.close()
  const sessions = (await cli('sessions', '--data', data, '--json')).stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { session_id: string; status: string })
  ids.rejected = sessions.find((s) => s.status === 'rejected')!.session_id
}, 120_000)

afterAll(async () => {
  await sim?.close()
})

describe('comfy-audit sessions / show / export', () => {
  it('lists sessions newest first with their final status', async () => {
    const r = await cli('sessions', '--data', data)
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^SESSION\s+STATUS\s+USER/)
    expect(lines.slice(1).map((l) => l.split(/\s+/)[1])).toEqual(['rejected', 'error', 'success'])
    expect(r.stdout).toContain('planned, for the CLI test')
  })

  it('filters by status and refuses an unknown one, naming it', async () => {
    const r = await cli('sessions', '--data', data, '--status', 'error', '--json')
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { session_id: string })
    expect(rows.map((x) => x.session_id)).toEqual([ids.failed])
    const bad = await cli('sessions', '--data', data, '--status', 'weird')
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/unknown status "weird"/)
    const badTime = await cli('sessions', '--data', data, '--since', 'yesterday')
    expect(badTime.stderr).toMatch(/--since: not a time: "yesterday"/)
  })

  it('shows a per-node timeline with the failing node and its error', async () => {
    const r = await cli('show', ids.failed, '--data', data)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/status\s+error/)
    expect(r.stdout).toMatch(/^4\s+AuditFail\s+error/m)
    expect(r.stdout).toMatch(/ValueError: planned, for the CLI test/)
    // LoadImage with the same file was cached from the first run
    expect(r.stdout).toMatch(/^1\s+LoadImage\s+cached/m)
    expect(r.stdout).toMatch(/^2\s+ImageBlur\s+success/m)
    const missing = await cli('show', 'no-such-session', '--data', data)
    expect(missing.code).not.toBe(0)
    expect(missing.stderr).toMatch(/no session "no-such-session"/)
  })

  it('exports node runs as JSONL under exactly the seed field names', async () => {
    const r = await cli('export', '--data', data)
    expect(r.code).toBe(0)
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => {
        const p = parseJson(l)
        if (!p.ok) throw new Error(p.reason)
        return p.value as JsonObject
      })
    // 3 nodes of the good run + 3 of the failing one (LoadImage cached, ImageBlur, AuditFail; SaveImage never ran)
    expect(rows.length).toBe(6)
    for (const row of rows) {
      expect(Object.keys(row).slice(0, 11)).toEqual([
        'session_id',
        'node_id',
        'node_type',
        'timestamp_start',
        'timestamp_end',
        'duration_ms',
        'inputs',
        'outputs',
        'status',
        'error_message',
        'gpu_memory_used',
      ])
    }
    const fail = rows.find((x) => x.node_type === 'AuditFail')!
    expect(fail.status).toBe('error')
    expect(fail.error_message).toBe('planned, for the CLI test\n')
  })

  it('exports sessions as CSV to a file, with extra_data and times', async () => {
    const out = join(data, 'sessions.csv')
    const r = await cli('export', '--data', data, '--format', 'csv', '--table', 'sessions', '-o', out)
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/exported 3 sessions rows/)
    const lines = readFileSync(out, 'utf8').trim().split('\r\n')
    const header = lines[0]!.split(',')
    for (const f of [
      'session_id',
      'status',
      'queued_at',
      'started_at',
      'ended_at',
      'duration_ms',
      'extra_data',
      'user',
    ]) {
      expect(header).toContain(f)
    }
    expect(lines).toHaveLength(4)
    const statusCol = header.indexOf('status')
    expect(
      lines
        .slice(1)
        .map((l) => l.split(',')[statusCol])
        .sort(),
    ).toEqual(['error', 'rejected', 'success'])
  })

  it('limits an export to a time range', async () => {
    const future = await cli('export', '--data', data, '--since', '2999-01-01')
    expect(future.code).toBe(0)
    expect(future.stdout).toBe('')
    const bad = await cli('export', '--data', data, '--format', 'xml')
    expect(bad.stderr).toMatch(/--format: expected jsonl or csv/)
  })
})

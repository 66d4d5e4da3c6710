/**
 * Issue 10 item 13, the environment per session: each session carries the ComfyUI environment taken at its
 * start, taken anew after ComfyUI restarts, and it is exported, shown by `comfy-audit show` and served by the
 * audit API. The stand-in restarts on the same port as another install (another ComfyUI and PyTorch version).
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { parseJson } from '../../src/audit/json.js'
import type { EnvironmentSnapshot, JsonObject } from '../../src/audit/types.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimInstall, type SimServer } from '../../src/sim/index.js'
import { cli } from '../helpers/cli.js'
import { upstreamBack } from '../helpers/upstream-back.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function simAt(port: number, install: Partial<SimInstall> = {}): Promise<SimServer> {
  const sim = await createSimServer({
    dataDir: mkdtempSync(join(tmpdir(), 'env-sim-')),
    port,
    speed: 20,
    install,
  })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await sim.close()
  }
  cleanup.push(close)
  return { ...sim, close }
}

async function gatewayFor(sim: SimServer, data: string): Promise<AuditGateway> {
  const config = loadConfig({
    env: {},
    flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data, origin: 'env-test' },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await audit.close()
  }
  cleanup.push(close)
  return { ...audit, close } as AuditGateway
}

/** Resolves when the store holds the session with a final status (polled, with a generous deadline). */
async function finished(audit: AuditGateway, id: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    await audit.capture.flush()
    await audit.store.flush()
    const status = (await audit.store.session(id))?.status
    if (status === 'success') return
    if (Date.now() > deadline) throw new Error(`session ${id} is ${status ?? 'missing'} after 60 s`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function submit(url: string, clientId: string, prefix: string): Promise<string> {
  const prompt = {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: 2, sigma: 1.0 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  }
  const res = await fetch(`${url}/prompt`, {
    method: 'POST',
    body: JSON.stringify({ prompt, client_id: clientId }),
  })
  expect(res.status).toBe(200)
  return ((await res.json()) as { prompt_id: string }).prompt_id
}

describe('the environment per session (issue 10 item 13)', () => {
  it('records each session with the environment of the ComfyUI that ran it, across a restart as another version', async () => {
    const data = mkdtempSync(join(tmpdir(), 'env-data-'))
    const first = await simAt(0)
    const audit = await gatewayFor(first, data)
    const before = await submit(audit.url, 'artist', 'audit/env-a')
    await finished(audit, before)

    const back = upstreamBack(audit)
    // The gateway's upstream socket only exists while a client is connected.
    const ws = new WebSocket(`${audit.url.replace('http', 'ws')}/ws?clientId=artist`)
    cleanup.push(async () => ws.terminate())
    await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
    await first.close()
    await simAt(first.port, { comfyuiVersion: '0.8.1', pytorchVersion: '2.12.0+cu130' })
    await back
    const after = await submit(audit.url, 'artist', 'audit/env-b')
    await finished(audit, after)
    await audit.capture.flush()
    await audit.store.flush()

    const envOf = async (id: string): Promise<EnvironmentSnapshot | null> =>
      (await audit.store.session(id))?.environment ?? null
    expect(await envOf(before)).toMatchObject({
      comfyui_version: '0.8.0',
      pytorch_version: '2.11.0+cu130',
      python_version: expect.stringMatching(/^3\.12\.3 /),
      gpu_name: 'NVIDIA H200',
      devices: [{ name: 'cuda:0 NVIDIA H200 : cudaMallocAsync', type: 'cuda', index: 0 }],
    })
    expect(await envOf(after)).toMatchObject({ comfyui_version: '0.8.1', pytorch_version: '2.12.0+cu130' })

    // One log event each time the environment changed.
    const snapshots: string[] = []
    for await (const e of audit.store.events({ kinds: ['environment.snapshot'] })) {
      snapshots.push(String((e.payload.environment as JsonObject).comfyui_version))
    }
    expect(snapshots).toEqual(['0.8.0', '0.8.1'])

    // The audit API's session detail and list carry it.
    const detail = (await (await fetch(`${audit.url}/_audit/api/sessions/${after}`)).json()) as {
      session: { environment: EnvironmentSnapshot }
    }
    expect(detail.session.environment.comfyui_version).toBe('0.8.1')
    const list = (await (await fetch(`${audit.url}/_audit/api/sessions`)).json()) as {
      sessions: { session_id: string; environment: EnvironmentSnapshot }[]
    }
    expect(list.sessions.find((s) => s.session_id === before)?.environment.comfyui_version).toBe('0.8.0')
    await audit.close()

    // `show` and `export` read it from the store.
    const shown = await cli('show', after, '--data', data)
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(/^env\s+ComfyUI 0\.8\.1\s+PyTorch 2\.12\.0\+cu130\s+Python 3\.12\.3/m)
    expect(shown.stdout).toMatch(/^device\s+cuda:0 NVIDIA H200 : cudaMallocAsync\s+\d+ MiB/m)
    const exported = await cli('export', '--table', 'sessions', '--data', data)
    expect(exported.code).toBe(0)
    const rows = exported.stdout
      .trim()
      .split('\n')
      .map((l) => {
        const p = parseJson(l)
        if (!p.ok) throw new Error(p.reason)
        return p.value as { session_id: string; environment: { comfyui_version: string } }
      })
    expect(Object.fromEntries(rows.map((r) => [r.session_id, r.environment.comfyui_version]))).toEqual({
      [before]: '0.8.0',
      [after]: '0.8.1',
    })
    const csv = await cli('export', '--table', 'sessions', '--format', 'csv', '--data', data)
    expect(csv.stdout.split(/\r?\n/)[0]!.split(',')).toContain('environment')
  }, 120_000)
})

/**
 * Durability: the gateway is killed (SIGKILL) in the middle of a slow run and started again on the same data
 * directory. Every event committed before the kill must still be there, and the run must end with its real
 * final status.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { stringifyJson } from '../../src/audit/json.js'
import type { AuditEvent } from '../../src/audit/types.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { exited, gatewayProcesses } from '../helpers/gateway-process.js'

const gateways = gatewayProcesses()
let sim: SimServer | undefined

/** Resolves with the first frame that matches, from a socket through the gateway. */
function waitForFrame(
  ws: WebSocket,
  match: (msg: { type: string; data: Record<string, unknown> }) => boolean,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (raw: WebSocket.RawData, isBinary: boolean): void => {
      if (isBinary) return
      const msg = JSON.parse(raw.toString()) as { type: string; data: Record<string, unknown> }
      if (match(msg)) {
        ws.off('message', onMessage)
        resolve()
      }
    }
    ws.on('message', onMessage)
    ws.once('close', () => reject(new Error('socket closed before the frame arrived')))
  })
}

async function readEvents(path: string): Promise<AuditEvent[]> {
  const store = createRuntimeStore(createSqliteDialect({ path }), { origin: 'reader' })
  await store.init()
  const events: AuditEvent[] = []
  for await (const e of store.events({ origin: 'crash-test' })) events.push(e)
  await store.close()
  return events
}

afterAll(async () => {
  await gateways.killAll()
  await sim?.close()
})

describe('gateway crash in the middle of a run', () => {
  it('keeps every committed event and still records the real final status', async () => {
    sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'crash-sim-')), port: 0, speed: 1 })
    const data = mkdtempSync(join(tmpdir(), 'crash-gateway-'))
    const first = await gateways.start({ comfyui: sim.url, data, origin: 'crash-test' })

    const ws = new WebSocket(`${first.url.replace('http', 'ws')}/ws?clientId=crash-client`)
    await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
    const prompt = {
      '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
      '7': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds: 4.0, steps: 8 } },
      '5': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: 'audit/crash' } },
    }
    const thirdStep = waitForFrame(ws, (m) => m.type === 'progress' && Number(m.data.value) >= 3)
    const res = await fetch(`${first.url}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stringifyJson({ prompt, client_id: 'crash-client' }),
    })
    expect(res.status).toBe(200)
    const { prompt_id: promptId } = (await res.json()) as { prompt_id: string }
    await thirdStep

    // Events the gateway has committed so far (a second reader on the WAL database sees committed data only).
    const dbPath = join(data, 'audit.sqlite')
    const before = await readEvents(dbPath)
    expect(before.some((e) => e.kind === 'prompt.submitted' && e.session_id === promptId)).toBe(true)
    // Issue 10 item 9: a second gateway on the same data dir is refused while the first lives, and exits.
    await expect(gateways.start({ comfyui: sim.url, data, origin: 'crash-test' })).rejects.toThrow(
      /exited with 1 before listening:[\s\S]*is in use by comfy-audit gateway \(pid \d+/,
    )
    first.child.kill('SIGKILL')
    await exited(first.child)
    ws.terminate()

    // The SIGKILLed gateway left its lock file; it is stale and the new gateway takes it over.
    const second = await gateways.start({ comfyui: sim.url, data, origin: 'crash-test' })
    // The run goes on in ComfyUI while the gateway restarts; wait until the gateway has recorded its end.
    const deadline = Date.now() + 60_000
    let status = 'running'
    while (Date.now() < deadline) {
      const r = await fetch(`${second.url}/_audit/api/sessions/${promptId}`)
      if (r.ok) {
        const body = (await r.json()) as { session: { status: string } }
        status = body.session.status
        if (!['queued', 'running'].includes(status)) break
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(status).toBe('success')

    second.child.kill('SIGTERM')
    await exited(second.child)
    const after = await readEvents(dbPath)
    const afterBySeq = new Map(after.map((e) => [e.seq, e]))
    for (const e of before) expect(afterBySeq.get(e.seq)).toEqual(e)
    // The node that was running at the kill has its record. SaveImage ran either after the restart (a live
    // record) or, on a slow machine, while the gateway was down: then the session says the gap has no timings.
    const finished = after.filter((e) => e.kind === 'node.finished' && e.session_id === promptId)
    const nodes = new Map(
      finished
        .map((e) => e.payload.node_run as { node_id: string; status: string })
        .map((n) => [n.node_id, n.status]),
    )
    expect(nodes.get('1')).toBe('success')
    expect(nodes.get('7')).toBe('success')
    if (!nodes.has('5')) {
      const closing = after.find((e) => e.session_id === promptId && e.kind === 'session.reconciled')
      expect(
        closing,
        'no live record of node 5, so the session must be closed by reconciliation',
      ).toBeDefined()
      expect(JSON.stringify(closing!.payload)).toContain('reconciled')
    } else {
      expect(nodes.get('5')).toBe('success')
    }
  }, 120_000)
})

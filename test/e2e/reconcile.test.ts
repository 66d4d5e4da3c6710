/**
 * Reconciliation against a real ComfyUI stand-in: prompts that bypassed the gateway become flagged `bypass`
 * sessions, and sessions ComfyUI lost in a restart are closed as `lost` with the reason.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { upstreamBack } from '../helpers/upstream-back.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function gatewayFor(sim: SimServer): Promise<AuditGateway> {
  const config = loadConfig({
    env: {},
    flags: {
      'comfyui.url': sim.url,
      listen: '127.0.0.1:0',
      data: mkdtempSync(join(tmpdir(), 'reconcile-')),
      origin: 'reconcile',
    },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  cleanup.push(() => audit.close())
  return audit
}

async function simAt(port = 0, speed = 20): Promise<SimServer> {
  const sim = await createSimServer({ dataDir: mkdtempSync(join(tmpdir(), 'reconcile-sim-')), port, speed })
  cleanup.push(() => sim.close())
  return sim
}

/** Resolves when the prompt ends, watched on a socket of its own client id. */
function ended(
  url: string,
  clientId: string,
  promptId: () => string,
): { ready: Promise<void>; done: Promise<void> } {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws?clientId=${clientId}`)
  cleanup.push(async () => ws.terminate())
  const ready = new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  const done = new Promise<void>((resolve) =>
    ws.on('message', (raw, isBinary) => {
      if (isBinary) return
      const m = JSON.parse(raw.toString()) as { type: string; data: { prompt_id?: string } }
      if (
        ['execution_success', 'execution_error', 'execution_interrupted'].includes(m.type) &&
        m.data.prompt_id === promptId()
      )
        resolve()
    }),
  )
  return { ready, done }
}

function pipeline(seconds: number, prefix: string): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': { class_type: 'AuditSlowProgress', inputs: { image: ['1', 0], seconds, steps: 4 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: prefix } },
  }
}

async function post(url: string, body: unknown): Promise<string> {
  const res = await fetch(`${url}/prompt`, { method: 'POST', body: JSON.stringify(body) })
  expect(res.status).toBe(200)
  return ((await res.json()) as { prompt_id: string }).prompt_id
}

describe('reconciliation', () => {
  it('records a prompt that went straight to ComfyUI as a flagged bypass session', async () => {
    const sim = await simAt()
    const audit = await gatewayFor(sim)
    let id = ''
    const watch = ended(sim.url, 'direct-client', () => id)
    await watch.ready
    id = await post(sim.url, { prompt: pipeline(0.2, 'audit/bypass'), client_id: 'direct-client' })
    await watch.done
    await audit.reconcileNow()
    const s = await audit.store.session(id)
    expect(s).toMatchObject({ status: 'success', flags: expect.arrayContaining(['bypass']) })
    expect(s!.status_reason).toBeTruthy()
    // A second sweep does not record it twice.
    await audit.reconcileNow()
    expect((await audit.store.sessions({})).filter((x) => x.session_id === id)).toHaveLength(1)
  })

  it('does not call a prompt lost that was accepted after the queue snapshot was taken', async () => {
    const sim = await simAt()
    const audit = await gatewayFor(sim)
    // What a sweep sees when it reads the queue just before a prompt arrives: no open session, an empty queue.
    await audit.capture.flush()
    const before = new Set(audit.capture.openSessions().map((o) => o.session_id))
    const staleQueue = { queue_running: [], queue_pending: [] }
    let id = ''
    const watch = ended(audit.url, 'late', () => id)
    await watch.ready
    id = await post(audit.url, { prompt: pipeline(1, 'audit/late'), client_id: 'late' })
    await audit.capture.flush()
    audit.capture.reconcile({ history: {}, queue: staleQueue, sessionIds: before })
    await audit.capture.flush()
    await audit.store.flush()
    expect((await audit.store.session(id))?.status).not.toBe('lost')
    await watch.done
    await audit.capture.flush()
    await audit.store.flush()
    expect((await audit.store.session(id))?.status).toBe('success')
  })

  it('closes the sessions a restarted ComfyUI lost as lost, with the reason', async () => {
    const first = await simAt(0, 1)
    const port = first.port
    const audit = await gatewayFor(first)
    let running = ''
    const watch = ended(audit.url, 'artist', () => running)
    await watch.ready
    const started = new Promise<void>((resolve) => {
      const ws = new WebSocket(`${audit.url.replace('http', 'ws')}/ws?clientId=artist`)
      cleanup.push(async () => ws.terminate())
      ws.on('message', (raw, isBinary) => {
        if (!isBinary && (JSON.parse(raw.toString()) as { type: string }).type === 'progress') resolve()
      })
    })
    running = await post(audit.url, { prompt: pipeline(30, 'audit/lost-a'), client_id: 'artist' })
    const pending = await post(audit.url, { prompt: pipeline(31, 'audit/lost-b'), client_id: 'artist' })
    await started
    const back = upstreamBack(audit)
    await first.close()
    await simAt(port)
    await back
    await audit.reconcileNow()
    for (const id of [running, pending]) {
      const s = await audit.store.session(id)
      expect(s?.status, id).toBe('lost')
      expect(s?.status_reason).toMatch(/ComfyUI/)
    }
  }, 60_000)
})

/**
 * Issue 10 item 3, "no false lost": hundreds of prompts queued at once through one gateway, the stand-in at a
 * high speed, and reconciliation sweeping all the while. No run ComfyUI completed may be closed as `lost`.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway } from '../../src/create-gateway.js'
import { createSimServer } from '../../src/sim/index.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

const PIPELINE = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/load' } },
}

describe('issue 10 item 3: no false lost', () => {
  it('closes none of 300 prompts queued at once as lost while reconciliation sweeps', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'lost-sim-')),
      port: 0,
      speed: 200,
    })
    cleanup.push(() => sim.close())
    const config = loadConfig({
      env: {},
      flags: {
        'comfyui.url': sim.url,
        listen: '127.0.0.1:0',
        data: mkdtempSync(join(tmpdir(), 'lost-')),
        'limits.promptsPerMinute': 0,
      },
    })
    if (!config.ok) throw new Error(config.problems.join('; '))
    const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
    cleanup.push(() => audit.close())
    let done = false
    // Sweeps back to back for the whole run: each one races the live socket and the queue.
    const sweeper = (async () => {
      let n = 0
      while (!done) {
        await audit.reconcileNow()
        n++
      }
      return n
    })()
    const ids = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const res = await fetch(`${audit.url}/prompt`, {
          method: 'POST',
          body: JSON.stringify({ prompt: PIPELINE, client_id: `load-${i % 4}` }),
        })
        expect(res.status).toBe(200)
        return ((await res.json()) as { prompt_id: string }).prompt_id
      }),
    )
    // About 20 s on an idle machine; a loaded one may take many times that.
    const deadline = Date.now() + 240_000
    for (;;) {
      const open = (await audit.store.sessions({ limit: 1000 })).filter((s) =>
        ['queued', 'running'].includes(s.status),
      )
      if (open.length === 0) break
      if (Date.now() > deadline)
        throw new Error(
          `${open.length} sessions still open: ${open
            .slice(0, 5)
            .map((s) => `${s.session_id} ${s.status}`)
            .join(', ')}`,
        )
      await new Promise((r) => setTimeout(r, 20))
    }
    done = true
    expect(await sweeper).toBeGreaterThan(1)
    await audit.capture.flush()
    await audit.store.flush()
    const sessions = await audit.store.sessions({ limit: 1000 })
    const lost = sessions.filter((s) => s.status === 'lost').map((s) => `${s.session_id}: ${s.status_reason}`)
    expect(lost).toEqual([])
    expect(sessions.filter((s) => ids.includes(s.session_id) && s.status === 'success')).toHaveLength(300)
  }, 360_000)
})

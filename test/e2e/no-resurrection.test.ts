/**
 * Issue 10 item 4, "no resurrected records": erased and pruned sessions never come back as bypass sessions
 * (capture's index of known ids holds every id the log ever named), and `erase`/`prune` from the CLI are
 * refused while a gateway holds the data dir. Real gateway, the ComfyUI stand-in, SQLite, the CLI as a child.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { DirLockedError } from '../../src/store/data-dir-lock.js'
import { cli } from '../helpers/cli.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function start(sim: SimServer, data: string): Promise<AuditGateway> {
  const config = loadConfig({ env: {}, flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data } })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  cleanup.push(() => audit.close())
  return audit
}

const PIPELINE = {
  '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'audit/resurrect' } },
}

async function runOne(audit: AuditGateway, id: string): Promise<void> {
  const res = await fetch(`${audit.url}/prompt`, {
    method: 'POST',
    body: JSON.stringify({ prompt: PIPELINE, prompt_id: id }),
  })
  expect(res.status).toBe(200)
  const deadline = Date.now() + 20_000
  while ((await audit.store.session(id))?.status !== 'success') {
    if (Date.now() > deadline) throw new Error(`${id} did not finish`)
    await audit.capture.flush()
    await audit.store.flush()
    await new Promise((r) => setImmediate(r))
  }
}

async function kindsOf(audit: AuditGateway, id: string): Promise<string[]> {
  await audit.capture.flush()
  await audit.store.flush()
  const kinds: string[] = []
  for await (const e of audit.store.rawEvents({ sessionId: id })) kinds.push(e.kind)
  return kinds
}

describe('issue 10 item 4: no resurrected records', () => {
  it('never brings an erased or pruned session back as a bypass session', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'resur-sim-')),
      port: 0,
      speed: 50,
    })
    cleanup.push(() => sim.close())
    const data = mkdtempSync(join(tmpdir(), 'resur-'))
    const first = await start(sim, data)
    await runOne(first, 'erased-1')
    await runOne(first, 'pruned-1')
    await first.close()

    const erased = await cli('erase', 'erased-1', '--reason', 'test', '--data', data)
    expect(erased.stderr).toBe('')
    expect(erased.code).toBe(0)
    const pruned = await cli('prune', '--older-than', '1ms', '--data', data)
    expect(pruned.code, pruned.stderr).toBe(0)

    // ComfyUI still has both in its history; the sweep must not take them for prompts that bypassed us.
    const second = await start(sim, data)
    const history = (await (await fetch(`${sim.url}/history`)).json()) as Record<string, unknown>
    expect(Object.keys(history).sort()).toEqual(['erased-1', 'pruned-1'])
    const before = { erased: await kindsOf(second, 'erased-1'), pruned: await kindsOf(second, 'pruned-1') }
    await second.reconcileNow()
    await second.reconcileNow()
    expect(await second.store.session('erased-1')).toBeUndefined()
    expect(await second.store.session('pruned-1')).toBeUndefined()
    expect(await kindsOf(second, 'erased-1')).toEqual(before.erased)
    expect(await kindsOf(second, 'pruned-1')).toEqual(before.pruned)
    expect(before.erased).not.toContain('session.bypass')
    // And their ids stay taken.
    const reuse = await fetch(`${second.url}/prompt`, {
      method: 'POST',
      body: JSON.stringify({ prompt: PIPELINE, prompt_id: 'erased-1' }),
    })
    expect(reuse.status).toBe(400)
  }, 60_000)

  it('refuses erase, prune and a second gateway while a gateway holds the data dir', async () => {
    const sim = await createSimServer({
      dataDir: mkdtempSync(join(tmpdir(), 'resur-sim-')),
      port: 0,
      speed: 50,
    })
    cleanup.push(() => sim.close())
    const data = mkdtempSync(join(tmpdir(), 'resur-'))
    const audit = await start(sim, data)
    await runOne(audit, 'kept-1')
    await audit.provenanceIdle()
    const before = await kindsOf(audit, 'kept-1')

    const erase = await cli('erase', 'kept-1', '--reason', 'test', '--data', data)
    expect(erase.code).not.toBe(0)
    expect(erase.stderr).toMatch(/erase refused: the data dir .* is held by comfy-audit gateway \(pid \d+/)
    expect(erase.stderr).toMatch(/stop it first/)
    const prune = await cli('prune', '--older-than', '1ms', '--data', data)
    expect(prune.code).not.toBe(0)
    expect(prune.stderr).toMatch(/prune refused: the data dir .* is held by comfy-audit gateway/)
    await expect(start(sim, data)).rejects.toBeInstanceOf(DirLockedError)

    expect(await kindsOf(audit, 'kept-1')).toEqual(before)
    for await (const e of audit.store.rawEvents({ kinds: ['audit.erased', 'audit.pruned'] }))
      throw new Error(`the log was rewritten beside the gateway: ${e.kind}`)
    expect((await audit.store.session('kept-1'))?.status).toBe('success')
    await audit.close()
    // Once the gateway is gone the command runs.
    expect((await cli('erase', 'kept-1', '--reason', 'test', '--data', data)).code).toBe(0)
  }, 60_000)
})

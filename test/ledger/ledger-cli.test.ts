import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Command } from 'commander'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  registerLedgerCommands,
  runErase,
  runEvidence,
  runKey,
  runVerify,
  runVerifyEvidence,
} from '../../src/cli/commands/ledger-commands.js'
import { ORIGIN, populate, withDb, type Populated } from './ledger-fixture.js'

let p: Populated
let opts: { data: string; config: string }
beforeAll(async () => {
  p = await populate(3, 5)
  const config = join(p.dir, 'config.json')
  await writeFile(config, JSON.stringify({ origin: ORIGIN }))
  opts = { data: p.dir, config }
})
afterAll(async () => {
  await rm(p.dir, { recursive: true, force: true })
})

describe('ledger CLI', () => {
  it('registers key, verify, evidence, verify-evidence, prune and erase', () => {
    const program = new Command()
    registerLedgerCommands(program)
    expect(program.commands.map((c) => c.name())).toEqual([
      'key',
      'verify',
      'evidence',
      'verify-evidence',
      'prune',
      'erase',
    ])
  })

  it('prints the verifier key of the data dir', async () => {
    expect(await runKey(opts)).toEqual({ output: p.key.verifierKey + '\n', exitCode: 0 })
  })

  it('verifies, writes and checks an evidence bundle, then finds tampering', async () => {
    const ok = await runVerify(opts)
    expect(ok.exitCode).toBe(0)
    expect(ok.output).toMatch(/21 events, 5 checkpoints, signed through seq 20\nOK\n$/)

    const bundle = join(p.dir, 'bundle.json')
    expect((await runEvidence('s1', { ...opts, output: bundle })).exitCode).toBe(0)
    const keyFile = join(p.dir, 'key.pub')
    await writeFile(keyFile, (await runKey(opts)).output)
    expect(await runVerifyEvidence(bundle, { key: keyFile })).toMatchObject({ exitCode: 0 })
    const text = await readFile(bundle, 'utf8')
    await writeFile(bundle, text.replace('"alice"', '"alicf"'))
    expect(await runVerifyEvidence(bundle, { key: keyFile })).toMatchObject({ exitCode: 1 })

    expect((await runErase('s3', { ...opts, reason: 'client request' })).output).toMatch(
      /erased 7 event payloads/,
    )
    const afterErase = await runVerify(opts)
    expect(afterErase.output).toMatch(/pruned: 14\.\.20 \(by #21\)/)
    expect(afterErase.exitCode).toBe(0)

    withDb(p.dbPath, (db) => db.prepare('DELETE FROM events WHERE seq = 3').run())
    const bad = await runVerify(opts)
    expect(bad.exitCode).toBe(1)
    expect(bad.output).toContain(`FAIL missing at (${ORIGIN}, 3)`)
  })
})

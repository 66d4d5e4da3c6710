/**
 * `verify` over a log of thousands of events reads it page by page and says how far it got on stderr
 * (`verify: 4000/7522 events`), while stdout stays the report. Real SQLite, the real CLI in a child process.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli } from '../helpers/cli.js'
import { generateHistory } from '../helpers/history-generator.js'
import { writeSignedLog } from '../helpers/signed-log.js'

const ORIGIN = 'comfy-audit/progress'

let dir: string
let events = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ca-verify-progress-'))
  const log = await writeSignedLog(
    {
      sqlite: { path: join(dir, 'audit.sqlite'), synchronous: 'normal' },
      data: dir,
      origin: ORIGIN,
      checkpointEvery: 1500,
    },
    (store) => generateHistory(store, { seed: 9, sessions: 300, batchEvents: 500 }),
  )
  events = log.written.events
}, 120_000)

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('verify progress', () => {
  it('writes progress lines on stderr, ending at the number of events, and the report on stdout', async () => {
    expect(events).toBeGreaterThan(4000)
    const r = await cli('verify', '--data', dir, '--origin', ORIGIN, '--progress-every', '2000')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^${ORIGIN}: ${events} events, \\d+ checkpoints`, 'm'))
    expect(r.stdout.trim().split('\n').at(-1)).toBe('OK')
    const lines = r.stderr.trim().split('\n')
    const done = lines.map((line) => {
      const m = /^verify: (\d+)\/(\d+) events$/.exec(line)
      if (!m) throw new Error(`not a progress line: ${JSON.stringify(line)}`)
      expect(Number(m[2])).toBe(events)
      return Number(m[1])
    })
    // Every 2,000 events at least (more when a second passed on a slow machine), then the total.
    expect(done.length).toBeGreaterThanOrEqual(Math.floor(events / 2000) + 1)
    for (let i = 1; i < done.length; i++) expect(done[i]).toBeGreaterThan(done[i - 1]!)
    expect(done.at(-1)).toBe(events)
  }, 120_000)

  it('names a bad --progress-every', async () => {
    const r = await cli('verify', '--data', dir, '--origin', ORIGIN, '--progress-every', '0')
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('--progress-every 0')
  }, 60_000)
})

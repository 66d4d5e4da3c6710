/**
 * Issue 10 item 8: read-only commands never create or change anything. On a missing data dir or store they
 * say so and exit non-zero, leaving no directory, store file or signing key behind (a mistyped `--data` used
 * to get a fresh empty store and a new key, and `verify` then "verified" the wrong, empty log).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli } from '../helpers/cli.js'

let root: string
let image: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ca-readonly-'))
  image = join(root, 'image.png')
  await writeFile(image, 'not really a png')
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

const COMMANDS: [string, (data: string) => string[]][] = [
  ['sessions', (d) => ['sessions', '--data', d]],
  ['show', (d) => ['show', 'p-1', '--data', d]],
  ['export', (d) => ['export', '--data', d]],
  ['verify', (d) => ['verify', '--data', d]],
  ['trace', (d) => ['trace', image, '--data', d]],
  ['status', (d) => ['status', '--data', d]],
  ['key', (d) => ['key', '--data', d]],
]

describe('issue 10 item 8: read-only commands on a missing data dir or store', () => {
  it.each(COMMANDS)(
    '%s on a missing data dir says so, exits non-zero and creates nothing',
    async (_, args) => {
      const data = join(root, `missing-${_}`)
      const r = await cli(...args(data))
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain(data)
      expect(r.stderr).toMatch(/not found|no audit store|no signing key/)
      expect(r.stderr).not.toMatch(/\n\s+at /) // one line, no stack
      expect(existsSync(data)).toBe(false)
    },
  )

  it.each(COMMANDS.filter(([name]) => ['sessions', 'verify', 'key'].includes(name)))(
    '%s on an empty data dir leaves it empty (no store, no key)',
    async (_, args) => {
      const data = join(root, `empty-${_}`)
      await mkdir(data)
      const r = await cli(...args(data))
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/no audit store|no signing key/)
      expect(await readdir(data)).toEqual([])
    },
  )
})

/** Issue 15 item 1: `comfy-audit sim --web-root DIR` refuses a folder that holds no front end build. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { cli } from '../helpers/cli.js'

it('sim --web-root names the folder when it has no index.html', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sim-web-root-'))
  try {
    const r = await cli('sim', '--port', '0', '--data', join(dir, 'data'), '--web-root', join(dir, 'nothing'))
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      `--web-root must be a folder holding a front end build (index.html), got ${join(dir, 'nothing')}`,
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

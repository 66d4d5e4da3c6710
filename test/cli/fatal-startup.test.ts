/**
 * Issue 10 item 7: fatal start-up errors exit non-zero, quickly, with one line naming the value; never a
 * process that stays up recording nothing.
 */
import { execFile } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = new URL('../..', import.meta.url).pathname
let root: string
let busy: Server
let busyPort: number

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ca-fatal-'))
  busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  busyPort = (busy.address() as { port: number }).port
})
afterAll(async () => {
  await new Promise((resolve) => busy.close(resolve))
  await rm(root, { recursive: true, force: true })
})

/** Runs `serve` in a child process; kills it after `limitMillis` (a gateway that stayed up) and says so. */
function serve(
  args: string[],
  limitMillis = 15_000,
): Promise<{ code: number | null; stderr: string; killed: boolean }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--comfyui', 'http://127.0.0.1:9', ...args],
      {
        cwd: ROOT,
        env: { ...process.env, COMFY_AUDIT_CONFIG: '' },
        timeout: limitMillis,
        killSignal: 'SIGKILL',
      },
      (err, _stdout, stderr) => {
        const e = err as (Error & { code?: number; killed?: boolean }) | null
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          stderr,
          killed: e?.killed === true,
        })
      },
    )
    child.stdin?.end()
  })
}

describe('issue 10 item 7: fatal start-up errors exit non-zero', () => {
  it.each([
    [
      'port in use',
      () => ['--listen', `127.0.0.1:${busyPort}`, '--data', join(root, 'd1')],
      () => String(busyPort),
    ],
    [
      'bad --listen',
      () => ['--listen', '127.0.0.1:99999', '--data', join(root, 'd2')],
      () => '127.0.0.1:99999',
    ],
    [
      'unsupported --comfyui scheme',
      () => ['--comfyui', 'ftp://127.0.0.1:8188', '--listen', '127.0.0.1:0', '--data', join(root, 'd3')],
      () => 'ftp:',
    ],
    [
      'non-loopback without auth',
      () => ['--listen', '0.0.0.0:0', '--auth', 'none', '--data', join(root, 'd4')],
      () => '0.0.0.0',
    ],
    [
      'unwritable data dir',
      () => ['--listen', '127.0.0.1:0', '--data', join(root, 'afile', 'data')],
      () => join(root, 'afile'),
    ],
    [
      'corrupt store',
      () => [
        '--listen',
        '127.0.0.1:0',
        '--store',
        `sqlite:${join(root, 'corrupt.sqlite')}`,
        '--data',
        join(root, 'd6'),
      ],
      () => 'corrupt.sqlite',
    ],
  ])('%s: one line naming the value, non-zero exit, process gone', async (_, args, named) => {
    // A data dir below a regular file cannot be created, even by root (chmod would not stop root).
    await writeFile(join(root, 'afile'), 'a file, not a directory')
    await writeFile(join(root, 'corrupt.sqlite'), 'this is not a database, just text '.repeat(200))
    const r = await serve(args())
    expect(r.killed, `still running; stderr: ${r.stderr}`).toBe(false)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain(named())
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })
})

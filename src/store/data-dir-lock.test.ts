import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { zSinkConfig } from '../config/config.js'
import { createSinkPipeline } from '../sinks/sink-pipeline.js'
import { acquireDirLock, DirLockedError, LOCK_FILE_NAME } from './data-dir-lock.js'

const fresh = (): string => mkdtempSync(join(tmpdir(), 'dir-lock-'))

/** A pid that certainly ran and certainly has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  const pid = child.pid
  if (pid === undefined) throw new Error('no pid')
  await new Promise((resolve) => child.once('exit', resolve))
  return pid
}

describe('issue 10 item 9: one lock per spool and per data dir', () => {
  it('refuses a second holder of a directory, naming the first', () => {
    const dir = fresh()
    const lock = acquireDirLock(dir, { purpose: 'gateway' })
    expect(() => acquireDirLock(dir, { purpose: 'comfy-audit erase' })).toThrow(DirLockedError)
    expect(() => acquireDirLock(dir, { purpose: 'comfy-audit erase' })).toThrow(
      new RegExp(`comfy-audit erase: ${dir} is in use by gateway \\(pid ${process.pid} on `),
    )
    lock.release()
    lock.release()
    expect(existsSync(join(dir, LOCK_FILE_NAME))).toBe(false)
    acquireDirLock(dir, { purpose: 'again' }).release()
  })

  it('refuses while another live process holds the lock', async () => {
    const dir = fresh()
    const script = `
      import { acquireDirLock } from ${JSON.stringify(new URL('./data-dir-lock.ts', import.meta.url).pathname)}
      acquireDirLock(process.argv[1], { purpose: 'child gateway' })
      process.stdout.write('locked\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve())
        child.once('exit', (code) => reject(new Error(`child exited ${code}`)))
      })
      expect(() => acquireDirLock(dir, { purpose: 'gateway' })).toThrow(/in use by child gateway \(pid \d+/)
      // A SIGKILLed holder never removes its file; its lock is stale and taken over.
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
      const lock = acquireDirLock(dir, { purpose: 'gateway' })
      expect(JSON.parse(readFileSync(lock.path, 'utf8'))).toMatchObject({
        pid: process.pid,
        purpose: 'gateway',
      })
      lock.release()
    } finally {
      child.kill('SIGKILL')
    }
  }, 30_000)

  it('takes over the stale lock of a dead pid, never one of another host or an unreadable one', async () => {
    const dir = fresh()
    const path = join(dir, LOCK_FILE_NAME)
    writeFileSync(
      path,
      JSON.stringify({ pid: await deadPid(), host: hostname(), purpose: 'old', since: 'x' }),
    )
    acquireDirLock(dir, { purpose: 'new' }).release()
    writeFileSync(path, JSON.stringify({ pid: 1, host: 'elsewhere', purpose: 'remote', since: 'x' }))
    expect(() => acquireDirLock(dir, { purpose: 'new', isAlive: () => false })).toThrow(/in use by remote/)
    writeFileSync(path, '')
    expect(() => acquireDirLock(dir, { purpose: 'new' })).toThrow(/lock file unreadable/)
  })

  it('refuses a second sink pipeline on the same spools until the first shuts down', async () => {
    const dataDir = fresh()
    const sinks = [zSinkConfig.parse({ type: 'jsonl' })]
    const first = await createSinkPipeline(sinks, { dataDir })
    await expect(createSinkPipeline(sinks, { dataDir })).rejects.toThrow(
      /sink "jsonl" \(jsonl\): cannot start: sink jsonl spool: .* is in use by sink jsonl spool/,
    )
    await first.shutdown()
    const second = await createSinkPipeline(sinks, { dataDir })
    await second.shutdown()
  })
})

import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

let dir = ''
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-crash-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

it('keeps every acknowledged event when the writing process is killed', async () => {
  const path = join(dir, 'audit.db')
  const childScript = fileURLToPath(new URL('./crash-child.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, path], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const acknowledged = await new Promise<number[]>((resolve, reject) => {
    const seqs: number[] = []
    let buffered = ''
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      seqs.push(...lines.map(Number))
      // Kill mid-stream, while appends are in flight.
      if (seqs.length >= 400) {
        child.kill('SIGKILL')
        resolve(seqs)
      }
    })
    child.once('exit', (code) => reject(new Error(`child exited early (${code}): ${stderr}`)))
  })
  await new Promise((resolve) =>
    child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve),
  )

  const store = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/crash' })
  const last = await store.lastSeq()
  expect(last).toBeGreaterThanOrEqual(Math.max(...acknowledged))
  const stored: number[] = []
  for await (const event of store.events()) stored.push(event.seq)
  expect(stored).toEqual(Array.from({ length: last + 1 }, (_, i) => i))
  const [next] = await store.append([
    { kind: 'gateway.started', time: new Date().toISOString(), session_id: null, payload: {} },
  ])
  expect(next?.seq).toBe(last + 1)
  await store.close()
})

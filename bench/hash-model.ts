/**
 * Benchmark: MB/s of hashing a generated model file once with the worker-thread file hasher (report only).
 * Usage: npx tsx bench/hash-model.ts [sizeMiB=2048]
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFileHasher } from '../src/provenance/file-hasher.js'

const sizeMiB = Number(process.argv[2] ?? 2048)
const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bench-'))
const path = join(dir, 'model.safetensors')
try {
  const chunk = randomBytes(1 << 20)
  const out = createWriteStream(path)
  for (let i = 0; i < sizeMiB; i++) {
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()))
  }
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())))
  const hasher = createFileHasher({ workers: 1 })
  // Event-loop responsiveness while the worker hashes: the longest gap between 10 ms ticks.
  let last = performance.now()
  let worstGap = 0
  const tick = setInterval(() => {
    const now = performance.now()
    worstGap = Math.max(worstGap, now - last)
    last = now
  }, 10)
  const started = performance.now()
  const digest = await hasher.hash(path)
  const seconds = (performance.now() - started) / 1000
  clearInterval(tick)
  await hasher.close()
  process.stdout.write(
    `hashed ${sizeMiB} MiB in ${seconds.toFixed(2)} s = ${(sizeMiB / seconds).toFixed(0)} MiB/s ` +
      `(sha256 ${digest.sha256.slice(0, 10)}…); longest event-loop gap meanwhile ${worstGap.toFixed(1)} ms\n`,
  )
} finally {
  await rm(dir, { recursive: true, force: true })
}

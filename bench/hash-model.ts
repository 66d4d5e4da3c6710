/**
 * Benchmark (report only): hashing a large model file once, and what it costs the proxy path.
 *
 * 1. MB/s of hashing a generated model file with the worker-thread file hasher, and the longest event-loop gap
 *    meanwhile.
 * 2. POST /prompt latency through the gateway (ComfyUI stand-in behind it), p50/p99 over N prompts, first with
 *    nothing else running, then while the gateway hashes that file because a prompt named it as a checkpoint.
 *
 * Usage: npx tsx bench/hash-model.ts [sizeMiB=2048] [--prompts N=200] [--out FILE]
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { loadConfig } from '../src/config/config.js'
import { startAuditGateway } from '../src/create-gateway.js'
import { createFileHasher } from '../src/provenance/file-hasher.js'
import { createSimServer } from '../src/sim/index.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const sizeMiB = Number(args.find((a) => /^\d+$/.test(a)) ?? 2048)
const prompts = Number(flag('--prompts') ?? 200)
const out = flag('--out')

async function writeModel(path: string): Promise<void> {
  const chunk = randomBytes(1 << 20)
  const stream = createWriteStream(path)
  for (let i = 0; i < sizeMiB; i++) {
    if (!stream.write(chunk)) await new Promise<void>((r) => stream.once('drain', () => r()))
  }
  await new Promise<void>((r, j) => stream.end((e?: Error | null) => (e ? j(e) : r())))
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bench-hash-'))
try {
  // 1. Raw hashing speed.
  const standalone = join(dir, 'model.safetensors')
  await writeModel(standalone)
  const hasher = createFileHasher({ workers: 1 })
  let last = performance.now()
  let worstGap = 0
  const tick = setInterval(() => {
    const now = performance.now()
    worstGap = Math.max(worstGap, now - last)
    last = now
  }, 10)
  const started = performance.now()
  const digest = await hasher.hash(standalone)
  const hashSeconds = (performance.now() - started) / 1000
  clearInterval(tick)
  await hasher.close()
  await rm(standalone)
  const mibPerSecond = sizeMiB / hashSeconds
  process.stdout.write(
    `hashed ${sizeMiB} MiB in ${hashSeconds.toFixed(2)} s = ${mibPerSecond.toFixed(0)} MiB/s ` +
      `(sha256 ${digest.sha256.slice(0, 10)}…); longest event-loop gap meanwhile ${worstGap.toFixed(1)} ms\n`,
  )

  // 2. Prompt latency through the gateway, without and with that hash running.
  const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 50 })
  await writeModel(join(sim.dir.models, 'checkpoints', 'bench-large.safetensors'))
  const config = loadConfig({
    env: {},
    // No rate limit: the benchmark is one client sending prompts back to back.
    flags: {
      'comfyui.url': sim.url,
      listen: '127.0.0.1:0',
      data: join(dir, 'gateway'),
      origin: 'bench-hash',
      'limits.promptsPerMinute': 0,
    },
  })
  if (!config.ok) throw new Error(config.problems.join('; '))
  const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
  const agent = new Agent({ connections: 1, pipelining: 1 })
  const postPrompt = async (prompt: Record<string, unknown>): Promise<number> => {
    const t = performance.now()
    const res = await request(`${audit.url}/prompt`, {
      method: 'POST',
      dispatcher: agent,
      body: JSON.stringify({ prompt, client_id: 'bench' }),
    })
    await res.body.arrayBuffer()
    if (res.statusCode !== 200) throw new Error(`POST /prompt answered ${res.statusCode}`)
    return performance.now() - t
  }
  const small = (): Record<string, unknown> => ({
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    // The same graph every time: after the first run ComfyUI serves it from cache, so the stand-in's own image
    // work does not swamp what is measured here (the HTTP answer to POST /prompt).
    '2': { class_type: 'ImageBlur', inputs: { image: ['1', 0], blur_radius: 3, sigma: 1.0 } },
    '3': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
  })
  const series = async (): Promise<number[]> => {
    const times: number[] = []
    for (let i = 0; i < prompts; i++) times.push(await postPrompt(small()))
    return times.sort((a, b) => a - b)
  }
  for (let i = 0; i < 20; i++) await postPrompt(small()) // warm-up
  const baseline = await series()
  await sim.idle()
  const hashStarted = performance.now()
  await postPrompt({
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'bench-large.safetensors' } },
    '2': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '3': { class_type: 'VAEDecode', inputs: { samples: ['2', 0], vae: ['1', 2] } },
    '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'bench/large' } },
  })
  let hashDone: number | null = null
  const idle = audit.provenanceIdle().then(() => (hashDone = performance.now()))
  const during = await series()
  const overlapped = hashDone === null
  await idle
  const gatewayHashSeconds = ((hashDone ?? performance.now()) - hashStarted) / 1000
  await agent.close()
  await audit.close()
  await sim.close()

  const result = {
    model_mib: sizeMiB,
    hash_mib_per_s: Number(mibPerSecond.toFixed(1)),
    hash_event_loop_gap_ms: Number(worstGap.toFixed(1)),
    prompts_per_series: prompts,
    prompt_p50_ms_idle: Number(percentile(baseline, 50).toFixed(3)),
    prompt_p99_ms_idle: Number(percentile(baseline, 99).toFixed(3)),
    prompt_p50_ms_while_hashing: Number(percentile(during, 50).toFixed(3)),
    prompt_p99_ms_while_hashing: Number(percentile(during, 99).toFixed(3)),
    hash_overlapped_whole_series: overlapped,
    gateway_hash_seconds: Number(gatewayHashSeconds.toFixed(2)),
  }
  process.stdout.write(
    [
      `POST /prompt through the gateway, ${prompts} prompts each:`,
      `  idle:          p50 ${result.prompt_p50_ms_idle} ms   p99 ${result.prompt_p99_ms_idle} ms`,
      `  while hashing: p50 ${result.prompt_p50_ms_while_hashing} ms   p99 ${result.prompt_p99_ms_while_hashing} ms` +
        (overlapped ? '' : '   (the hash finished before the series did)'),
      `  the gateway hashed the ${sizeMiB} MiB checkpoint in ${result.gateway_hash_seconds} s`,
      '',
    ].join('\n'),
  )
  if (out) await writeFile(out, JSON.stringify(result, null, 2) + '\n')
} finally {
  await rm(dir, { recursive: true, force: true })
}

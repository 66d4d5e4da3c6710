/**
 * `comfy-audit demo`: the ComfyUI stand-in, the gateway and the dashboard on free ports, with a few days of
 * a small studio's history driven through the gateway: several people, workflows with changing settings, a
 * LoRA update that breaks one workflow, interrupts, a prompt ComfyUI refuses, and KSampler made 40% slower on
 * the last day (the regression `comfy-audit regressions` and the Performance page should find).
 *
 * Everything goes through the gateway's real HTTP path with each person's own API token, so the history is
 * recorded exactly as a real one would be; only the clock is compressed (see DemoClock).
 */
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { JsonObject } from '../audit/types.js'
import { silentLogger, type Logger } from '../audit/report-error.js'
import { openStoreDialect } from '../root/store-dialects.js'
import { loadConfig, parseStoreUrl, type StoreLocation } from '../config/config.js'
import { startAuditGateway, type AuditGateway } from '../create-gateway.js'
import { createIdentityDirectory } from '../identity/identity-directory.js'
import { createSimServer, type SimServer } from '../sim/index.js'
import { createRuntimeStore } from '../store/runtime-store.js'
import { DemoClock } from './demo-clock.js'
import {
  BROKEN_LORA,
  DEMO_PEOPLE,
  brokenSafetensors,
  portrait,
  txt2img,
  typo,
  upscale,
  type DemoPrompt,
  type SamplerSettings,
} from './demo-workflows.js'
import { seededRandom } from './seeded-random.js'
import { WebSocket } from 'ws'

const DAY = 86_400_000

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Folder for the stand-in's and the gateway's data; default a new temporary folder. */
  readonly data?: string
  /** Interface for both servers; default 127.0.0.1. */
  readonly host?: string
  /** Gateway port; default 0 (any free port). */
  readonly port?: number
  /** Prompts to drive; default 150. */
  readonly prompts?: number
  /** Days of history they are spread over, ending now; default 3. */
  readonly days?: number
  /**
   * How much faster than the recording the stand-in runs on the wall (the recorded durations are the
   * recording's whatever this is, see DemoClock); default 10.
   */
  readonly speed?: number
  /** Seed of every random choice; default 1. */
  readonly seed?: number
  /** A built ComfyUI front end for the stand-in to serve at `/` (as ComfyUI does). */
  readonly webRoot?: string
  /** Progress lines (one per tenth of the prompts); default none. */
  readonly progress?: (line: string) => void
  readonly logger?: Logger
}

/** What the demo reports of what it drove. */
export interface DemoSummary {
  readonly submitted: number
  readonly refused: number
  readonly interrupted: number
  /** First submission of the broken LoRA version, and of the fix (ISO). */
  readonly loraBrokenAt: string
  readonly loraFixedAt: string
  /** KSampler is 40% slower from here on (ISO). */
  readonly slowdownFrom: string
}

/** A running demo: the servers stay up until `close`. */
export interface Demo {
  readonly sim: SimServer
  readonly audit: AuditGateway
  readonly clock: DemoClock
  readonly data: string
  /** The people and their API tokens (printed once; the store keeps only their hashes). */
  readonly tokens: ReadonlyMap<string, string>
  readonly summary: DemoSummary
  close(): Promise<void>
}

/** The factor KSampler's timings are multiplied by on the last day. */
export const DEMO_SLOWDOWN = 1.4

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!
}

function weighted(random: () => number): string {
  const people = DEMO_PEOPLE.filter((p) => p.weight > 0)
  let r = random() * people.reduce((a, p) => a + p.weight, 0)
  for (const p of people) {
    r -= p.weight
    if (r < 0) return p.name
  }
  return people[people.length - 1]!.name
}

function settings(random: () => number): SamplerSettings {
  const size = pick(random, [512, 512, 512, 768, 768, 1024])
  return {
    seed: Math.floor(random() * 2 ** 48),
    steps: pick(random, [20, 20, 20, 20, 20, 20, 25, 30]),
    cfg: pick(random, [6.5, 7.0, 7.0, 8.0]),
    sampler: pick(random, ['euler', 'euler', 'dpmpp_2m', 'euler_ancestral']),
    scheduler: pick(random, ['normal', 'karras']),
    width: size,
    height: pick(random, [size, size, 512]),
    batch: pick(random, [1, 1, 1, 2]),
  }
}

async function until(what: string, cond: () => boolean, timeoutMillis = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMillis
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

/** Adds the demo's people to the store before the gateway opens it; returns their tokens. */
async function addPeople(storeUrl: string, data: string, origin: string): Promise<Map<string, string>> {
  const store = createRuntimeStore(await openStoreDialect(storeLocation(storeUrl, data)), { origin })
  await store.init()
  const tokens = new Map<string, string>()
  try {
    const directory = createIdentityDirectory(store)
    for (const p of DEMO_PEOPLE) {
      // A second demo on the same --data keeps its people and history; they get new tokens.
      const known = (await directory.person(p.name)) !== undefined
      const added = known
        ? await directory.reissueToken(p.name, 'demo')
        : await directory.addPerson(p.name, p.role, 'demo')
      if (!added.ok) throw new Error(`demo: cannot add ${p.name}: ${added.reason}`)
      tokens.set(p.name, added.value.token)
    }
  } finally {
    await store.close()
  }
  return tokens
}

/** Starts the stand-in and the gateway, drives the history, and leaves both running. */
export async function runDemo(options: DemoOptions = {}): Promise<Demo> {
  const prompts = options.prompts ?? 150
  const days = options.days ?? 3
  const speed = options.speed ?? 10
  if (!Number.isInteger(prompts) || prompts < 1)
    throw new Error(`prompts must be a whole number ≥ 1, got ${prompts}`)
  if (!(days > 0)) throw new Error(`days must be a positive number, got ${days}`)
  if (!(speed > 0)) throw new Error(`speed must be a positive number, got ${speed}`)
  const random = seededRandom(options.seed ?? 1)
  const data = resolve(options.data ?? mkdtempSync(join(tmpdir(), 'comfy-audit-demo-')))
  const host = options.host ?? '127.0.0.1'
  const say = options.progress ?? (() => {})

  const end = Date.now()
  const start = end - days * DAY
  const clock = new DemoClock(start)
  const slowdownFrom = end - Math.min(1, days / 3) * DAY
  const sim = await createSimServer({
    dataDir: join(data, 'comfyui'),
    host,
    port: 0,
    speed,
    now: clock.now,
    onSlept: clock.advanceBy,
    nodeTimeFactor: (type) => (type === 'KSampler' && clock.now() >= slowdownFrom ? DEMO_SLOWDOWN : 1),
    ...(options.webRoot !== undefined ? { webRoot: options.webRoot } : {}),
  })
  // The "updated" LoRA: on disk from the start (the catalogue lists it), broken from the start.
  mkdirSync(join(sim.dir.models, 'loras'), { recursive: true })
  writeFileSync(join(sim.dir.models, 'loras', BROKEN_LORA), brokenSafetensors())

  let audit: AuditGateway | undefined
  const closers: (() => Promise<void>)[] = []
  try {
    const auditData = join(data, 'audit')
    const config = loadConfig({
      env: {},
      flags: {
        'comfyui.url': sim.url,
        listen: `${host}:${options.port ?? 0}`,
        data: auditData,
        'auth.mode': 'token',
      },
    })
    if (!config.ok) throw new Error(`demo: configuration problems: ${config.problems.join('; ')}`)
    const tokens = await addPeople(config.value.store.url, auditData, config.value.origin ?? 'comfy-audit')
    audit = await startAuditGateway(config.value, { logger: options.logger ?? silentLogger, now: clock.now })
    const gateway = audit
    closers.push(await openPeopleSockets(gateway.url, tokens))
    const post = async (person: string, path: string, body: JsonObject): Promise<Response> =>
      fetch(`${gateway.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens.get(person)!}`, 'content-type': 'application/json' },
        body: JSON.stringify(path === '/prompt' ? { ...body, client_id: `demo-${person}` } : body),
      })

    const loraBrokenAt = start + 0.5 * days * DAY
    const loraFixedAt = start + 0.7 * days * DAY
    let submitted = 0
    let refused = 0
    let interrupted = 0
    let reported = 0
    let at = start
    for (let i = 0; i < prompts;) {
      // Submissions come in bursts of one to three (people working at the same time), then a pause; the
      // last one lands a little before the wall's now, so the history ends where the live part begins.
      const burst = Math.min(prompts - i, 1 + Math.floor(random() * random() * 3))
      at = Math.min(at + (days * DAY * (0.5 + random()) * burst) / prompts, end - (prompts - i) * 60_000)
      clock.advanceTo(at)
      const ids: { id: string; person: string; interrupt: boolean }[] = []
      for (let b = 0; b < burst; b++, i++) {
        const person = weighted(random)
        const s = settings(random)
        const roll = random()
        const t = clock.now()
        const version = t < loraBrokenAt ? 1 : t < loraFixedAt ? 2 : 3
        // A few things happen at fixed points, so even a short demo has them: a typo ComfyUI refuses, and
        // runs their owner interrupts.
        const prompt: DemoPrompt =
          roll < 0.01 || i === Math.floor(prompts / 3)
            ? typo(s, person)
            : roll < 0.3
              ? portrait(s, version, person)
              : roll < 0.42
                ? upscale(1 + Math.floor(random() * 4), person)
                : txt2img(s, Math.floor(random() * 6), person)
        const res = await post(person, '/prompt', prompt.body)
        const answer = (await res.json()) as { prompt_id?: string }
        if (res.status !== 200 || typeof answer.prompt_id !== 'string') {
          refused++
          continue
        }
        submitted++
        const interrupt = prompt.workflow !== 'wf-upscale' && (random() < 0.03 || i % 20 === 11)
        ids.push({ id: answer.prompt_id, person, interrupt })
      }
      interrupted += await interruptWhenRunning(
        sim,
        ids.filter((j) => j.interrupt),
        post,
      )
      await sim.idle()
      await captureSettled(gateway)
      const tenth = Math.floor((i * 10) / prompts)
      if (tenth > reported) {
        reported = tenth
        say(`history: ${i}/${prompts} prompts (${new Date(clock.now()).toISOString().slice(0, 16)}Z)`)
      }
    }
    await gateway.capture.flush()
    await gateway.reconcileNow()
    await gateway.provenanceIdle()
    await gateway.store.flush()
    clock.followWall()
    const opened = gateway
    return {
      sim,
      audit: opened,
      clock,
      data,
      tokens,
      summary: {
        submitted,
        refused,
        interrupted,
        loraBrokenAt: new Date(loraBrokenAt).toISOString(),
        loraFixedAt: new Date(loraFixedAt).toISOString(),
        slowdownFrom: new Date(slowdownFrom).toISOString(),
      },
      async close() {
        for (const c of closers) await c()
        await opened.close()
        await sim.close()
      },
    }
  } catch (err) {
    for (const c of closers) await c().catch(() => {})
    await audit?.close().catch(() => {})
    await sim.close().catch(() => {})
    throw err
  }
}

/**
 * Each person works in a browser tab: a socket with their client id, as the front end opens one. ComfyUI sends
 * node events only to the socket of the prompt's client id, so prompts carry it. Returns their closer.
 */
async function openPeopleSockets(url: string, tokens: Map<string, string>): Promise<() => Promise<void>> {
  const sockets: WebSocket[] = []
  for (const p of DEMO_PEOPLE.filter((p) => p.weight > 0)) {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?clientId=demo-${p.name}`, {
      headers: { authorization: `Bearer ${tokens.get(p.name)!}` },
    })
    sockets.push(ws)
    await once(ws, 'open')
  }
  return async () => {
    for (const ws of sockets) ws.close()
    await Promise.all(sockets.map((ws) => (ws.readyState === WebSocket.CLOSED ? null : once(ws, 'close'))))
  }
}

/** Its owner stops each job once it runs (a wrong seed noticed in the preview). Returns how many stopped. */
async function interruptWhenRunning(
  sim: SimServer,
  jobs: readonly { id: string; person: string }[],
  post: (person: string, path: string, body: JsonObject) => Promise<Response>,
): Promise<number> {
  let interrupted = 0
  for (const job of jobs) {
    await until(`prompt ${job.id} to run or finish`, () => {
      const q = sim.queue()
      return q.running.some((r) => r.promptId === job.id) || !q.pending.some((r) => r.promptId === job.id)
    })
    if (sim.queue().running.some((r) => r.promptId === job.id)) {
      const res = await post(job.person, '/interrupt', { prompt_id: job.id })
      await res.arrayBuffer()
      if (res.ok) interrupted++
    }
  }
  return interrupted
}

/**
 * ComfyUI is done; the gateway may still be reading its last frames. Jumping the clock before capture closed
 * every session would stretch their last node by the jump.
 */
async function captureSettled(gateway: AuditGateway): Promise<void> {
  for (;;) {
    await gateway.capture.flush()
    if (gateway.capture.openSessions().length === 0) return
    // Let the socket deliver ComfyUI's last frames (flush alone settles on microtasks).
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** The store a URL names (the URL is the config's, already checked). */
function storeLocation(url: string, dataDir: string): StoreLocation {
  const parsed = parseStoreUrl(url, dataDir)
  if (!parsed.ok) throw new Error(parsed.reason)
  return parsed.value
}

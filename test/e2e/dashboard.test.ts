/**
 * Issue 13: the dashboard in real Chromium against a real gateway (token authentication, three people) and
 * the stand-in, with runs recorded by proxying them through the gateway. Each test saves a screenshot under
 * test-results/ (dashboard-*.png).
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BrowserContext, Page } from 'playwright-core'
import type { JsonObject } from '../../src/audit/types.js'
import { stringifyJson } from '../../src/audit/json.js'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { DASHBOARD_CSP } from '../../src/query/dashboard-route.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { chromiumMissing, launchChromium } from '../helpers/chromium.js'
import { addPeople } from '../helpers/people.js'

const REPO = resolve(new URL('../..', import.meta.url).pathname)
const RESULTS = join(REPO, 'test-results')
const BUILT = join(REPO, 'dist', 'web', 'index.html')
const missing =
  chromiumMissing ??
  (existsSync(BUILT) ? undefined : `the dashboard is not built (${BUILT}); run npm run build:web`)
if (missing) console.warn(`dashboard test skipped: ${missing}`)

// Generous: a loaded 2-core machine starts Chromium and paints charts slowly.
const DEADLINE = 30_000
const TEST_TIMEOUT = 240_000

/** The default text-to-image graph, with the inputs a comparison changes. */
function txt2img(seed: number, text: string, steps = 3): Record<string, unknown> {
  return {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'audit-sd15-random.safetensors' } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text, clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['4', 1] } },
    '3': {
      class_type: 'KSampler',
      inputs: {
        seed,
        steps,
        cfg: 7,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
      },
    },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'dash' } },
  }
}

function failing(): Record<string, unknown> {
  return {
    '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
    '2': {
      class_type: 'AuditFail',
      inputs: { image: ['1', 0], message: 'planned failure for the dashboard' },
    },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'dash-fail' } },
  }
}

let sim: SimServer
let audit: AuditGateway
const work: string[] = []
const tokens: Record<'ada' | 'alice' | 'bob', string> = { ada: '', alice: '', bob: '' }
const ids: { a1: string; a2: string; fail: string; bob: string } = { a1: '', a2: '', fail: '', bob: '' }
const contexts: BrowserContext[] = []

async function submit(token: string, prompt: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${audit.url}/prompt`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: stringifyJson({ prompt, client_id: 'dash-test' } as unknown as JsonObject),
  })
  const body = (await res.json()) as { prompt_id?: string }
  if (res.status !== 200 || !body.prompt_id) throw new Error(`POST /prompt answered ${res.status}`)
  return body.prompt_id
}

/** Polls until the store holds the session with a final status. */
async function recorded(id: string): Promise<void> {
  const until = Date.now() + DEADLINE
  for (;;) {
    await audit.store.flush()
    const s = await audit.store.session(id)
    if (s && !['queued', 'running'].includes(s.status)) return
    if (Date.now() > until) throw new Error(`session ${id} not final in the store (status ${s?.status})`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A signed-in browser page for one person; console errors and failed requests are collected. */
async function signedIn(
  who: keyof typeof tokens,
): Promise<{ page: Page; problems: string[]; context: BrowserContext }> {
  const profile = await mkdtemp(join(tmpdir(), 'dash-chromium-'))
  work.push(profile)
  const context = await launchChromium(profile, {
    viewport: { width: 1280, height: 800 },
    timezoneId: 'Asia/Shanghai',
  })
  contexts.push(context)
  const page = context.pages()[0] ?? (await context.newPage())
  page.setDefaultTimeout(DEADLINE)
  const problems: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning')
      problems.push(`${m.type()}: ${m.text()} (${m.location().url})`)
  })
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  page.on('requestfailed', (r) => {
    // Navigating away cancels the live-update stream and lazy images; that is not a server failure.
    if (r.failure()?.errorText === 'net::ERR_ABORTED') return
    problems.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`)
  })
  await page.goto(`${audit.url}/_audit/ui/`)
  // Not signed in: the gateway's login page, which comes back to the dashboard.
  await page.waitForURL(/\/_audit\/login\?next=/)
  await page.fill('#token', tokens[who])
  await page.click('button[type=submit]')
  await page.waitForURL(/\/_audit\/ui\/$/)
  await page.waitForSelector('[data-test=who]')
  return { page, problems, context }
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(RESULTS, `dashboard-${name}.png`), fullPage: true })
}

async function rowIds(page: Page): Promise<string[]> {
  return page.$$eval('[data-test=runs] tbody tr', (rows) =>
    rows.map((r) => r.getAttribute('data-session') ?? ''),
  )
}

describe.skipIf(missing !== undefined)('issue 13: the dashboard in Chromium', () => {
  beforeAll(async () => {
    await mkdir(RESULTS, { recursive: true })
    const dir = await mkdtemp(join(tmpdir(), 'dash-'))
    work.push(dir)
    sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 20 })
    const data = join(dir, 'data')
    const config = loadConfig({
      env: {},
      flags: {
        data,
        'comfyui.url': sim.url,
        listen: '127.0.0.1:0',
        'auth.mode': 'token',
        origin: 'dash-e2e',
        // Checkpoints soon after the runs, so the Run page's integrity badge has one to verify against.
        'ledger.checkpointEvery': 20,
      },
    })
    if (!config.ok) throw new Error(config.problems.join('\n'))
    const admin = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
      origin: 'cli',
    })
    const people = createIdentityDirectory(admin, { scrypt: { N: 1 << 10, r: 8, p: 1 } })
    Object.assign(
      tokens,
      await addPeople(
        people,
        [
          ['ada', 'admin'],
          ['alice', 'artist'],
          ['bob', 'artist'],
        ],
        'local:test',
      ),
    )
    await admin.close()
    audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
    ids.a1 = await submit(tokens.alice, txt2img(11, 'a red fox in the snow'))
    await recorded(ids.a1)
    ids.a2 = await submit(tokens.alice, txt2img(12, 'a red fox in the rain'))
    await recorded(ids.a2)
    ids.fail = await submit(tokens.alice, failing())
    await recorded(ids.fail)
    ids.bob = await submit(tokens.bob, txt2img(13, 'a lighthouse at dusk'))
    await recorded(ids.bob)
    await audit.provenanceIdle()
  }, 180_000)

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined)
    await audit?.close()
    await sim?.close()
    for (const d of work) await rm(d, { recursive: true, force: true })
  })

  it(
    'serves the dashboard behind the login, with a strict CSP',
    async () => {
      const anonymous = await fetch(`${audit.url}/_audit/ui/`, {
        headers: { accept: 'text/html' },
        redirect: 'manual',
      })
      expect(anonymous.status).toBe(303)
      expect(anonymous.headers.get('location')).toBe('/_audit/login?next=%2F_audit%2Fui%2F')
      const api = await fetch(`${audit.url}/_audit/api/runs`)
      expect(api.status).toBe(401)
      const page = await fetch(`${audit.url}/_audit/ui/runs/x`, {
        headers: { authorization: `Bearer ${tokens.alice}` },
      })
      expect(page.status).toBe(200)
      expect(page.headers.get('content-security-policy')).toBe(DASHBOARD_CSP)
      const html = await page.text()
      expect(html).toContain('<div id="app">')
      // No inline script and nothing from another origin.
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
      expect(html).not.toMatch(/(src|href)="(https?:)?\/\//)
      const escape = await fetch(`${audit.url}/_audit/ui/..%2f..%2fpackage.json`, {
        headers: { authorization: `Bearer ${tokens.alice}` },
      })
      expect(escape.status).toBe(400)
    },
    TEST_TIMEOUT,
  )

  it(
    'filters, counts, sorts and pages the runs, keeps the state in the URL and updates live',
    async () => {
      const { page, problems } = await signedIn('ada')
      await page.waitForSelector('[data-test=runs] tbody tr')
      expect((await rowIds(page)).sort()).toEqual([ids.a1, ids.a2, ids.fail, ids.bob].sort())
      // Facet counts: alice has three runs, bob one.
      const personOptions = await page.$$eval('[data-filter=person] option', (o) =>
        o.map((x) => x.textContent?.trim()),
      )
      expect(personOptions).toEqual(expect.arrayContaining(['alice (3)', 'bob (1)']))
      expect(await page.textContent('label:has([data-status=error])')).toContain('(1)')

      await page.selectOption('[data-filter=person]', 'alice')
      await page.waitForURL(/person=alice/)
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toHaveLength(3)
      expect(
        await page.$$eval('[data-test=runs] [data-test=user]', (c) => c.map((x) => x.textContent)),
      ).toEqual(['alice', 'alice', 'alice'])
      await page.check('[data-status=error]')
      await page.waitForURL(/status=error/)
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toEqual([ids.fail])
      await page.uncheck('[data-status=error]')
      await page.selectOption('[data-filter=node_type]', 'KSampler')
      await page.waitForURL(/node_type=KSampler/)
      await expect
        .poll(async () => (await rowIds(page)).sort(), { timeout: DEADLINE })
        .toEqual([ids.a1, ids.a2].sort())
      await page.fill('[data-filter=q]', 'RAIN')
      await page.press('[data-filter=q]', 'Enter')
      await page.waitForURL(/q=RAIN/)
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toEqual([ids.a2])
      await shot(page, 'runs-filtered-en')

      // The URL is the state: opening it fresh gives the same table and the same controls.
      const link = page.url()
      await page.goto(`${audit.url}/_audit/ui/`)
      await page.goto(link)
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toEqual([ids.a2])
      expect(await page.inputValue('[data-filter=person]')).toBe('alice')
      expect(await page.inputValue('[data-filter=q]')).toBe('RAIN')

      // Sort by duration ascending, then descending: the same rows reversed.
      await page.goto(`${audit.url}/_audit/ui/`)
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toHaveLength(4)
      await page.click('[data-sort=duration_ms]')
      await page.waitForURL(/sort=duration_ms/)
      const durations = async (): Promise<number[]> =>
        Promise.all(
          (await rowIds(page)).map(async (id) => (await audit.store.session(id))?.duration_ms ?? -1),
        )
      await expect
        .poll(durations, { timeout: DEADLINE })
        .toEqual((await durations()).slice().sort((a, b) => b - a))
      await page.click('[data-sort=duration_ms]')
      await page.waitForURL(/order=asc/)
      await expect
        .poll(durations, { timeout: DEADLINE })
        .toEqual((await durations()).slice().sort((a, b) => a - b))

      // A model by its AutoV2 hash, typed: the three text-to-image runs.
      const autov2 = (await audit.store.session(ids.a1))!.models[0]!.autov2!
      await page.fill('[data-filter=model]', autov2)
      await page.press('[data-filter=model]', 'Enter')
      await page.waitForURL(new RegExp(`model=${autov2}`))
      await expect
        .poll(async () => (await rowIds(page)).sort(), { timeout: DEADLINE })
        .toEqual([ids.a1, ids.a2, ids.bob].sort())
      await page.click('[data-test=clear]')
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toHaveLength(4)

      // Live: a run started elsewhere appears without a reload.
      await page.waitForSelector('[data-test=live].on')
      const before = (await rowIds(page)).length
      const fresh = await submit(tokens.bob, txt2img(14, 'live update'))
      await expect.poll(() => rowIds(page), { timeout: DEADLINE }).toContain(fresh)
      expect((await rowIds(page)).length).toBe(before + 1)
      await recorded(fresh)
      await shot(page, 'runs-en')
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it(
    'an artist sees only their own runs',
    async () => {
      const { page, problems } = await signedIn('bob')
      await page.waitForSelector('[data-test=runs] tbody tr')
      const rows = await rowIds(page)
      const own = (await audit.store.sessions({ user: 'bob' })).map((s) => s.session_id)
      expect(rows.sort()).toEqual(own.sort())
      expect(rows).not.toContain(ids.a1)
      const personOptions = await page.$$eval('[data-filter=person] option', (o) =>
        o.map((x) => x.getAttribute('value')),
      )
      expect(personOptions).toEqual(['', 'bob'])
      // Someone else's run is not there for them, by link either.
      await page.goto(`${audit.url}/_audit/ui/runs/${ids.a1}`)
      await page.waitForSelector('[role=alert]')
      expect(await page.textContent('[role=alert]')).toContain('no such session among your runs')
      problems.splice(0, problems.length, ...problems.filter((p) => !p.includes('404')))
      await shot(page, 'artist-own-runs')
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it(
    'the Run page draws one bar per executed node with the recorded durations',
    async () => {
      const { page, problems } = await signedIn('ada')
      await page.goto(`${audit.url}/_audit/ui/runs/${ids.a1}`)
      await page.waitForSelector('[data-test=gantt][data-series-lengths]')
      const runs = await audit.store.nodeRuns({ sessionId: ids.a1 })
      expect(runs.length).toBe(7)
      const lengths = (await page.getAttribute('[data-test=gantt]', 'data-series-lengths'))!
        .split(',')
        .map(Number)
      expect(lengths[0]).toBe(runs.length)
      // The GPU memory line: one point per node run that sampled memory.
      const sampled = runs.filter((r) => r.gpu_memory_used !== null).length
      expect(sampled).toBeGreaterThan(0)
      expect(lengths[1]).toBe(sampled)
      const listed = await page.$$eval('[data-test=node-list] button', (b) =>
        b.map((x) => [x.getAttribute('data-node'), x.querySelector('[data-test=duration]')?.textContent]),
      )
      expect(Object.fromEntries(listed)).toEqual(
        Object.fromEntries(
          runs.map((r) => [r.node_id, r.duration_ms === null ? '-' : `${r.duration_ms} ms`]),
        ),
      )
      // The chart's own data: one [row, start, end, duration] per node, with the recorded durations.
      const values = await page.getAttribute('[data-test=gantt]', 'data-read-back')
      expect(
        values
          ?.split(',')
          .map(Number)
          .sort((a, b) => a - b),
      ).toEqual(runs.map((r) => r.duration_ms ?? 0).sort((a, b) => a - b))
      // Hovering the bars shows their tooltips (drawn on the canvas: nothing the CSP would refuse).
      const box = (await page.locator('[data-test=gantt]').boundingBox())!
      for (let y = 20; y < box.height - 140; y += 14)
        await page.mouse.move(box.x + box.width * 0.5, box.y + y)
      // Row 4 (KSampler): the timeline grid starts 12 px down and ends 120 px above the bottom.
      await page.mouse.move(box.x + box.width * 0.5, box.y + 12 + 4.5 * ((box.height - 132) / 7))
      await page
        .locator('[data-test=gantt]')
        .screenshot({ path: join(RESULTS, 'dashboard-run-hover-en.png') })
      // Keyboard: Tab reaches the node list, Enter opens a node in the inspector.
      await page.focus('[data-node="4"]')
      await page.keyboard.press('Tab')
      await page.keyboard.press('Enter')
      await expect.poll(() => page.getAttribute('[data-node="5"]', 'aria-pressed')).toBe('true')
      expect(await page.textContent('[data-test=inspector]')).toContain('#5 EmptyLatentImage')
      // The inspector: inputs link to their source nodes, outputs show through /view.
      await page.click('[data-node="9"]')
      await page.waitForSelector('[data-test=inspector] img')
      const src = await page.getAttribute('[data-test=inspector] img', 'src')
      expect(src).toMatch(/^\/view\?filename=dash_\d+_\.png/)
      await expect
        .poll(() =>
          page.$eval(
            '[data-test=inspector] img',
            (i) => (i as unknown as { naturalWidth: number }).naturalWidth,
          ),
        )
        .toBe(64)
      await page.click('[data-test=inspector] dd button')
      await expect.poll(() => page.getAttribute('[data-node="8"]', 'aria-pressed')).toBe('true')
      expect(await page.textContent('[data-test=models]')).toContain('audit-sd15-random.safetensors')
      expect(await page.textContent('[data-test=seeds]')).toContain('11')
      await expect
        .poll(() => page.textContent('[data-test=integrity]'), { timeout: DEADLINE })
        .toMatch(/verified/)
      const evidence = await page.getAttribute('[data-test=evidence]', 'href')
      const bundle = await page.evaluate(async (href) => (await fetch(href!)).status, evidence)
      expect(bundle).toBe(200)
      await shot(page, 'run-en')

      // A failed run shows the exception and the failing node.
      await page.goto(`${audit.url}/_audit/ui/runs/${ids.fail}`)
      await page.waitForSelector('[data-test=session-error]')
      expect(await page.textContent('[data-test=session-error]')).toContain(
        'planned failure for the dashboard',
      )
      await page.click('[data-node="2"]')
      await page.waitForSelector('[data-test=node-error]')
      await shot(page, 'run-failed-en')
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it(
    'Compare lists exactly the changed inputs, with paired timing bars',
    async () => {
      const { page, problems } = await signedIn('ada')
      // Picked from the run table: tick two runs, then compare.
      await page.waitForSelector(`[data-session="${ids.a1}"]`)
      await page.check(`[data-session="${ids.a1}"] input[type=checkbox]`)
      await page.check(`[data-session="${ids.a2}"] input[type=checkbox]`)
      await page.click('[data-test=compare-selected]')
      await page.waitForURL(/\/compare\?a=.*&b=/)
      await page.waitForSelector('[data-test=inputs-changed]')
      // a1 and a2 differ in the positive prompt's text and the sampler's seed, nothing else.
      const changed = await page.$$eval('[data-test=inputs-changed] tbody tr', (r) =>
        r.map((x) => [
          x.getAttribute('data-input'),
          ...[...x.querySelectorAll('td')].slice(2).map((c) => c.textContent),
        ]),
      )
      const a = new URL(page.url()).searchParams.get('a')
      const fox = ['a red fox in the snow', 'a red fox in the rain']
      expect(changed).toEqual([['6.text', ...(a === ids.a1 ? fox : fox.reverse())]])
      const seeds = await page.$$eval('[data-test=seeds-changed] tbody tr', (r) =>
        r.map((x) => x.textContent),
      )
      expect(seeds).toHaveLength(1)
      expect(seeds[0]).toMatch(/#3\.seed.*1[12].*1[21]/)
      expect(await page.$$('[data-test=models-changed] tbody tr')).toHaveLength(0)
      await page.waitForSelector('[data-test=timing][data-series-lengths]')
      expect(await page.getAttribute('[data-test=timing]', 'data-series-lengths')).toBe('7,7')
      await shot(page, 'compare-en')
      // With "differences only" off, every input shows and exactly the same two are marked.
      await page.uncheck('[data-test=diff-only]')
      await page.waitForSelector('[data-test=inputs-all]')
      const marked = await page.$$eval('[data-test=inputs-all] tr[data-changed=true] td:nth-child(2)', (c) =>
        c.map((x) => x.textContent),
      )
      expect(marked.sort()).toEqual(['seed', 'text'])
      expect((await page.$$('[data-test=inputs-all] tbody tr')).length).toBeGreaterThan(10)
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it(
    'Trace finds a dropped output PNG, and a pasted hash',
    async () => {
      const { page, problems } = await signedIn('ada')
      const session = await audit.store.session(ids.a1)
      const out = session!.outputs.find((o) => o.type === 'output')!
      const bytes = await readFile(join(sim.dir.output, out.subfolder, out.filename))
      await page.click('[data-nav=trace]')
      await page.waitForSelector('[data-test=drop]')
      const transfer = await page.evaluateHandle(
        ({ b64, name }) => {
          // The page's own DOM classes (the test's tsconfig has no DOM library).
          const dom = globalThis as unknown as {
            DataTransfer: new () => { items: { add(file: unknown): void } }
            File: new (parts: unknown[], name: string, options: { type: string }) => unknown
          }
          const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
          const dt = new dom.DataTransfer()
          dt.items.add(new dom.File([data], name, { type: 'image/png' }))
          return dt
        },
        { b64: bytes.toString('base64'), name: out.filename },
      )
      await page.dispatchEvent('[data-test=drop]', 'drop', { dataTransfer: transfer })
      await page.waitForSelector('[data-test=result]')
      expect(await page.textContent('[data-test=session]')).toBe(ids.a1)
      expect(await page.textContent('[data-test=user]')).toBe('alice')
      expect(await page.textContent('[data-test=models]')).toContain('audit-sd15-random.safetensors')
      expect(await page.textContent('[data-test=seeds]')).toContain('#3.seed = 11')
      await shot(page, 'trace-en')
      // A hash pasted in capitals: the SHA-256 of bob's output file as it lies on disk.
      const other = (await audit.store.session(ids.bob))!.outputs.find((o) => o.type === 'output')!
      const otherBytes = await readFile(join(sim.dir.output, other.subfolder, other.filename))
      await page.fill('[data-test=hash]', createHash('sha256').update(otherBytes).digest('hex').toUpperCase())
      await page.press('[data-test=hash]', 'Enter')
      await expect.poll(() => page.textContent('[data-test=session]')).toBe(ids.bob)
      await page.fill('[data-test=hash]', 'f'.repeat(64))
      await page.press('[data-test=hash]', 'Enter')
      await page.waitForSelector('[data-test=not-found]')
      // The unknown hash's 404 is the answer the page shows, not a fault.
      expect(problems.filter((p) => !p.includes('404'))).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it(
    'Integrity verifies the log; People adds, disables and re-enables',
    async () => {
      const { page, problems } = await signedIn('ada')
      await page.click('[data-nav=integrity]')
      await page.waitForSelector('[data-test=verdict]')
      expect(await page.textContent('[data-test=verdict]')).toContain('The log verifies')
      expect(
        Number(await page.textContent('[data-origin=dash-e2e] [data-test=checkpoints]')),
      ).toBeGreaterThan(0)
      await shot(page, 'integrity-en')
      await page.click('[data-nav=people]')
      await page.waitForSelector('[data-person=bob]')
      await page.fill('[data-test=name]', 'carol')
      await page.selectOption('[data-test=role]', 'auditor')
      await page.click('[data-test=add] button[type=submit]')
      await page.waitForSelector('[data-person=carol]')
      const issued = (await page.textContent('[data-test=token]'))!
      const token = issued.slice(issued.lastIndexOf(' ') + 1)
      const whoami = await fetch(`${audit.url}/_audit/whoami`, {
        headers: { authorization: `Bearer ${token}` },
      })
      expect(await whoami.json()).toMatchObject({ user: 'carol', role: 'auditor' })
      // A role change applies to carol's very next request.
      await page.selectOption('[data-person=carol] [data-test=set-role]', 'artist')
      await expect
        .poll(async () => {
          const r = await fetch(`${audit.url}/_audit/whoami`, {
            headers: { authorization: `Bearer ${token}` },
          })
          return ((await r.json()) as { role: string }).role
        })
        .toBe('artist')
      await page.click('[data-person=bob] [data-test=disable]')
      await expect.poll(() => page.textContent('[data-person=bob] [data-test=state]')).toBe('disabled')
      const refused = await fetch(`${audit.url}/_audit/whoami`, {
        headers: { authorization: `Bearer ${tokens.bob}` },
      })
      // A disabled person's token no longer works.
      expect(refused.status).toBe(403)
      await shot(page, 'people-en')
      await page.click('[data-person=bob] [data-test=enable]')
      await expect.poll(() => page.textContent('[data-person=bob] [data-test=state]')).toBe('active')
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it.each(['en', 'zh-CN'] as const)(
    'every page loads without a console error (%s)',
    async (lang) => {
      const { page, problems } = await signedIn('ada')
      await page.selectOption('[data-test=language]', lang)
      const han = /\p{Script=Han}/u
      const pages: [string, string, string][] = [
        ['runs', '', '[data-test=runs] tbody tr'],
        ['run', `runs/${ids.a1}`, '[data-test=gantt][data-series-lengths]'],
        ['compare', `compare?a=${ids.a1}&b=${ids.bob}`, '[data-test=timing][data-series-lengths]'],
        ['performance', 'performance', '[data-test=percentiles][data-series-lengths]'],
        ['usage', 'usage', '[data-test=usage-table-user] tbody tr'],
        ['trace', 'trace', '[data-test=drop]'],
        ['integrity', 'integrity', '[data-test=verdict]'],
        ['people', 'people', '[data-person=alice]'],
      ]
      for (const [name, path, ready] of pages) {
        await page.goto(`${audit.url}/_audit/ui/${path}`)
        await page.waitForSelector(ready)
        const h1 = (await page.textContent('h1')) ?? ''
        const nav = (await page.textContent('nav')) ?? ''
        if (lang === 'zh-CN') {
          expect(h1, name).toMatch(han)
          expect(nav).toContain('运行记录')
        } else expect(h1, name).not.toMatch(han)
        await shot(page, `page-${name}-${lang}`)
      }
      // Usage counts each person's runs: alice made three, one of them failed.
      await page.goto(`${audit.url}/_audit/ui/usage`)
      await page.waitForSelector('[data-test=usage-table-user] [data-key=alice]')
      expect(await page.textContent('[data-test=usage-table-user] [data-key=alice] [data-test=runs]')).toBe(
        '3',
      )
      expect(await page.textContent('[data-test=usage-table-user] [data-key=alice] [data-test=errors]')).toBe(
        '1',
      )
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )

  it(
    'switches to Simplified Chinese and keeps the choice',
    async () => {
      const { page, problems } = await signedIn('ada')
      await page.selectOption('[data-test=language]', 'zh-CN')
      await expect.poll(() => page.textContent('[data-nav=runs]')).toBe('运行记录')
      await page.reload()
      await page.waitForSelector('[data-test=runs] tbody tr')
      expect(await page.textContent('[data-nav=runs]')).toBe('运行记录')
      expect(await page.getAttribute('html', 'lang')).toBe('zh-CN')
      expect(await page.textContent('h1')).toBe('运行记录')
      await shot(page, 'runs-zh-CN')
      await page.goto(`${audit.url}/_audit/ui/runs/${ids.a1}`)
      await page.waitForSelector('[data-test=gantt][data-series-lengths]')
      expect(await page.textContent('h1')).toContain('运行详情')
      expect(await page.textContent('[data-test=header]')).toContain('提交人')
      await shot(page, 'run-zh-CN')
      expect(problems).toEqual([])
    },
    TEST_TIMEOUT,
  )
})

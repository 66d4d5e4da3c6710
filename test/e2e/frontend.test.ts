/**
 * Issue 15 item 7: ComfyUI 0.8's own front end (1.35.9, built in ../shared/comfyui-frontend/dist, never copied
 * here) in headless Chromium, served by the stand-in with --web-root, through the real gateway. A returning
 * user loads the default graph, runs it, sees progress and the output on Save Image, cancels a long run from
 * the queue controls and opens the Logs, Model Library, Workflows and Assets panels; nothing fails on the way.
 * Then the gateway's records are checked: both runs, with the browser's UI workflow, and every static file
 * byte-identical to the build.
 */
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BrowserContext, Page } from 'playwright-core'
import { loadConfig } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createSimServer, type SimServer } from '../../src/sim/index.js'
import { chromiumMissing, launchChromium } from '../helpers/chromium.js'

const REPO = resolve(new URL('../..', import.meta.url).pathname)
const DIST = resolve(REPO, '../shared/comfyui-frontend/dist')
const RESULTS = join(REPO, 'test-results')
const missing = !existsSync(join(DIST, 'index.html'))
  ? `the built front end is not at ${DIST} (see ../shared/comfyui-frontend/README.md)`
  : chromiumMissing
if (missing) console.warn(`front-end test skipped: ${missing}`)

/**
 * 404s that ComfyUI 0.8 itself gives a returning user who has no custom styles, saved workflows, subgraphs
 * or template bookmarks: index.html links user.css from the web root and from the user's userdata, and the
 * front end lists userdata folders that do not exist yet (`/userdata?dir=` answers 404 then). The browser
 * asks for /favicon.ico by itself; the build has its icon elsewhere.
 */
const EXPECTED_404 = [
  '/favicon.ico',
  '/user.css',
  '/api/userdata/user.css',
  '/api/userdata/workflows%2F.index.json',
  '/api/userdata/comfy.templates.json',
  '/api/userdata?dir=workflows&recurse=true&split=false&full_info=true',
  '/api/userdata?dir=subgraphs&recurse=true&split=false&full_info=true',
]

// Generous: a loaded 2-core machine builds and paints a large Vue app slowly.
const DEADLINE = 90_000

let sim: SimServer
let audit: AuditGateway
let context: BrowserContext
let page: Page
const work: string[] = []
const failed: string[] = []
const consoleErrors: string[] = []
const statuses: Array<{ path: string; status: number }> = []
const staticBodies = new Map<string, Promise<Buffer>>()
const prompts: Array<Record<string, unknown>> = []
const wsTypes: string[] = []

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(RESULTS, `frontend-${name}.png`) })
}

/** The graph as the page holds it (the front end puts its app on window, for extensions). */
async function evaluateApp<T>(fn: string): Promise<T> {
  return page.evaluate(fn) as Promise<T>
}

describe.skipIf(missing !== undefined)('issue 15 item 7: the real front end through the gateway', () => {
  beforeAll(async () => {
    await mkdir(RESULTS, { recursive: true })
    const simData = await mkdtemp(join(tmpdir(), 'fe-sim-'))
    const gwData = await mkdtemp(join(tmpdir(), 'fe-gw-'))
    const profile = await mkdtemp(join(tmpdir(), 'fe-chromium-'))
    work.push(simData, gwData, profile)
    sim = await createSimServer({ dataDir: simData, speed: 4, webRoot: DIST })
    // The default graph names SD 1.5's checkpoint; give the stand-in one under that name.
    await copyFile(
      join(sim.dir.models, 'checkpoints', 'audit-sd15-random.safetensors'),
      join(sim.dir.models, 'checkpoints', 'v1-5-pruned-emaonly-fp16.safetensors'),
    )
    // A returning user: the tutorial was seen, so the front end opens the default graph, not the templates.
    await writeFile(
      join(sim.dir.user, 'default', 'comfy.settings.json'),
      JSON.stringify({ 'Comfy.TutorialCompleted': true }),
    )
    const config = loadConfig({
      env: {},
      flags: { 'comfyui.url': sim.url, listen: '127.0.0.1:0', data: gwData, origin: 'frontend-e2e' },
    })
    if (!config.ok) throw new Error(config.problems.join('; '))
    audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })

    context = await launchChromium(profile, { viewport: { width: 1600, height: 1000 } })
    page = context.pages()[0] ?? (await context.newPage())
    page.setDefaultTimeout(DEADLINE)
    const gw = new URL(audit.url)
    page.on('console', (m) => {
      if (m.type() !== 'error') return
      const at = m.location().url
      // Chromium reports each 404 as a console error; those ComfyUI gives too are checked below.
      if (m.text().includes('404') && EXPECTED_404.some((p) => at === gw.origin + p)) return
      consoleErrors.push(`${m.text()} (${at})`)
    })
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`))
    page.on('requestfailed', (r) => {
      // A cancelled image or an aborted long poll on navigation is not a failure of the server.
      if (r.failure()?.errorText === 'net::ERR_ABORTED') return
      failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`)
    })
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/prompt') {
        prompts.push(JSON.parse(r.postData() ?? '{}') as Record<string, unknown>)
      }
    })
    page.on('response', (r) => {
      const u = new URL(r.url())
      if (u.protocol !== 'http:' || u.origin !== gw.origin) return
      statuses.push({ path: u.pathname + u.search, status: r.status() })
      const p = u.pathname
      // Every path the build holds is a static file (the API lives under /api, /internal and /templates).
      const inBuild = p === '/' || existsSync(join(DIST, decodeURIComponent(p)))
      if (r.status() === 200 && inBuild && !p.startsWith('/api/') && !p.startsWith('/internal/')) {
        staticBodies.set(p, r.body())
      }
    })
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => {
        if (typeof f.payload !== 'string') return
        try {
          wsTypes.push(String((JSON.parse(f.payload) as { type: unknown }).type))
        } catch {
          wsTypes.push('?')
        }
      })
    })
  }, 180_000)

  afterAll(async () => {
    await context?.close()
    await audit?.close()
    await sim?.close()
    for (const d of work) await rm(d, { recursive: true, force: true })
  })

  it('loads the default graph, runs it, cancels a long run and opens the panels', async () => {
    await page.goto(audit.url + '/', { timeout: DEADLINE })
    await page.waitForFunction(
      `(() => { const a = window.app; return !!a && !!a.graph && a.graph.nodes.some((n) => n.type === 'SaveImage') })()`,
      undefined,
      { timeout: DEADLINE },
    )
    const types = await evaluateApp<string[]>(`window.app.graph.nodes.map((n) => n.type).sort()`)
    expect(types).toEqual([
      'CLIPTextEncode',
      'CLIPTextEncode',
      'CheckpointLoaderSimple',
      'EmptyLatentImage',
      'KSampler',
      'SaveImage',
      'VAEDecode',
    ])
    await shot('1-default-graph')

    // Run: the progress events arrive and Save Image shows the output.
    await page.getByTestId('queue-button').click()
    await page.waitForFunction(
      `(() => { const n = window.app.graph.nodes.find((x) => x.type === 'SaveImage'); return !!n && (n.imgs?.length ?? 0) > 0 })()`,
      undefined,
      { timeout: DEADLINE },
    )
    expect(wsTypes).toContain('progress')
    expect(wsTypes).toContain('executed')
    const view = statuses.find(
      (s) => s.path.startsWith('/api/view?') && s.path.includes('ComfyUI_00001_.png'),
    )
    expect(view?.status).toBe(200)
    await shot('2-output-on-save-image')

    // A long run: many steps, then the queue controls' cancel button interrupts it.
    await evaluateApp(
      `(() => { const k = window.app.graph.nodes.find((n) => n.type === 'KSampler'); k.widgets.find((w) => w.name === 'steps').value = 5000; k.widgets.find((w) => w.name === 'seed').value = 7; })()`,
    )
    const progressBefore = wsTypes.filter((t) => t === 'progress').length
    await page.getByTestId('queue-button').click()
    await expect
      .poll(() => wsTypes.filter((t) => t === 'progress').length, { timeout: DEADLINE })
      .toBeGreaterThan(progressBefore + 2)
    await shot('3-long-run-progress')
    await page.getByRole('button', { name: 'Cancel current run' }).first().click()
    await expect.poll(() => wsTypes.includes('execution_interrupted'), { timeout: DEADLINE }).toBe(true)
    await shot('4-cancelled')

    // The panels: Logs (bottom panel), Model Library, Workflows, Assets.
    await evaluateApp(
      `window.app.extensionManager.command.execute('Workspace.ToggleBottomPanelTab.logs-terminal')`,
    )
    await expect
      .poll(() => statuses.some((s) => s.path === '/internal/logs/subscribe' && s.status === 200), {
        timeout: DEADLINE,
      })
      .toBe(true)
    await page.locator('.xterm').first().waitFor({ timeout: DEADLINE })
    await shot('5-logs')
    await page.locator('.model-library-tab-button').click()
    await expect
      .poll(() => statuses.some((s) => s.path.startsWith('/api/experiment/models')), { timeout: DEADLINE })
      .toBe(true)
    await shot('6-model-library')
    await page.locator('.workflows-tab-button').click()
    await expect
      .poll(() => statuses.some((s) => s.path.startsWith('/api/userdata?dir=workflows')), {
        timeout: DEADLINE,
      })
      .toBe(true)
    await shot('7-workflows')
    await page.locator('.assets-tab-button').click()
    await expect
      .poll(
        () =>
          statuses.filter((s) => s.path.startsWith('/api/jobs') || s.path.startsWith('/api/history')).length,
        {
          timeout: DEADLINE,
        },
      )
      .toBeGreaterThan(0)
    await shot('8-assets')

    const unexpected = statuses.filter(
      (s) => s.status >= 400 && !(s.status === 404 && EXPECTED_404.includes(s.path)),
    )
    expect(unexpected).toEqual([])
    expect(failed).toEqual([])
    expect(consoleErrors).toEqual([])
  }, 600_000)

  it('the gateway recorded both runs with the browser UI workflow, and static files came through unchanged', async () => {
    expect(prompts).toHaveLength(2)
    await expect
      .poll(async () => (await audit.store.sessions({ limit: 10 })).map((s) => s.status).sort(), {
        timeout: DEADLINE,
      })
      .toEqual(['interrupted', 'success'])
    const sessions = await audit.store.sessions({ limit: 10 })
    for (const body of prompts) {
      const extra = body.extra_data as { extra_pnginfo: { workflow: unknown } }
      const s = sessions.find(
        (x) => JSON.stringify(x.workflow) === JSON.stringify(extra.extra_pnginfo.workflow),
      )
      expect(s, 'a session holds the exact workflow the browser sent').toBeDefined()
    }
    expect(staticBodies.size).toBeGreaterThan(20)
    for (const [path, body] of staticBodies) {
      const file = path === '/' ? join(DIST, 'index.html') : join(DIST, decodeURIComponent(path))
      expect((await body).equals(await readFile(file)), path).toBe(true)
    }
  }, 120_000)
})

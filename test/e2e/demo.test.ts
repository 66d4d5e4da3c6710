/**
 * `comfy-audit demo` (issue 13): one command starts the stand-in and the gateway, drives a few days of a
 * studio's history through the gateway with each person's own token, and prints what to open. The history it
 * writes must hold what it promises: several people, the LoRA update that breaks one workflow for a while,
 * interrupts, a refused prompt, and a KSampler slowdown on the last day that `regressions` finds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { SessionRecord } from '../../src/audit/types.js'
import { DEMO_PEOPLE } from '../../src/demo/demo-workflows.js'
import { runDemo, type Demo } from '../../src/demo/run-demo.js'
import { workflowId } from '../../src/query/analysis/analysis.js'
import { defaultDashboardRoot } from '../../src/query/dashboard-route.js'
import { cli } from '../helpers/cli.js'

const PROMPTS = 60
let demo: Demo
let sessions: SessionRecord[]

async function api(person: string, path: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${demo.audit.url}${path}`, {
    headers: { authorization: `Bearer ${demo.tokens.get(person)!}` },
  })
  return { status: res.status, json: await res.json() }
}

beforeAll(async () => {
  demo = await runDemo({
    data: mkdtempSync(join(tmpdir(), 'demo-test-')),
    prompts: PROMPTS,
    days: 3,
    speed: 50,
    seed: 7,
  })
  sessions = await demo.audit.store.sessions({ limit: 10_000 })
}, 300_000)

afterAll(async () => {
  await demo?.close()
})

describe('comfy-audit demo', () => {
  it('records every prompt it drove, by several people, none by the auditor', () => {
    const s = demo.summary
    expect(s.submitted + s.refused).toBe(PROMPTS)
    expect(s.refused).toBeGreaterThan(0) // the checkpoint typo ComfyUI refuses
    expect(sessions.filter((x) => x.http_status === 200)).toHaveLength(s.submitted)
    const users = new Set(sessions.map((x) => x.submitter?.user))
    expect(users.size).toBeGreaterThanOrEqual(3)
    expect(users.has('quinn')).toBe(false)
    for (const x of sessions) expect(['success', 'error', 'interrupted', 'rejected']).toContain(x.status)
    // The timeline spans the days asked for and ends before the wall's now.
    const queued = sessions.map((x) => Date.parse(x.queued_at!)).sort((a, b) => a - b)
    expect(queued.at(-1)! - queued[0]!).toBeGreaterThan(2 * 86_400_000)
    expect(queued.at(-1)!).toBeLessThanOrEqual(Date.now())
  })

  it('breaks wf-portrait exactly while it used the updated LoRA', () => {
    const broken = [Date.parse(demo.summary.loraBrokenAt), Date.parse(demo.summary.loraFixedAt)] as const
    const portraits = sessions.filter((x) => workflowId(x) === 'wf-portrait' && x.status !== 'interrupted')
    const during = portraits.filter((x) => {
      const t = Date.parse(x.queued_at!)
      return t >= broken[0] && t < broken[1]
    })
    expect(during.length).toBeGreaterThan(0)
    for (const x of during) expect(x.status).toBe('error')
    for (const x of portraits.filter((p) => !during.includes(p))) expect(x.status).toBe('success')
    expect(sessions.filter((x) => x.status === 'error' && workflowId(x) !== 'wf-portrait')).toEqual([])
  })

  it('interrupts some runs through the gateway as their owners', () => {
    const interrupted = sessions.filter((x) => x.status === 'interrupted')
    expect(interrupted).toHaveLength(demo.summary.interrupted)
    expect(interrupted.length).toBeGreaterThan(0)
  })

  it('plants a KSampler slowdown on the last day that the regressions API reports', async () => {
    const r = await api('mei', '/_audit/api/regressions?baseline=2d&recent=1d&min_samples=8')
    expect(r.status).toBe(200)
    const found = (r.json as { regressions: { node_type: string; workflow: string | null; ratio: number }[] })
      .regressions
    // Over every workflow or within one (the mix of model switches differs between windows).
    const ks = found.filter((g) => g.node_type === 'KSampler')
    expect(ks.length, JSON.stringify(found)).toBeGreaterThan(0)
    for (const g of ks) expect(g.ratio).toBeGreaterThan(1.15)
    // Only the planted type slowed down: every other type's durations are the recording's.
    expect(found.filter((g) => g.node_type !== 'KSampler')).toEqual([])
  })

  it('gives each person a token that works with their role', async () => {
    const all = await api('mei', '/_audit/api/sessions?limit=1000')
    expect(all.status).toBe(200)
    const own = await api('alice', '/_audit/api/sessions?limit=1000')
    expect(own.status).toBe(200)
    const users = (j: unknown): (string | null)[] =>
      (j as { sessions: { user: string | null }[] }).sessions.map((x) => x.user)
    expect(users(own.json).length).toBeGreaterThan(0)
    expect(new Set(users(own.json))).toEqual(new Set(['alice']))
    expect(new Set(users(all.json)).size).toBeGreaterThan(1)
    expect([...demo.tokens.keys()].sort()).toEqual(DEMO_PEOPLE.map((p) => p.name).sort())
  })
})

describe('comfy-audit demo: what it prints to open', () => {
  it('serves the dashboard it names behind the login', async () => {
    // A browser (it asks for HTML) is sent to the login page; an API client would get a 401.
    const anonymous = await fetch(`${demo.audit.url}/_audit/ui/`, {
      redirect: 'manual',
      headers: { accept: 'text/html' },
    })
    expect(anonymous.status).toBeGreaterThanOrEqual(300)
    expect(anonymous.status).toBeLessThan(400)
    expect(anonymous.headers.get('location')).toMatch(/^\/_audit\/login/)
    const page = await fetch(`${demo.audit.url}/_audit/ui/`, {
      headers: { authorization: `Bearer ${demo.tokens.get('mei')!}` },
    })
    const text = await page.text()
    if (existsSync(join(defaultDashboardRoot(), 'index.html'))) {
      expect(page.status).toBe(200)
      expect(text).toContain('<div id="app"')
    } else {
      // A checkout whose `npm run build:web` has not run says so, naming the command.
      expect(page.status).toBe(404)
      expect(text).toContain('npm run build:web')
    }
  })

  it('serves ComfyUI through the gateway to each person', async () => {
    const res = await fetch(`${demo.audit.url}/system_stats`, {
      headers: { authorization: `Bearer ${demo.tokens.get('bob')!}` },
    })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { system: { comfyui_version: string } }).system.comfyui_version).toBe(
      '0.8.0',
    )
  })
})

describe('comfy-audit demo --once (the CLI)', () => {
  it('prints the URLs to open and one token per person, then verify says OK', async () => {
    const data = mkdtempSync(join(tmpdir(), 'demo-cli-'))
    const r = await cli('demo', '--once', '--prompts', '6', '--days', '1', '--speed', '50', '--data', data)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/ComfyUI through the gateway: http:\/\/127\.0\.0\.1:\d+\//)
    expect(r.stdout).toMatch(/dashboard: +http:\/\/127\.0\.0\.1:\d+\/_audit\/ui\//)
    expect(r.stdout).toMatch(/history: 6 prompts recorded|history: \d prompts recorded, \d refused/)
    for (const p of DEMO_PEOPLE) expect(r.stdout).toMatch(new RegExp(`^  ${p.name} +\\S+\\.\\S+$`, 'm'))
    const verify = await cli('verify', '--data', join(data, 'audit'))
    expect(verify.stdout).toMatch(/^OK$/m)
    expect(verify.code).toBe(0)
  }, 180_000)
})

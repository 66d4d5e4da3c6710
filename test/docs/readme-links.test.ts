/**
 * Issue 10 item 15: the README speaks to someone who has only this repository. Every relative link must name a
 * file inside it, and no command or path may reach outside it (`../shared/…` was the bug).
 */
import { existsSync, readFileSync } from 'node:fs'
import { relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(new URL('../..', import.meta.url).pathname)
const README = readFileSync(resolve(ROOT, 'README.md'), 'utf8')

/** Relative targets of Markdown links `[text](target)` and `<img src=…>`, without their `#fragment`. */
function relativeLinks(markdown: string): string[] {
  const out: string[] = []
  for (const m of markdown.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)|src="([^"]+)"/g)) {
    const target = (m[1] ?? m[2])!
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue
    out.push(target.split('#')[0]!)
  }
  return out
}

/** Code spans and fenced code blocks: the commands and paths a reader would type. */
function codeTexts(markdown: string): string[] {
  const fenced = [...markdown.matchAll(/```[^\n]*\n([\s\S]*?)```/g)].map((m) => m[1]!)
  const withoutFences = markdown.replace(/```[^\n]*\n[\s\S]*?```/g, '')
  const spans = [...withoutFences.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!)
  return [...fenced, ...spans]
}

describe('issue 10 item 15: README stays inside the repository', () => {
  it('finds links and code in the README (the scan itself works)', () => {
    expect(relativeLinks(README).length).toBeGreaterThan(0)
    expect(codeTexts(README).length).toBeGreaterThan(10)
    // The scanners catch what they are meant to catch.
    expect(relativeLinks('see [x](../shared/a.md) and [y](https://e.org)')).toEqual(['../shared/a.md'])
    expect(codeTexts('run `python3 ../shared/t.py`')).toEqual(['python3 ../shared/t.py'])
  })

  it('every relative link names an existing file inside the repository', () => {
    for (const target of relativeLinks(README)) {
      const abs = resolve(ROOT, target)
      expect(relative(ROOT, abs).startsWith('..'), `${target} points outside the repository`).toBe(false)
      expect(existsSync(abs), `${target} does not exist`).toBe(true)
    }
  })

  it('no command or path in the README climbs out of the repository', () => {
    const offenders = codeTexts(README).filter((t) => /(^|[\s'"=(])\.\.\//.test(t) || /\/work\//.test(t))
    expect(offenders).toEqual([])
    expect(README).not.toMatch(/\.\.\/shared\b/)
  })

  it('`npx comfy-audit` is not used before an install step: deploy steps install the command first', () => {
    // `npx comfy-audit` outside a checkout would fetch an unrelated package of that name from the registry.
    expect(README).not.toMatch(/npx (?!--no-install )comfy-audit/)
    const deploy = README.slice(README.indexOf('**Deploy it like this:**'))
    const install = deploy.search(/npm (i|install) -g/)
    const firstUse = deploy.search(/`comfy-audit (users|serve)/)
    expect(install).toBeGreaterThan(0)
    expect(firstUse).toBeGreaterThan(install)
  })
})

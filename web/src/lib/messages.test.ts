import { describe, expect, it } from 'vitest'
import { initialLocale, MESSAGES } from './messages.js'

function keys(o: object, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null ? keys(v as object, `${prefix}${k}.`) : [`${prefix}${k}`],
  )
}

function leaves(o: object): string[] {
  return Object.values(o).flatMap((v) =>
    typeof v === 'object' && v !== null ? leaves(v as object) : [String(v)],
  )
}

describe('dashboard messages', () => {
  it('has the same keys in English and Simplified Chinese', () => {
    expect(keys(MESSAGES['zh-CN']).sort()).toEqual(keys(MESSAGES.en).sort())
  })

  it('keeps the placeholders of each message in both languages', () => {
    const en = keys(MESSAGES.en)
    const get = (o: object, k: string): string =>
      k.split('.').reduce<unknown>((x, p) => (x as Record<string, unknown>)[p], o) as string
    for (const k of en) {
      const names = (s: string): string[] => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!).sort()
      expect(names(get(MESSAGES['zh-CN'], k)), k).toEqual(names(get(MESSAGES.en, k)))
    }
  })

  it('translates the labels: most Chinese messages hold Chinese characters', () => {
    const zh = leaves(MESSAGES['zh-CN'])
    const han = zh.filter((s) => /\p{Script=Han}/u.test(s))
    expect(han.length / zh.length).toBeGreaterThan(0.9)
  })

  it.each([
    [null, ['zh-CN', 'en'], 'zh-CN'],
    [null, ['en-GB'], 'en'],
    [null, ['fr-FR'], 'en'],
    ['en', ['zh-CN'], 'en'],
    ['zh-CN', ['en-US'], 'zh-CN'],
    ['klingon', ['zh-Hans'], 'zh-CN'],
  ] as const)('starts in the kept choice %s, else the browser languages %j', (stored, browser, expected) => {
    expect(initialLocale(stored, browser)).toBe(expected)
  })
})

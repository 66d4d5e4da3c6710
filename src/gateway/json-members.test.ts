import { describe, expect, it } from 'vitest'
import { applyEdits, arrayElements, objectMembers, removeMembers } from './json-members.js'

function without(text: string, keys: string[]): string {
  return applyEdits(
    text,
    removeMembers(objectMembers(text, 0), (m) => keys.includes(m.key)),
  )
}

describe('removeMembers', () => {
  const obj = '{"a": 1, "b": [2, {"x": "}"}], "c": 3.0, "d": NaN}'

  it('removes members anywhere, keeping the separators of what is left', () => {
    expect(without(obj, ['a'])).toBe('{"b": [2, {"x": "}"}], "c": 3.0, "d": NaN}')
    expect(without(obj, ['b'])).toBe('{"a": 1, "c": 3.0, "d": NaN}')
    expect(without(obj, ['d'])).toBe('{"a": 1, "b": [2, {"x": "}"}], "c": 3.0}')
    expect(without(obj, ['b', 'c'])).toBe('{"a": 1, "d": NaN}')
    expect(without(obj, ['a', 'c'])).toBe('{"b": [2, {"x": "}"}], "d": NaN}')
    expect(without(obj, ['c', 'd'])).toBe('{"a": 1, "b": [2, {"x": "}"}]}')
    expect(without(obj, ['a', 'b', 'c', 'd'])).toBe('{}')
    expect(without(obj, [])).toBe(obj)
    expect(without('{ "k" : 1 }', ['k'])).toBe('{  }')
    expect(without('{}', ['k'])).toBe('{}')
  })
})

describe('arrayElements', () => {
  it('finds each element, nested brackets and strings included', () => {
    const text = '[1, "a]", [2, 3], {"k": []}, -Infinity]'
    expect(arrayElements(text, 0).map((e) => text.slice(e.start, e.end))).toEqual([
      '1',
      '"a]"',
      '[2, 3]',
      '{"k": []}',
      '-Infinity',
    ])
    expect(arrayElements('[ ]', 0)).toEqual([])
  })
})

describe('objectMembers', () => {
  it('gives where each key starts and ends', () => {
    const text = '{"a\\"b": 1}'
    const [m] = objectMembers(text, 0)
    expect(m!.key).toBe('a"b')
    expect(text.slice(m!.keyStart, m!.keyEnd)).toBe('"a\\"b"')
  })
})

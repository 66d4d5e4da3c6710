import { describe, expect, it } from 'vitest'
import { PyError, dumps, eq, float, py, repr, sorted, str, toJson } from './python-values.js'

describe('repr', () => {
  // Expected values are what CPython 3.12 prints.
  it.each([
    [null, 'None'],
    [true, 'True'],
    [7, '7'],
    [0.1, '0.1'],
    [1.2000000000000002, '1.2000000000000002'],
    [0.00001, '1e-05'],
    [0.0001, '0.0001'],
    [1.5e20, '1.5e+20'],
    ["it's", '"it\'s"'],
    ['a"b\'c', "'a\"b\\'c'"],
    ['tab\there\n', "'tab\\there\\n'"],
    ['é', "'é'"],
  ])('writes %j as Python does', (value, expected) => {
    expect(repr(value)).toBe(expected)
  })

  it('writes tuples, lists and dicts as Python does', () => {
    expect(repr(['a'])).toBe("('a',)")
    expect(repr([])).toBe('()')
    expect(repr(['executing', '4', ['node', 'prompt_id']])).toBe("('executing', '4', ('node', 'prompt_id'))")
    expect(repr(py(['a', 1]))).toBe("['a', 1]")
    expect(repr(py({ a: [1], b: null }))).toBe("{'a': [1], 'b': None}")
    expect(str('plain')).toBe('plain')
  })
})

describe('eq and sorted', () => {
  it('compares as Python ==: 1 == True, a tuple never equals a list', () => {
    expect(eq(1, true)).toBe(true)
    expect(eq('1', 1)).toBe(false)
    expect(eq(['a'], py(['a']))).toBe(false)
    expect(eq(py({ a: 1, b: 2 }), py({ b: 2, a: 1 }))).toBe(true)
  })

  it('sorts strings by code point, not by UTF-16 unit', () => {
    expect(sorted(['\u{1F600}', '\uFFFD', 'b', 'a'])).toEqual(['a', 'b', '\uFFFD', '\u{1F600}'])
  })

  it('refuses to order None, as Python does', () => {
    expect(() => sorted([null, 'a'])).toThrow(PyError)
  })
})

describe('dumps', () => {
  it('writes what json.dumps writes: spaced separators, floats with .0, ASCII only', () => {
    const value = { a: float(1), b: [1, 'é\n', float(0.1), float(1e16)], c: null, d: { e: true } }
    expect(dumps(value)).toBe('{"a": 1.0, "b": [1, "\\u00e9\\n", 0.1, 1e+16], "c": null, "d": {"e": true}}')
    expect(toJson(value)).toEqual({ a: 1, b: [1, 'é\n', 0.1, 1e16], c: null, d: { e: true } })
  })
})

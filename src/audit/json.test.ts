import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalJson, copyJson, keepSpellings, parseJson, sha256Hex, stringifyJson } from './json.js'
import type { JsonValue } from './types.js'

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../../fixtures/comfyui-0.8.0/${name}`, import.meta.url))

function parsed(text: string | Buffer): JsonValue {
  const r = parseJson(text)
  if (!r.ok) throw new Error(`parse failed: ${r.reason} at ${r.position}`)
  return r.value
}

/** JSON.parse's view of a value: bigints become the (rounded) double JSON.parse would produce. */
function asJsonParseWould(v: JsonValue): unknown {
  if (typeof v === 'bigint') return Number(v)
  if (Array.isArray(v)) return v.map(asJsonParseWould)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v)) {
      Object.defineProperty(out, k, {
        value: asJsonParseWould(v[k] as JsonValue),
        enumerable: true,
        writable: true,
      })
    }
    return out
  }
  return v
}

/** Any UTF-16 unit, lone surrogates and control characters included. */
const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c))

describe('parseJson', () => {
  it.each([
    ['18446744073709551615', 18446744073709551615n],
    ['-9223372036854775808', -9223372036854775808n],
    ['9007199254740992', 9007199254740992n],
    ['9007199254740991', 9007199254740991],
    ['-9007199254740991', -9007199254740991],
    ['12345678901234', 12345678901234],
    ['1.5e300', 1.5e300],
    ['18446744073709551615.0', Number('18446744073709551615')],
    ['1E+2', 100],
    ['2e-3', 0.002],
    ['0', 0],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['1e400', Number.POSITIVE_INFINITY],
  ])('reads %s losslessly', (text, expected) => {
    expect(parsed(text)).toStrictEqual(expected)
  })

  it('keeps the sign of -0 like JSON.parse', () => {
    expect(Object.is(parsed('-0'), -0)).toBe(true)
    expect(Object.is(parsed('-0.0'), -0)).toBe(true)
  })

  it('keeps seeds beyond 2^53 exact inside a prompt', () => {
    const text = '{"3": {"inputs": {"seed": 18446744073709551615, "cfg": 7.5, "denoise": NaN}}}'
    expect(parsed(text)).toStrictEqual({
      '3': { inputs: { seed: 18446744073709551615n, cfg: 7.5, denoise: Number.NaN } },
    })
  })

  it('joins surrogate escapes and keeps lone surrogates', () => {
    expect(parsed('"\\ud83d\\ude00"')).toBe('😀')
    expect(parsed('"a\\udc00b"')).toBe('a\udc00b')
    expect(parsed('"\\u00E9\\n\\t\\"\\\\\\/\\b\\f\\r"')).toBe('é\n\t"\\/\b\f\r')
  })

  it('lets the last duplicate key win', () => {
    expect(parsed('{"a": 1, "b": 2, "a": 3}')).toStrictEqual({ a: 3, b: 2 })
  })

  it('stores __proto__ as an own key without touching prototypes', () => {
    const v = parsed('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}')
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype)
    expect(Object.keys(v as object)).toEqual(['__proto__', 'constructor'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect((v as Record<string, unknown>).polluted).toBeUndefined()
    expect(stringifyJson(v)).toBe(
      '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
    )
  })

  it.each([
    ['', 'Unexpected end of input: expecting value', 0],
    ['[1,]', 'Expecting value', 3],
    ['{} x', 'Extra data after the JSON value', 3],
    ['{"a" 1}', "Expecting ':' delimiter", 5],
    ['{"a": 1,}', 'Expecting property name enclosed in double quotes', 8],
    ["{'a': 1}", 'Expecting property name enclosed in double quotes', 1],
    ['[1 2]', "Expecting ',' delimiter or ']'", 3],
    ['"abc', 'Unterminated string', 4],
    ['"a\u0001"', 'Invalid control character in string', 2],
    ['"\\x41"', 'Invalid escape', 1],
    ['"\\u12g4"', 'Invalid \\uXXXX escape', 1],
    ['01', 'Extra data after the JSON value', 1],
    ['-', 'Expecting digits after "-"', 1],
    ['1.', 'Expecting digits after "."', 2],
    ['1e', 'Expecting exponent digits', 2],
    ['+1', 'Expecting value', 0],
    ['nan', 'Expecting value', 0],
    ['tru', 'Expecting value', 0],
    ['-Inf', 'Expecting value', 0],
    ['\u00a01', 'Expecting value', 0],
    ['[1]]', 'Extra data after the JSON value', 3],
  ])('rejects %j with a reason and position', (text, reason, position) => {
    expect(parseJson(text)).toEqual({ ok: false, reason, position })
  })

  it('refuses nesting deeper than maxDepth without overflowing the stack', () => {
    const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n)
    expect(parseJson(nest(512)).ok).toBe(true)
    expect(parseJson(nest(513))).toMatchObject({ ok: false, position: 512 })
    expect(parseJson('{"a":'.repeat(4) + '1' + '}'.repeat(4), { maxDepth: 3 }).ok).toBe(false)
    expect(parseJson(nest(1_000_000)).ok).toBe(false)
  })

  it('decodes a Buffer as UTF-8, skipping a BOM and refusing invalid bytes', () => {
    expect(parsed(Buffer.from('\ufeff{"é": 1}', 'utf8'))).toStrictEqual({ é: 1 })
    expect(parseJson(Buffer.from([0x22, 0xff, 0x22]))).toEqual({ ok: false, reason: 'Invalid UTF-8' })
  })

  it('agrees with JSON.parse on every valid RFC 8259 document', () => {
    fc.assert(
      fc.property(fc.json({ stringUnit: anyUnit, maxDepth: 6 }), (text) => {
        expect(asJsonParseWould(parsed(text))).toStrictEqual(JSON.parse(text))
      }),
      { numRuns: 400 },
    )
  })

  it('agrees with JSON.parse on whitespace-padded documents', () => {
    const ws = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r'), maxLength: 3 })
    fc.assert(
      fc.property(ws, fc.json({ maxDepth: 3 }), ws, (a, text, b) => {
        // Re-indent so whitespace appears between every token too.
        const pretty = a + JSON.stringify(JSON.parse(text), null, 1) + b
        expect(asJsonParseWould(parsed(pretty))).toStrictEqual(JSON.parse(pretty))
      }),
      { numRuns: 200 },
    )
  })

  it('fails exactly when JSON.parse fails on mutated documents', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 3 }), fc.nat(), anyUnit, (text, at, unit) => {
        const i = at % (text.length + 1)
        const mutated = text.slice(0, i) + unit + text.slice(i + 1)
        let expected: unknown
        try {
          expected = JSON.parse(mutated)
        } catch {
          expected = undefined
        }
        const r = parseJson(mutated)
        // Our tolerances beyond RFC 8259 are exactly NaN/Infinity, which a single unit cannot create here
        // except 'I'/'N' starting a literal fragment that then fails anyway.
        if (expected === undefined) expect(r.ok).toBe(false)
        else if (r.ok) expect(asJsonParseWould(r.value)).toStrictEqual(expected)
        else expect.fail(`parseJson refused ${JSON.stringify(mutated)}: ${r.reason}`)
      }),
      { numRuns: 500 },
    )
  })

  it('reads the recorded ComfyUI traffic exactly as Python did, and reports its speed', () => {
    const lines = readFileSync(fixture('trace.jsonl'), 'utf8').split('\n').filter(Boolean)
    for (const line of lines) expect(asJsonParseWould(parsed(line))).toStrictEqual(JSON.parse(line))

    const objectInfo = readFileSync(fixture('object_info.json'))
    const text = objectInfo.toString('utf8')
    expect(asJsonParseWould(parsed(objectInfo))).toStrictEqual(JSON.parse(text))
    const rounds = 20
    const time = (fn: () => unknown): number => {
      fn()
      const start = process.hrtime.bigint()
      for (let k = 0; k < rounds; k++) fn()
      return Number(process.hrtime.bigint() - start) / 1e9
    }
    const mb = (objectInfo.length * rounds) / 1e6
    const ours = time(() => parseJson(text))
    const native = time(() => JSON.parse(text))
    console.log(
      `parseJson object_info.json (${objectInfo.length} bytes): ${(mb / ours).toFixed(0)} MB/s; ` +
        `JSON.parse: ${(mb / native).toFixed(0)} MB/s`,
    )
  })
})

describe('stringifyJson', () => {
  const sample: JsonValue = ['\u007f\u00e9😀', Number.NaN, 18446744073709551615n, { a: [1, 2] }]

  it('writes what Python json.dumps writes with its defaults', () => {
    // python3 -c 'import json; print(json.dumps(["\x7f\u00e9\U0001F600", float("nan"), 2**64-1, {"a":[1,2]}]))'
    expect(stringifyJson(sample, { python: true, ascii: true })).toBe(
      '["\\u007f\\u00e9\\ud83d\\ude00", NaN, 18446744073709551615, {"a": [1, 2]}]',
    )
  })

  it('writes compact UTF-8 text by default', () => {
    expect(stringifyJson(sample)).toBe('["\u007fé😀",NaN,18446744073709551615,{"a":[1,2]}]')
  })

  it('writes non-finite numbers as strings when strict', () => {
    const v = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1e21, 1e-7]
    expect(stringifyJson(v, { strict: true })).toBe('["NaN","Infinity","-Infinity",0,1e+21,1e-7]')
    expect(stringifyJson(v)).toBe('[NaN,Infinity,-Infinity,0,1e+21,1e-7]')
  })

  it('escapes control characters and lone surrogates', () => {
    expect(stringifyJson('\u0000\n"\\\ud800')).toBe('"\\u0000\\n\\"\\\\\\ud800"')
  })

  it('writes integral doubles beyond 2^53 with ".0" so they stay doubles', () => {
    const v: JsonValue = [2 ** 53, -(2 ** 60), 2 ** 53 - 1, 1e21, 2n ** 53n]
    expect(stringifyJson(v)).toBe(
      '[9007199254740992.0,-1152921504606847000.0,9007199254740991,1e+21,9007199254740992]',
    )
    expect(parsed(stringifyJson(v))).toStrictEqual(v)
  })

  it('matches JSON.stringify on values JSON.stringify can represent', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: anyUnit, maxDepth: 4 }), (v) => {
        const ours = stringifyJson(v as JsonValue)
        expect(JSON.parse(ours)).toStrictEqual(JSON.parse(JSON.stringify(v)))
        // Texts differ only by the ".0" on integral doubles beyond 2^53.
        expect(ours.replace(/(\d{17,})\.0/g, '$1')).toBe(JSON.stringify(v))
      }),
      { numRuns: 300 },
    )
  })

  it('round-trips bigints, NaN, Infinity and arbitrary strings through parseJson in every mode', () => {
    const bigints = fc.oneof(
      fc.bigInt({ min: 2n ** 53n, max: 2n ** 70n }),
      fc.bigInt({ min: -(2n ** 70n), max: -(2n ** 53n) }),
    )
    const leaf = fc.oneof(
      fc.constant(null),
      fc.boolean(),
      // -0 reads back as 0 after writing "0", as in Python; leave it to the dedicated test.
      fc.double().map((d) => (Object.is(d, -0) ? 0 : d)),
      fc.integer(),
      bigints,
      fc.string({ unit: anyUnit }),
    )
    const { value } = fc.letrec<{ value: JsonValue }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.array(tie('value'), { maxLength: 4 }),
        fc.dictionary(fc.string({ unit: anyUnit }), tie('value'), { maxKeys: 4, noNullPrototype: true }),
      ),
    }))
    const modes = fc.record({ python: fc.boolean(), ascii: fc.boolean() })
    fc.assert(
      fc.property(value, modes, (v, mode) => {
        expect(parsed(stringifyJson(v, mode))).toStrictEqual(v)
      }),
      { numRuns: 400 },
    )
  })
})

describe('canonicalJson', () => {
  it('sorts keys by UTF-16 code units and drops whitespace (RFC 8785 §3.2.3 example)', () => {
    // Key set from RFC 8785 §3.2.3; astral U+1F600 (D83D DE00) sorts before U+FB33 by code units.
    const v: JsonValue = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    }
    const keys = [...canonicalJson(v).matchAll(/"([^"]*)":/g)].map((m) => m[1])
    expect(keys).toEqual(['\\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'])
  })

  it('writes strings and keys exactly as JSON.stringify does, escapes and surrogates included', () => {
    const texts = [
      '',
      'plain',
      'a"b',
      'back\\slash',
      '\u0000',
      '\u001f',
      '\n\t',
      '\u007f',
      '\u2028',
      '\ud800',
      'x\udc00',
      '\ud83d\ude00',
      'é€',
    ]
    for (const s of texts) {
      expect(canonicalJson(s)).toBe(JSON.stringify(s))
      expect(canonicalJson({ [s]: s })).toBe(`{${JSON.stringify(s)}:${JSON.stringify(s)}}`)
    }
  })

  it('writes numbers in ECMAScript form (RFC 8785 Appendix B samples)', () => {
    const v: JsonValue = [
      Number('333333333.33333329'),
      1e30,
      4.5,
      0.002,
      1e-27,
      -0,
      1e21,
      9007199254740991,
      1e-7,
    ]
    expect(canonicalJson(v)).toBe('[333333333.3333333,1e+30,4.5,0.002,1e-27,0,1e+21,9007199254740991,1e-7]')
  })

  it('writes big integers and non-finite numbers as strings, and safe bigints as numbers', () => {
    const v: JsonValue = { seed: 18446744073709551615n, small: 42n, x: [Number.NaN, -Infinity, Infinity] }
    expect(canonicalJson(v)).toBe(
      '{"seed":"18446744073709551615","small":42,"x":["NaN","-Infinity","Infinity"]}',
    )
  })

  it('is independent of key insertion order and whitespace in the source', () => {
    const a = parsed('{"b": [1, {"y": 2, "x": 1}], "a": "é"}')
    const b = parsed('{"a":"\\u00e9","b":[1,{"x":1,"y":2}]}')
    expect(canonicalJson(a)).toBe(canonicalJson(b))
    expect(canonicalJson(a)).toBe('{"a":"é","b":[1,{"x":1,"y":2}]}')
    expect(canonicalJson(parsed('{"a":"e"}'))).not.toBe(canonicalJson(a))
  })

  it('is valid RFC 8259 JSON that JSON.parse reads back as the same value when numbers are safe', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: anyUnit, maxDepth: 4 }), (v) => {
        const text = canonicalJson(v as JsonValue)
        expect(JSON.parse(text)).toStrictEqual(JSON.parse(JSON.stringify(v)))
        expect(canonicalJson(JSON.parse(text) as JsonValue)).toBe(text)
      }),
      { numRuns: 300 },
    )
  })
})

describe('sha256Hex', () => {
  it('hashes strings as UTF-8 and buffers as bytes', () => {
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(sha256Hex(Buffer.from('é', 'utf8'))).toBe(sha256Hex('é'))
  })
})

describe('number spellings (issue 10 item 12)', () => {
  const prompt =
    '{"3":{"inputs":{"cfg":1.0,"denoise":1.00,"steps":20,"scale":1e5,"shift":-0.0,"zero":-0,"lr":2.50E-3,"plain":0.7,"list":[1.0,2,3.50]}}}'

  it('writes back 1.0, 1.00, 1e5, -0.0 and 2.50E-3 as they were read, while the values stay plain numbers', () => {
    const value = parsed(prompt) as { '3': { inputs: Record<string, JsonValue> } }
    const inputs = value['3'].inputs
    expect(inputs.cfg).toBe(1)
    expect(inputs.scale).toBe(100000)
    expect(Object.is(inputs.shift, -0)).toBe(true)
    expect(inputs.list).toEqual([1, 2, 3.5])
    expect(stringifyJson(value)).toBe(prompt)
    expect(stringifyJson(value, { tagged: true })).toBe(prompt)
    expect(stringifyJson(value, { strict: true })).toBe(prompt)
  })

  it('hashes by value: the canonical form is the same whatever the spelling', () => {
    expect(canonicalJson(parsed('{"cfg":1.0,"a":[1e5]}'))).toBe(
      canonicalJson(parsed('{"cfg":1,"a":[100000]}')),
    )
    expect(canonicalJson(parsed('{"cfg":1.0}'))).toBe('{"cfg":1}')
  })

  it('writes a value changed after reading in its own form', () => {
    const value = parsed('{"cfg":1.0,"keep":2.0}') as Record<string, JsonValue>
    value.cfg = 3
    expect(stringifyJson(value)).toBe('{"cfg":3,"keep":2.0}')
  })

  it('keeps spellings through copyJson, and through keepSpellings on a spread', () => {
    const value = parsed('{"a":{"cfg":1.0,"secret":"x"},"b":[1.0]}')
    const copy = copyJson(value, (v, path) => (path.at(-1) === 'secret' ? '[redacted]' : undefined))
    expect(stringifyJson(copy)).toBe('{"a":{"cfg":1.0,"secret":"[redacted]"},"b":[1.0]}')
    const source = parsed('{"cfg":1.0}') as Record<string, JsonValue>
    expect(stringifyJson(keepSpellings(source, { ...source }))).toBe('{"cfg":1.0}')
    expect(stringifyJson({ ...source })).toBe('{"cfg":1}')
  })

  it('still reads ids with hex digits and plain floats on the fast path, with the same values', () => {
    const text = '{"type":"progress","data":{"prompt_id":"3e4f-1e10","value":0.5,"max":20,"ids":["1.0"]}}'
    expect(parsed(text)).toEqual(JSON.parse(text))
    expect(stringifyJson(parsed(text))).toBe(text)
  })
})

describe('tagged JSON: standard JSON that reads back exactly (issue 10 item 12)', () => {
  it('writes NaN and the infinities as {"$float": …} and reads them back', () => {
    const value: JsonValue = { a: Number.NaN, b: [Infinity, -Infinity], seed: 2n ** 64n - 1n, f: 0.25 }
    const text = stringifyJson(value, { tagged: true })
    expect(text).toBe(
      '{"a":{"$float":"NaN"},"b":[{"$float":"Infinity"},{"$float":"-Infinity"}],"seed":18446744073709551615,"f":0.25}',
    )
    expect(() => JSON.parse(text)).not.toThrow()
    const back = parseJson(text, { tagged: true })
    expect(back.ok && back.value).toEqual(value)
  })

  it('escapes data that looks like a tag, so it never reads back as a number', () => {
    const value: JsonValue = {
      looks: { $float: 'NaN' },
      escape: { $escape: { $float: 'Infinity' } },
      inner: [{ $float: 'x' }],
      two: { $float: 'NaN', other: 1 },
    }
    const text = stringifyJson(value, { tagged: true })
    const back = parseJson(text, { tagged: true })
    expect(back.ok && back.value).toEqual(value)
    expect(canonicalJson((back.ok && back.value) as JsonValue)).toBe(canonicalJson(value))
  })

  it('reads the bare NaN/Infinity tokens written before tags existed', () => {
    const back = parseJson('{"a":NaN,"b":-Infinity}', { tagged: true })
    expect(back.ok && Number.isNaN((back.value as Record<string, number>).a)).toBe(true)
  })

  it('round-trips any JSON value exactly', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const value = v as JsonValue
        const back = parseJson(stringifyJson(value, { tagged: true }), { tagged: true })
        expect(back.ok && canonicalJson(back.value)).toBe(canonicalJson(value))
      }),
    )
  })
})

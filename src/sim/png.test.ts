import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { deflateSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { FIXTURE_DIR } from './catalogue.js'
import { auditInputPng } from './data-dir.js'
import { decodePng, encodePng } from './png.js'
import { PyFloat, dumpPyJson, parsePyJson, pyFloatRepr } from './py-json.js'

/** A PNG whose rows use the given filter bytes (computed by hand), to exercise every filter. */
function handFiltered(width: number, height: number, pixels: Uint8Array, filters: number[]): Buffer {
  const stride = width * 3
  const raw = Buffer.alloc((stride + 1) * height)
  for (let y = 0; y < height; y++) {
    const f = filters[y % filters.length]!
    raw[y * (stride + 1)] = f
    for (let x = 0; x < stride; x++) {
      const cur = pixels[y * stride + x]!
      const a = x >= 3 ? pixels[y * stride + x - 3]! : 0
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0
      const c = x >= 3 && y > 0 ? pixels[(y - 1) * stride + x - 3]! : 0
      const p = a + b - c
      const pr =
        Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
          ? a
          : Math.abs(p - b) <= Math.abs(p - c)
            ? b
            : c
      const pred = [0, a, b, (a + b) >> 1, pr][f]!
      raw[y * (stride + 1) + 1 + x] = (cur - pred) & 0xff
    }
  }
  const base = encodePng({ width, height, channels: 3, data: pixels })
  // Swap the IDAT of a valid file for the hand-filtered stream (same IHDR).
  const idatStart = base.indexOf('IDAT') - 4
  const head = base.subarray(0, idatStart)
  const z = deflateSync(raw)
  const len = Buffer.alloc(4)
  len.writeUInt32BE(z.length)
  const crcless = Buffer.concat([Buffer.from('IDAT'), z])
  // decodePng does not check CRCs, so a zero CRC is fine here.
  return Buffer.concat([
    head,
    len,
    crcless,
    Buffer.alloc(4),
    Buffer.from([0, 0, 0, 0]),
    Buffer.from('IEND'),
    Buffer.alloc(4),
  ])
}

describe('PNG codec', () => {
  it('decodes every filter type', () => {
    const w = 7
    const h = 10
    const px = new Uint8Array(w * h * 3).map((_, i) => (i * 37 + (i >> 3) * 11) & 0xff)
    const decoded = decodePng(handFiltered(w, h, px, [0, 1, 2, 3, 4]))
    expect(decoded.ok).toBe(true)
    if (decoded.ok) expect(Buffer.from(decoded.value.data).equals(Buffer.from(px))).toBe(true)
  })

  it('round-trips pixels and tEXt chunks', () => {
    const data = new Uint8Array(5 * 4 * 4).map((_, i) => i * 3)
    const png = encodePng({ width: 5, height: 4, channels: 4, data }, { text: [['prompt', '{"a": 1}']] })
    const back = decodePng(png)
    expect(back.ok && back.value.channels).toBe(4)
    expect(back.ok && [...back.value.data]).toEqual([...data])
    expect(back.ok && back.value.text).toEqual([['prompt', '{"a": 1}']])
  })

  it('reads the recorded SaveImage output, 384x384 RGB with prompt and workflow chunks', () => {
    const ref = decodePng(readFileSync(join(FIXTURE_DIR, 'pipeline_00001_.png')))
    expect(ref.ok).toBe(true)
    if (!ref.ok) return
    expect([ref.value.width, ref.value.height, ref.value.channels]).toEqual([384, 384, 3])
    expect(ref.value.text.map((t) => t[0])).toEqual(['prompt', 'workflow'])
  })

  it('seeds audit-input.png with pixel (x, y) = (x, y, x*y mod 256)', () => {
    const img = decodePng(auditInputPng())
    expect(img.ok).toBe(true)
    if (!img.ok) return
    const at = (x: number, y: number): number[] => [
      ...img.value.data.slice((y * 256 + x) * 3, (y * 256 + x) * 3 + 3),
    ]
    expect(at(17, 200)).toEqual([17, 200, (17 * 200) % 256])
    expect(at(255, 255)).toEqual([255, 255, (255 * 255) % 256])
  })

  it('refuses data that is not a PNG', () => {
    expect(decodePng(Buffer.from('GIF89a')).ok).toBe(false)
  })
})

describe('Python-compatible JSON', () => {
  it('keeps floats apart from ints and writes them back like json.dumps', () => {
    const parsed = parsePyJson('{"a": 1.0, "b": 1, "c": [1e-05, 1e16, 2.5], "d": "caf\\u00e9"}')
    expect(parsed.ok).toBe(true)
    if (parsed.ok)
      expect(dumpPyJson(parsed.value)).toBe('{"a": 1.0, "b": 1, "c": [1e-05, 1e+16, 2.5], "d": "caf\\u00e9"}')
  })

  it.each([
    [0.1, '0.1'],
    [100, '100.0'],
    [1e22, '1e+22'],
    [0.0001, '0.0001'],
    [0.00001234, '1.234e-05'],
    [-2.5, '-2.5'],
    [NaN, 'NaN'],
  ])('writes %s as %s', (x, s) => {
    expect(pyFloatRepr(x)).toBe(s)
    expect(dumpPyJson(new PyFloat(x))).toBe(s)
  })

  it('accepts NaN and Infinity and keeps big integers exact', () => {
    const r = parsePyJson('[NaN, -Infinity, 18446744073709551615]')
    expect(r.ok && dumpPyJson(r.value)).toBe('[NaN, -Infinity, 18446744073709551615]')
  })

  it('rejects trailing garbage and bad escapes', () => {
    expect(parsePyJson('{} x').ok).toBe(false)
    expect(parsePyJson('"\\q"').ok).toBe(false)
    expect(parsePyJson('[1,]').ok).toBe(false)
  })
})

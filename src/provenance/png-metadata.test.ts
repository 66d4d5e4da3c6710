import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { deflateSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { parseJson } from '../audit/json.js'
import { pngSize, readPngMetadata } from './png-metadata.js'

const FIXTURE = fileURLToPath(new URL('../../fixtures/comfyui-0.8.0/pipeline_00001_.png', import.meta.url))

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  return Buffer.concat([len, Buffer.from(type, 'latin1'), data, Buffer.alloc(4)])
}

function png(chunks: Buffer[]): Buffer {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(640, 0)
  ihdr.writeUInt32BE(480, 4)
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...chunks,
    chunk('IEND', Buffer.alloc(0)),
  ])
}

describe('readPngMetadata', () => {
  it('reads the prompt and workflow ComfyUI wrote into a real output', () => {
    const r = readPngMetadata(readFileSync(FIXTURE))
    if (!r.ok) throw new Error(r.reason)
    expect(r.value.width).toBeGreaterThan(0)
    const prompt = parseJson(r.value.text.prompt ?? '')
    expect(prompt.ok).toBe(true)
    expect(Object.keys(r.value.text)).toEqual(expect.arrayContaining(['prompt', 'workflow']))
  })

  it('reads tEXt, zTXt and iTXt (plain and compressed) chunks', () => {
    const bytes = png([
      chunk('tEXt', Buffer.from('a\0latin \xe9', 'latin1')),
      chunk('zTXt', Buffer.concat([Buffer.from('b\0\0', 'latin1'), deflateSync('zipped')])),
      chunk('iTXt', Buffer.concat([Buffer.from('c\0\0\0en\0C\0', 'latin1'), Buffer.from('ünï', 'utf8')])),
      chunk('iTXt', Buffer.concat([Buffer.from('prompt\0\x01\0\0\0', 'latin1'), deflateSync('{"1":{}}')])),
    ])
    const r = readPngMetadata(bytes)
    expect(r).toEqual({
      ok: true,
      value: { width: 640, height: 480, text: { a: 'latin é', b: 'zipped', c: 'ünï', prompt: '{"1":{}}' } },
    })
    expect(pngSize(bytes.subarray(0, 24))).toEqual({ width: 640, height: 480 })
  })

  it('refuses a file that is not a PNG or is cut short', () => {
    expect(readPngMetadata(Buffer.from('GIF89a')).ok).toBe(false)
    const bytes = png([chunk('tEXt', Buffer.from('a\0b'))])
    expect(readPngMetadata(bytes.subarray(0, bytes.length - 12))).toMatchObject({ ok: false })
  })
})

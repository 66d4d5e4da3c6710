/**
 * A small PNG codec (node:zlib only): enough to read the images users upload and to write the images
 * the stand-in's SaveImage/PreviewImage produce, with ComfyUI's `tEXt` metadata chunks.
 */
import { deflateSync, inflateSync } from 'node:zlib'

/** Decoded 8-bit pixels. `channels` is 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA). */
export interface RawImage {
  readonly width: number
  readonly height: number
  readonly channels: 1 | 2 | 3 | 4
  readonly data: Uint8Array
}

export interface DecodedPng extends RawImage {
  /** `tEXt` chunks in file order. */
  readonly text: ReadonlyArray<readonly [string, string]>
}

type DecodeResult = { ok: true; value: DecodedPng } | { ok: false; reason: string }

const SIGNATURE = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk(type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(body.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])), 0)
  return Buffer.concat([head, body, crc])
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c
  const pa = Math.abs(p - a)
  const pb = Math.abs(p - b)
  const pc = Math.abs(p - c)
  if (pa <= pb && pa <= pc) return a
  return pb <= pc ? b : c
}

interface EncodeOptions {
  /** `tEXt` chunks written after IHDR, in order (Latin-1 text, as PIL writes them). */
  readonly text?: ReadonlyArray<readonly [string, string]>
  /** zlib level 0-9 (PIL's `compress_level`); default 4 like SaveImage. */
  readonly level?: number
}

/** Encodes 8-bit pixels as a PNG (filter "Sub" on every row, which suits photos and noise alike). */
export function encodePng(img: RawImage, options: EncodeOptions = {}): Buffer {
  const colorType = { 1: 0, 2: 4, 3: 2, 4: 6 }[img.channels]
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(img.width, 0)
  ihdr.writeUInt32BE(img.height, 4)
  ihdr[8] = 8
  ihdr[9] = colorType
  const stride = img.width * img.channels
  const raw = Buffer.alloc((stride + 1) * img.height)
  for (let y = 0; y < img.height; y++) {
    const o = y * (stride + 1)
    raw[o] = 1
    const row = y * stride
    for (let x = 0; x < stride; x++) {
      const left = x >= img.channels ? img.data[row + x - img.channels]! : 0
      raw[o + 1 + x] = (img.data[row + x]! - left) & 0xff
    }
  }
  const parts = [SIGNATURE, chunk('IHDR', ihdr)]
  for (const [k, v] of options.text ?? []) {
    parts.push(
      chunk('tEXt', Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1')])),
    )
  }
  // PIL writes the compressed stream in 64 KiB IDAT chunks.
  const z = deflateSync(raw, { level: options.level ?? 4 })
  for (let off = 0; off < z.length || off === 0; off += 65536)
    parts.push(chunk('IDAT', z.subarray(off, off + 65536)))
  parts.push(chunk('IEND', new Uint8Array(0)))
  return Buffer.concat(parts)
}

/** Decodes a non-interlaced 8-bit PNG (gray, gray+alpha, RGB, RGBA or palette), filters 0-4. */
export function decodePng(buf: Uint8Array): DecodeResult {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  if (b.length < 8 || !b.subarray(0, 8).equals(SIGNATURE)) return { ok: false, reason: 'not a PNG file' }
  let pos = 8
  let width = 0
  let height = 0
  let colorType = -1
  let bitDepth = 0
  let interlace = 0
  let palette: Uint8Array | undefined
  let trns: Uint8Array | undefined
  const idat: Buffer[] = []
  const text: Array<[string, string]> = []
  while (pos + 8 <= b.length) {
    const len = b.readUInt32BE(pos)
    const type = b.toString('latin1', pos + 4, pos + 8)
    if (pos + 12 + len > b.length) return { ok: false, reason: `truncated ${type} chunk` }
    const body = b.subarray(pos + 8, pos + 8 + len)
    pos += 12 + len
    if (type === 'IHDR') {
      width = body.readUInt32BE(0)
      height = body.readUInt32BE(4)
      bitDepth = body[8]!
      colorType = body[9]!
      interlace = body[12]!
    } else if (type === 'PLTE') palette = body
    else if (type === 'tRNS') trns = body
    else if (type === 'IDAT') idat.push(body)
    else if (type === 'tEXt') {
      const z = body.indexOf(0)
      if (z > 0) text.push([body.toString('latin1', 0, z), body.toString('latin1', z + 1)])
    } else if (type === 'IEND') break
  }
  if (bitDepth !== 8) return { ok: false, reason: `unsupported bit depth ${bitDepth}` }
  if (interlace !== 0) return { ok: false, reason: 'interlaced PNG not supported' }
  const inChannels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType as 0 | 2 | 3 | 4 | 6]
  if (inChannels === undefined) return { ok: false, reason: `unsupported color type ${colorType}` }
  if (width <= 0 || height <= 0 || width * height > 1 << 26) return { ok: false, reason: 'bad dimensions' }
  let raw: Buffer
  try {
    raw = inflateSync(Buffer.concat(idat))
  } catch {
    return { ok: false, reason: 'corrupt image data' }
  }
  const stride = width * inChannels
  if (raw.length < (stride + 1) * height) return { ok: false, reason: 'image data too short' }
  const px = new Uint8Array(stride * height)
  const bpp = inChannels
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!
    const src = y * (stride + 1) + 1
    const dst = y * stride
    for (let x = 0; x < stride; x++) {
      const v = raw[src + x]!
      const a = x >= bpp ? px[dst + x - bpp]! : 0
      const up = y > 0 ? px[dst - stride + x]! : 0
      const c = x >= bpp && y > 0 ? px[dst - stride + x - bpp]! : 0
      let out: number
      switch (f) {
        case 0:
          out = v
          break
        case 1:
          out = v + a
          break
        case 2:
          out = v + up
          break
        case 3:
          out = v + ((a + up) >> 1)
          break
        case 4:
          out = v + paeth(a, up, c)
          break
        default:
          return { ok: false, reason: `bad filter type ${f}` }
      }
      px[dst + x] = out & 0xff
    }
  }
  if (colorType === 3) {
    if (!palette) return { ok: false, reason: 'palette missing' }
    const hasAlpha = trns !== undefined
    const ch = hasAlpha ? 4 : 3
    const out = new Uint8Array(width * height * ch)
    for (let k = 0; k < width * height; k++) {
      const idx = px[k]!
      out[k * ch] = palette[idx * 3] ?? 0
      out[k * ch + 1] = palette[idx * 3 + 1] ?? 0
      out[k * ch + 2] = palette[idx * 3 + 2] ?? 0
      if (hasAlpha) out[k * ch + 3] = trns![idx] ?? 255
    }
    return { ok: true, value: { width, height, channels: ch, data: out, text } }
  }
  return { ok: true, value: { width, height, channels: inChannels as 1 | 2 | 3 | 4, data: px, text } }
}

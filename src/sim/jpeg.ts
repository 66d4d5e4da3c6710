/**
 * A small baseline JPEG encoder for the stand-in's sampler previews (ComfyUI sends them as JPEG).
 * 4:4:4 YCbCr, the IJG-scaled Annex K luminance table for every component, and Huffman tables with
 * fixed code lengths (every DC category 4 bits, every AC symbol 8 bits): larger than an optimised
 * file, but valid for any decoder, and simple enough to check by eye.
 */

const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46,
  53, 60, 61, 54, 47, 55, 62, 63,
]

const LUMA = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22,
  29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103,
  121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]

// The 162 AC symbols of baseline JPEG: EOB, ZRL, and (run << 4 | size) for run 0-15, size 1-10.
const AC_SYMBOLS = [0x00, 0xf0]
for (let run = 0; run < 16; run++) for (let size = 1; size <= 10; size++) AC_SYMBOLS.push((run << 4) | size)
const AC_CODE = new Map(AC_SYMBOLS.map((s, i) => [s, i]))

const COS = Array.from({ length: 64 }, (_, i) => {
  const x = i >> 3
  const u = i & 7
  return Math.cos(((2 * x + 1) * u * Math.PI) / 16)
})

class BitWriter {
  readonly bytes: number[] = []
  #acc = 0
  #n = 0
  put(value: number, bits: number): void {
    for (let i = bits - 1; i >= 0; i--) {
      this.#acc = (this.#acc << 1) | ((value >> i) & 1)
      if (++this.#n === 8) {
        this.bytes.push(this.#acc)
        if (this.#acc === 0xff) this.bytes.push(0) // byte stuffing
        this.#acc = 0
        this.#n = 0
      }
    }
  }
  flush(): void {
    while (this.#n !== 0) this.put(1, 1)
  }
}

const category = (v: number): number => (v === 0 ? 0 : 32 - Math.clz32(Math.abs(v)))

/** Encodes RGB pixels (3 bytes each, row by row) as a baseline JPEG at `quality` (1-100). */
export function encodeJpeg(width: number, height: number, rgb: Uint8Array, quality = 95): Buffer {
  const scale = quality < 50 ? Math.floor(5000 / quality) : 200 - quality * 2
  const q = LUMA.map((t) => Math.min(255, Math.max(1, Math.floor((t * scale + 50) / 100))))
  const out: number[] = [0xff, 0xd8]
  const segment = (marker: number, body: number[]): void => {
    out.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body)
  }
  segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])
  segment(0xdb, [0, ...ZIGZAG.map((z) => q[z]!)])
  segment(0xc0, [
    8,
    height >> 8,
    height & 0xff,
    width >> 8,
    width & 0xff,
    3,
    1,
    0x11,
    0,
    2,
    0x11,
    0,
    3,
    0x11,
    0,
  ])
  const dcBits = [0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
  segment(0xc4, [0x00, ...dcBits, ...Array.from({ length: 12 }, (_, i) => i)])
  const acBits = [0, 0, 0, 0, 0, 0, 0, AC_SYMBOLS.length, 0, 0, 0, 0, 0, 0, 0, 0]
  segment(0xc4, [0x10, ...acBits, ...AC_SYMBOLS])
  segment(0xda, [3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0])

  const w = new BitWriter()
  const pred = [0, 0, 0]
  const block = new Float64Array(64)
  const coef = new Float64Array(64)
  for (let by = 0; by < height; by += 8) {
    for (let bx = 0; bx < width; bx += 8) {
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < 8; y++) {
          for (let x = 0; x < 8; x++) {
            const px = Math.min(width - 1, bx + x)
            const py = Math.min(height - 1, by + y)
            const o = (py * width + px) * 3
            const r = rgb[o]!
            const g = rgb[o + 1]!
            const b = rgb[o + 2]!
            const v =
              c === 0
                ? 0.299 * r + 0.587 * g + 0.114 * b
                : c === 1
                  ? -0.168736 * r - 0.331264 * g + 0.5 * b + 128
                  : 0.5 * r - 0.418688 * g - 0.081312 * b + 128
            block[y * 8 + x] = v - 128
          }
        }
        for (let v = 0; v < 8; v++) {
          for (let u = 0; u < 8; u++) {
            let s = 0
            for (let y = 0; y < 8; y++)
              for (let x = 0; x < 8; x++) s += block[y * 8 + x]! * COS[x * 8 + u]! * COS[y * 8 + v]!
            const cu = u === 0 ? Math.SQRT1_2 : 1
            const cv = v === 0 ? Math.SQRT1_2 : 1
            coef[v * 8 + u] = Math.round((0.25 * cu * cv * s) / q[v * 8 + u]!)
          }
        }
        const dc = coef[0]!
        const diff = dc - pred[c]!
        pred[c] = dc
        const dcCat = category(diff)
        w.put(dcCat, 4)
        if (dcCat > 0) w.put(diff < 0 ? diff + (1 << dcCat) - 1 : diff, dcCat)
        let run = 0
        for (let k = 1; k < 64; k++) {
          const a = coef[ZIGZAG[k]!]!
          if (a === 0) {
            run++
            continue
          }
          while (run > 15) {
            w.put(AC_CODE.get(0xf0)!, 8)
            run -= 16
          }
          const s = category(a)
          w.put(AC_CODE.get((run << 4) | s)!, 8)
          w.put(a < 0 ? a + (1 << s) - 1 : a, s)
          run = 0
        }
        if (run > 0) w.put(AC_CODE.get(0x00)!, 8)
      }
    }
  }
  w.flush()
  out.push(...w.bytes, 0xff, 0xd9)
  return Buffer.from(out)
}

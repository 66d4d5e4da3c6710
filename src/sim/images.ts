/**
 * Image values of the simulated node graph: RGB frames of floats in [0, 1] (ComfyUI's IMAGE tensors are
 * [batch, height, width, 3] floats), with the few operations the stand-in's nodes really compute.
 */
import type { RawImage } from './png.js'

/** One RGB frame: `data[(y * width + x) * 3 + c]`. */
export interface Frame {
  readonly width: number
  readonly height: number
  readonly data: Float32Array
}

export function frameFromRaw(img: RawImage): { frame: Frame; alpha: Float32Array | undefined } {
  const n = img.width * img.height
  const data = new Float32Array(n * 3)
  let alpha: Float32Array | undefined
  if (img.channels === 2 || img.channels === 4) alpha = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const o = i * img.channels
    if (img.channels <= 2) {
      const g = img.data[o]! / 255
      data[i * 3] = g
      data[i * 3 + 1] = g
      data[i * 3 + 2] = g
    } else {
      data[i * 3] = img.data[o]! / 255
      data[i * 3 + 1] = img.data[o + 1]! / 255
      data[i * 3 + 2] = img.data[o + 2]! / 255
    }
    if (alpha) alpha[i] = img.data[o + img.channels - 1]! / 255
  }
  return { frame: { width: img.width, height: img.height, data }, alpha }
}

export function frameToRaw(f: Frame): RawImage {
  const out = new Uint8Array(f.width * f.height * 3)
  for (let i = 0; i < out.length; i++) out[i] = Math.min(255, Math.max(0, Math.trunc(f.data[i]! * 255)))
  return { width: f.width, height: f.height, channels: 3, data: out }
}

/** Resizes like `torch.nn.functional.interpolate` (bilinear, align_corners=False) or nearest-exact. */
export function scaleFrame(f: Frame, width: number, height: number, method: string): Frame {
  const out = new Float32Array(width * height * 3)
  const sx = f.width / width
  const sy = f.height / height
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3
      if (method === 'nearest-exact') {
        const ix = Math.min(f.width - 1, Math.floor((x + 0.5) * sx))
        const iy = Math.min(f.height - 1, Math.floor((y + 0.5) * sy))
        const i = (iy * f.width + ix) * 3
        out[o] = f.data[i]!
        out[o + 1] = f.data[i + 1]!
        out[o + 2] = f.data[i + 2]!
        continue
      }
      const fx = Math.max(0, (x + 0.5) * sx - 0.5)
      const fy = Math.max(0, (y + 0.5) * sy - 0.5)
      const x0 = Math.min(f.width - 1, Math.floor(fx))
      const y0 = Math.min(f.height - 1, Math.floor(fy))
      const x1 = Math.min(f.width - 1, x0 + 1)
      const y1 = Math.min(f.height - 1, y0 + 1)
      const ax = fx - x0
      const ay = fy - y0
      for (let c = 0; c < 3; c++) {
        const p00 = f.data[(y0 * f.width + x0) * 3 + c]!
        const p01 = f.data[(y0 * f.width + x1) * 3 + c]!
        const p10 = f.data[(y1 * f.width + x0) * 3 + c]!
        const p11 = f.data[(y1 * f.width + x1) * 3 + c]!
        out[o + c] = (p00 * (1 - ax) + p01 * ax) * (1 - ay) + (p10 * (1 - ax) + p11 * ax) * ay
      }
    }
  }
  return { width, height, data: out }
}

function reflect(i: number, n: number): number {
  if (n === 1) return 0
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i
  return i
}

/**
 * Gaussian blur with reflect padding as ComfyUI's ImageBlur computes it: a (2r+1)-tap kernel whose taps
 * sit on linspace(-1, 1), so sigma is relative to the radius, not in pixels. The 2-D kernel is separable.
 */
export function blurFrame(f: Frame, radius: number, sigma: number): Frame {
  if (radius <= 0) return f
  const size = radius * 2 + 1
  const k = new Float32Array(size)
  let sum = 0
  for (let i = 0; i < size; i++) {
    const d = -1 + (2 * i) / (size - 1)
    k[i] = Math.exp(-(d * d) / (2 * sigma * sigma))
    sum += k[i]!
  }
  for (let i = 0; i < size; i++) k[i]! /= sum
  const { width: w, height: h } = f
  const tmp = new Float32Array(w * h * 3)
  const out = new Float32Array(w * h * 3)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0
        for (let i = 0; i < size; i++) acc += k[i]! * f.data[(y * w + reflect(x + i - radius, w)) * 3 + c]!
        tmp[(y * w + x) * 3 + c] = acc
      }
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0
        for (let i = 0; i < size; i++) acc += k[i]! * tmp[(reflect(y + i - radius, h) * w + x) * 3 + c]!
        out[(y * w + x) * 3 + c] = acc
      }
    }
  }
  return { width: w, height: h, data: out }
}

export function invertFrame(f: Frame): Frame {
  const out = new Float32Array(f.data.length)
  for (let i = 0; i < out.length; i++) out[i] = 1 - f.data[i]!
  return { width: f.width, height: f.height, data: out }
}

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x: number): number {
  const r = Math.round(x)
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/** A seeded 32-bit PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A deterministic smooth-noise picture: what a random-weight SD1.5 decodes to, more or less. */
export function noiseFrame(width: number, height: number, seed: number): Frame {
  const rnd = seededRandom(seed)
  const gw = Math.max(2, Math.ceil(width / 32) + 1)
  const gh = Math.max(2, Math.ceil(height / 32) + 1)
  const grid = new Float32Array(gw * gh * 3)
  for (let i = 0; i < grid.length; i++) grid[i] = rnd()
  const coarse: Frame = { width: gw, height: gh, data: grid }
  const smooth = scaleFrame(coarse, width, height, 'bilinear')
  const out = smooth.data
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, out[i]! * 0.85 + rnd() * 0.15))
  return smooth
}

/** torch's repr of an IMAGE tensor [B, H, W, 3] (summarised with 3 edge items, 4 decimals). */
export function tensorRepr(frames: readonly Frame[]): string {
  const fmt = (v: number): string => v.toFixed(4)
  const pick = (n: number): Array<number | null> =>
    n > 6 ? [0, 1, 2, null, n - 3, n - 2, n - 1] : Array.from({ length: n }, (_, i) => i)
  const total = frames.reduce((a, f) => a + f.width * f.height * 3, 0)
  const summarise = total > 1000
  const idx = (n: number): Array<number | null> =>
    summarise ? pick(n) : Array.from({ length: n }, (_, i) => i)
  const batch = idx(frames.length).map((b) => {
    if (b === null) return '...'
    const f = frames[b]!
    const rows = idx(f.height).map((y) => {
      if (y === null) return '...'
      const cols = idx(f.width).map((x) => {
        if (x === null) return '...'
        const o = (y * f.width + x) * 3
        return `[${fmt(f.data[o]!)}, ${fmt(f.data[o + 1]!)}, ${fmt(f.data[o + 2]!)}]`
      })
      return '[' + cols.join(',\n' + ' '.repeat(10)) + ']'
    })
    return '[' + rows.join(',\n\n' + ' '.repeat(9)) + ']'
  })
  return 'tensor([' + batch.join(',\n\n\n' + ' '.repeat(8)) + '])'
}

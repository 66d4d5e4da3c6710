/**
 * The safetensors container: an 8-byte little-endian header length, a JSON header (`__metadata__` plus
 * one entry per tensor) and the raw tensor bytes. The stand-in writes small valid files and reads headers
 * the way the `safetensors` library does, with its error messages.
 */
import { open } from 'node:fs/promises'

/** Largest header the safetensors library accepts (its `MAX_HEADER_SIZE`). */
const MAX_HEADER_BYTES = 100_000_000

interface TensorSpec {
  readonly dtype: 'F16' | 'F32' | 'U8'
  readonly shape: readonly number[]
  /** Filled with a deterministic pattern. */
}

const DTYPE_BYTES = { F16: 2, F32: 4, U8: 1 } as const

/** Builds a valid safetensors file with the given `__metadata__` and small tensors. */
export function encodeSafetensors(
  metadata: Record<string, string>,
  tensors: Record<string, TensorSpec>,
): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  const datas: Buffer[] = []
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] }
    const d = Buffer.alloc(n)
    for (let i = 0; i < n; i++) d[i] = (i * 37 + name.length) & 0x3f
    datas.push(d)
    offset += n
  }
  let json = JSON.stringify(header)
  // The format pads the header with spaces to an 8-byte boundary.
  while ((8 + json.length) % 8 !== 0) json += ' '
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...datas])
}

type HeaderResult =
  | { ok: true; header: Record<string, unknown> }
  | { ok: false; reason: 'missing' | 'too-large-for-caller'; message: string }
  | { ok: false; reason: 'corrupt'; message: string }

/**
 * Reads and checks a safetensors header. `maxBytes` mimics ComfyUI's `safetensors_header(max_size)`
 * (a larger header reads as "too-large-for-caller"); otherwise corruption is reported with the
 * message `safetensors` raises ("Error while deserializing header: header too large").
 */
export async function readSafetensorsHeader(path: string, maxBytes?: number): Promise<HeaderResult> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch {
    return { ok: false, reason: 'missing', message: `No such file or directory: '${path}'` }
  }
  try {
    const { size } = await fh.stat()
    const head = Buffer.alloc(8)
    const { bytesRead } = await fh.read(head, 0, 8, 0)
    if (bytesRead < 8) return corrupt('header too small')
    const n = head.readBigUInt64LE(0)
    if (maxBytes !== undefined && n > BigInt(maxBytes)) {
      return { ok: false, reason: 'too-large-for-caller', message: 'header larger than allowed' }
    }
    if (n > BigInt(MAX_HEADER_BYTES)) return corrupt('header too large')
    const len = Number(n)
    if (8 + len > size) return corrupt('invalid header length')
    const body = Buffer.alloc(len)
    await fh.read(body, 0, len, 8)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body)
    } catch {
      return corrupt('invalid UTF-8 in header')
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return corrupt('invalid JSON in header')
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return corrupt('invalid JSON in header')
    }
    return { ok: true, header: parsed as Record<string, unknown> }
  } finally {
    await fh.close()
  }
}

function corrupt(what: string): HeaderResult {
  return { ok: false, reason: 'corrupt', message: `Error while deserializing header: ${what}` }
}

/**
 * Reads what a PNG says about itself: width and height (IHDR) and its text chunks (tEXt, zTXt, iTXt), where
 * ComfyUI's SaveImage writes `prompt` and `workflow` (https://www.w3.org/TR/png-3/#11textinfo).
 */
import { inflateSync } from 'node:zlib'

/** What {@link readPngMetadata} found. */
interface PngMetadata {
  readonly width: number
  readonly height: number
  /** Text chunks by keyword; a later chunk with the same keyword wins. */
  readonly text: Readonly<Record<string, string>>
}

type PngResult = { ok: true; value: PngMetadata } | { ok: false; reason: string }

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
/** Decompressed text larger than this is refused (a zip bomb in a zTXt chunk must not exhaust memory). */
const MAX_TEXT_BYTES = 64 * 1024 * 1024

/** True when the bytes start with the PNG signature. */
function isPng(bytes: Buffer): boolean {
  return bytes.length >= 8 && bytes.subarray(0, 8).equals(SIGNATURE)
}

/** Width and height from the first 24 bytes of a PNG (signature + IHDR), or null. */
export function pngSize(head: Buffer): { width: number; height: number } | null {
  if (head.length < 24 || !isPng(head) || head.toString('latin1', 12, 16) !== 'IHDR') return null
  return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) }
}

function inflate(data: Buffer): string {
  return inflateSync(data, { maxOutputLength: MAX_TEXT_BYTES }).toString('utf8')
}

/** Parses a whole PNG file's chunks; refuses a file that is not a well-formed PNG up to IEND. */
export function readPngMetadata(bytes: Buffer): PngResult {
  const size = pngSize(bytes)
  if (!size) return { ok: false, reason: 'not a PNG (no signature or IHDR)' }
  const text: Record<string, string> = {}
  let at = 8
  while (at + 12 <= bytes.length) {
    const length = bytes.readUInt32BE(at)
    const type = bytes.toString('latin1', at + 4, at + 8)
    const start = at + 8
    const end = start + length
    if (end + 4 > bytes.length) return { ok: false, reason: `chunk ${type} runs past the end of the file` }
    const data = bytes.subarray(start, end)
    try {
      if (type === 'tEXt') {
        const nul = data.indexOf(0)
        if (nul > 0) text[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1)
      } else if (type === 'zTXt') {
        const nul = data.indexOf(0)
        // One compression method byte (0 = zlib) follows the keyword's terminator.
        if (nul > 0 && data[nul + 1] === 0)
          text[data.toString('latin1', 0, nul)] = inflate(data.subarray(nul + 2))
      } else if (type === 'iTXt') {
        const nul = data.indexOf(0)
        if (nul > 0) {
          const compressed = data[nul + 1] === 1
          const langEnd = data.indexOf(0, nul + 3)
          const transEnd = langEnd < 0 ? -1 : data.indexOf(0, langEnd + 1)
          if (transEnd >= 0) {
            const body = data.subarray(transEnd + 1)
            text[data.toString('latin1', 0, nul)] = compressed ? inflate(body) : body.toString('utf8')
          }
        }
      } else if (type === 'IEND') {
        return { ok: true, value: { ...size, text } }
      }
    } catch (error) {
      return { ok: false, reason: `chunk ${type}: ${error instanceof Error ? error.message : String(error)}` }
    }
    at = end + 4 // skip the CRC
  }
  return { ok: false, reason: 'PNG ends without an IEND chunk' }
}

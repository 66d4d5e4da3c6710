/**
 * A small `multipart/form-data` reader (RFC 7578) for `POST /upload/image|mask` bodies. The tap hands
 * capture the body without its headers, so the boundary is taken from the body's first line, which a
 * well-formed body always starts with (`--boundary CRLF`).
 */

/** One part of a multipart body. */
interface MultipartPart {
  /** The form field name (`image`, `type`, `subfolder`, ...). */
  readonly name: string
  /** The file name, for file parts. */
  readonly filename: string | null
  readonly contentType: string | null
  readonly data: Buffer
}

/** Parses a multipart body; the boundary is read from the body unless given. */
export function parseMultipart(
  body: Buffer,
  boundary?: string,
): { ok: true; parts: MultipartPart[] } | { ok: false; reason: string } {
  let delimiterText = boundary === undefined ? null : `--${boundary}`
  if (delimiterText === null) {
    const firstLineEnd = body.indexOf('\r\n')
    if (firstLineEnd < 3 || body[0] !== 0x2d || body[1] !== 0x2d)
      return { ok: false, reason: 'not a multipart body' }
    delimiterText = body.subarray(0, firstLineEnd).toString('latin1').trimEnd()
  }
  const delimiter = Buffer.from(delimiterText, 'latin1')
  const parts: MultipartPart[] = []
  let pos = body.indexOf(delimiter)
  if (pos < 0) return { ok: false, reason: 'boundary not found' }
  for (;;) {
    pos += delimiter.length
    // "--" after a delimiter closes the body.
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return { ok: true, parts }
    const headerStart = body.indexOf('\r\n', pos)
    if (headerStart < 0) return { ok: false, reason: 'truncated part' }
    const headerEnd = body.indexOf('\r\n\r\n', headerStart)
    if (headerEnd < 0) return { ok: false, reason: 'truncated part headers' }
    const headers = body.subarray(headerStart + 2, headerEnd).toString('utf8')
    const dataStart = headerEnd + 4
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), dataStart)
    if (next < 0) return { ok: false, reason: 'unterminated part' }
    const part = partFromHeaders(headers, body.subarray(dataStart, next))
    if (part) parts.push(part)
    pos = next + 2
  }
}

function partFromHeaders(headers: string, data: Buffer): MultipartPart | null {
  let name: string | null = null
  let filename: string | null = null
  let contentType: string | null = null
  for (const line of headers.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon < 0) continue
    const key = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    if (key === 'content-type') contentType = value
    if (key === 'content-disposition') {
      name = dispositionParam(value, 'name')
      filename = dispositionParam(value, 'filename')
    }
  }
  return name === null ? null : { name, filename, contentType, data }
}

function dispositionParam(value: string, param: string): string | null {
  const match = new RegExp(`(?:^|;)\\s*${param}="((?:[^"\\\\]|\\\\.)*)"`, 'i').exec(value)
  if (match) return (match[1] as string).replace(/\\(.)/g, '$1')
  const bare = new RegExp(`(?:^|;)\\s*${param}=([^;\\s]+)`, 'i').exec(value)
  return bare ? (bare[1] as string) : null
}

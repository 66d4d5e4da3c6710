/** A minimal `multipart/form-data` reader for `/upload/image`. */

export interface FormPart {
  readonly name: string
  readonly filename: string | undefined
  readonly data: Buffer
}

export type MultipartResult = { ok: true; parts: FormPart[] } | { ok: false; reason: string }

/** Splits a multipart body; `contentType` must carry the boundary. */
export function parseMultipart(contentType: string, body: Buffer): MultipartResult {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
  if (!/^multipart\/form-data/i.test(contentType) || !m)
    return { ok: false, reason: 'not multipart/form-data' }
  const delimiter = Buffer.from('--' + (m[1] ?? m[2]))
  const parts: FormPart[] = []
  let pos = body.indexOf(delimiter)
  if (pos < 0) return { ok: false, reason: 'boundary not found' }
  for (;;) {
    pos += delimiter.length
    if (body.subarray(pos, pos + 2).toString() === '--') break
    if (body.subarray(pos, pos + 2).toString() === '\r\n') pos += 2
    const headerEnd = body.indexOf('\r\n\r\n', pos)
    if (headerEnd < 0) return { ok: false, reason: 'truncated part headers' }
    const headers = body.subarray(pos, headerEnd).toString('utf8')
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4)
    if (next < 0) return { ok: false, reason: 'truncated part' }
    const data = body.subarray(headerEnd + 4, next)
    const disp = /content-disposition:\s*form-data([^\r\n]*)/i.exec(headers)
    if (disp) {
      const name = /;\s*name="([^"]*)"/i.exec(disp[1]!)?.[1] ?? ''
      const filename = /;\s*filename="([^"]*)"/i.exec(disp[1]!)?.[1]
      parts.push({ name, filename, data })
    }
    pos = next + 2
  }
  return { ok: true, parts }
}

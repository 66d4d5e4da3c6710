import type { IncomingMessage } from 'node:http'

/** A request body went past the limit the caller set. */
export class BodyTooLarge extends Error {
  override readonly name = 'BodyTooLarge'
}

/** Reads a whole request body, refusing (and draining) one larger than `limitBytes`. */
export function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limitBytes) {
        req.removeAllListeners('data')
        req.resume()
        reject(new BodyTooLarge(`request body larger than ${limitBytes} bytes`))
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks, size)))
    req.on('error', reject)
  })
}

/** The decoded path of a request URL. aiohttp routes on the decoded path, so `/prom%70t` is `/prompt` there too. */
export function pathOf(url: string | undefined): string {
  const raw = (url ?? '/').split('?', 1)[0]!
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

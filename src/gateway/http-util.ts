import type { IncomingMessage } from 'node:http'
import { canonicalTarget } from './request-target.js'

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

/**
 * The path of a request URL as aiohttp's router reads it (see {@link canonicalTarget}); the raw path when it
 * cannot be canonicalised (the gateway refuses those before anything looks at them).
 */
export function pathOf(url: string | undefined): string {
  const t = canonicalTarget(url)
  return t.ok ? t.path : (url ?? '/').split('?', 1)[0]!
}

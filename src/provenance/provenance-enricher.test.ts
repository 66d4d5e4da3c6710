import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createOutputHasher } from './provenance-enricher.js'

let server: Server | undefined
const seen: string[] = []

afterEach(async () => {
  seen.length = 0
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()))
  server = undefined
})

/** A ComfyUI stand-in that answers only under `/comfy/`, as behind a reverse proxy with a path prefix. */
async function mountedUnderPrefix(
  handle: (path: string, req: IncomingMessage, res: ServerResponse) => void,
): Promise<string> {
  server = createServer((req, res) => {
    seen.push(req.url ?? '')
    const url = req.url ?? '/'
    if (!url.startsWith('/comfy/')) res.writeHead(404).end('not here')
    else handle(url.slice('/comfy'.length), req, res)
  })
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/comfy/`
}

describe('createOutputHasher', () => {
  it('streams /view from under the prefix of the ComfyUI URL', async () => {
    const body = Buffer.from('not a png, just bytes')
    const base = await mountedUnderPrefix((path, _req, res) => {
      if (path.startsWith('/view?')) res.end(body)
      else res.writeHead(404).end()
    })
    const digest = await createOutputHasher({ comfyUrl: base }).hash({
      type: 'output',
      subfolder: 'a b',
      filename: 'x.png',
    })
    expect(digest.bytes).toBe(body.length)
    expect(seen).toEqual(['/comfy/view?filename=x.png&subfolder=a+b&type=output'])
  })
})

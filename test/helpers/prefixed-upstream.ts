/**
 * A ComfyUI stand-in that answers only under `/comfy/`, as behind a reverse proxy with a path prefix: for
 * tests that the base URL's prefix survives every request. It records each request's path in `seen`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface PrefixedUpstream {
  /** The base URL, ending in `/comfy/`. */
  readonly url: string
  /** Every request target the server got, prefix included. */
  readonly seen: string[]
  /** The server itself, for tests that take it down under a client. */
  readonly server: Server
  close(): Promise<void>
}

export async function mountedUnderPrefix(
  handle: (path: string, req: IncomingMessage, res: ServerResponse) => void,
): Promise<PrefixedUpstream> {
  const seen: string[] = []
  const server: Server = createServer((req, res) => {
    seen.push(req.url ?? '')
    const url = req.url ?? '/'
    if (!url.startsWith('/comfy/')) res.writeHead(404).end('not here')
    else handle(url.slice('/comfy'.length), req, res)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/comfy/`,
    seen,
    server,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

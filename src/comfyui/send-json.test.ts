/**
 * The one JSON answer comfy-audit writes itself, over a response and over a raw upgrade socket: the same
 * headers, an exact content-length, and the body byte for byte.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { sendJson, sendJsonOnSocket } from './send-json.js'

const servers: http.Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
})

async function listen(server: http.Server): Promise<number> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** Sends an upgrade request on a raw socket and reads everything until the server closes it. */
function rawUpgrade(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () =>
      socket.write(
        'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      ),
    )
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
  })
}

const EXPECTED_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
}

describe('sendJson', () => {
  it('answers with the JSON headers, an exact length and the extra headers', async () => {
    const body = '{"error": "caf\u00e9"}'
    const port = await listen(
      http.createServer((_req, res) => sendJson(res, 409, body, { 'Retry-After': '5' })),
    )
    const res = await fetch(`http://127.0.0.1:${port}/`)
    expect(res.status).toBe(409)
    for (const [name, value] of Object.entries(EXPECTED_HEADERS)) expect(res.headers.get(name)).toBe(value)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(body)))
    expect(await res.text()).toBe(body)
  })
})

describe('sendJsonOnSocket', () => {
  it('writes the same answer on an upgrade socket, then closes it', async () => {
    const body = '{"error":"cross-site WebSocket refus\u00e9"}'
    const server = http.createServer()
    server.on('upgrade', (_req, socket) => sendJsonOnSocket(socket, 403, body))
    const text = await rawUpgrade(await listen(server))
    const [head, received] = text.split('\r\n\r\n')
    const [statusLine, ...lines] = head!.split('\r\n')
    expect(statusLine).toBe('HTTP/1.1 403 Forbidden')
    const headers = Object.fromEntries(
      lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]),
    )
    expect(headers).toEqual({
      ...EXPECTED_HEADERS,
      'content-length': String(Buffer.byteLength(body)),
      connection: 'close',
    })
    expect(received).toBe(body)
  })
})

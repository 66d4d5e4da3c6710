import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { afterEach, expect, it } from 'vitest'
import { createGateway } from './create-gateway.js'
import { createRecordingTap } from './recording-tap.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

/** How an upstream connection ended: the gateway sent FIN first (`client`), or the server's idle timer fired. */
function howItEnds(socket: Socket): Promise<'client' | 'server'> {
  return new Promise((resolve) => {
    socket.once('end', () => resolve('client'))
    socket.once('timeout', () => resolve('server'))
  })
}

it('closes an idle kept-alive upstream socket before the Keep-Alive timeout ComfyUI announced', async () => {
  // A request sent on a socket the server is just closing fails with "socket hang up" (a 503 to the client),
  // so the gateway must let an idle socket go first. Node announces `Keep-Alive: timeout=3` for this server.
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/ws')) res.writeHead(404)
    res.end('ok')
  })
  server.keepAliveTimeout = 3000
  const ended: Promise<'client' | 'server'>[] = []
  server.on('connection', (socket: Socket) => ended.push(howItEnds(socket)))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())))
  server.unref()
  const upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const gw = await createGateway({ upstreamUrl, port: 0, tap: createRecordingTap() })
  cleanups.push(() => gw.close({ drainMillis: 100 }))

  const before = ended.length
  const answer = await fetch(`http://127.0.0.1:${gw.port}/system_stats`)
  expect(await answer.text()).toBe('ok')
  expect(answer.status).toBe(200)
  const proxied = ended.slice(before)
  expect(proxied.length).toBeGreaterThan(0)
  expect(await Promise.all(proxied)).toEqual(proxied.map(() => 'client'))
})

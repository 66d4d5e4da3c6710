import { describe, expect, it } from 'vitest'
import { isLoopbackHost, originMatchesHost } from './forward-headers.js'
import { backoffDelay } from './upstream-socket.js'
import { namespacedClientId, noClientId, parseClientId, generateSocketId } from './client-ids.js'

describe('originMatchesHost', () => {
  it.each([
    ['localhost:8189', 'http://localhost:8189', true],
    ['localhost:8189', 'http://localhost', true], // a side without a port compares host names only
    ['localhost', 'http://localhost:3000', true],
    ['localhost:8189', 'http://localhost:3000', false],
    ['127.0.0.1:8189', 'http://evil.example:8189', false],
    ['[::1]:8189', 'http://[::1]:8189', true],
    ['LOCALHOST:8189', 'http://localhost:8189', true],
    ['localhost:8189', 'null', false],
  ])('Host %s with Origin %s → %s', (host, origin, expected) => {
    expect(originMatchesHost(host, origin)).toBe(expected)
  })
})

describe('isLoopbackHost', () => {
  it.each([
    ['localhost:1', true],
    ['127.0.0.1', true],
    ['[::1]:8188', true],
    ['comfy.studio.example', false],
    ['10.0.0.2:8188', false],
  ])('%s → %s', (host, expected) => expect(isLoopbackHost(host)).toBe(expected))
})

describe('backoffDelay', () => {
  it('grows exponentially up to the cap and takes jitter off', () => {
    const opts = { initialDelayMillis: 100, maxDelayMillis: 1000, factor: 2, jitter: 0.5 }
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, opts, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ])
    expect(backoffDelay(2, opts, () => 0.999999)).toBe(200)
  })
})

describe('client ids', () => {
  it('namespaces per user and keeps no-client ids apart from any downstream id', () => {
    const a = namespacedClientId('alice', 'tab1')
    expect(a).toMatch(/^u-[0-9a-f]{12}~tab1$/)
    expect(namespacedClientId('bob', 'tab1')).not.toBe(a)
    expect(parseClientId(a)).toEqual({ kind: 'client', downstreamId: 'tab1' })
    expect(parseClientId(noClientId('alice'))).toEqual({ kind: 'noclient', downstreamId: null })
    expect(parseClientId('someone-else')).toEqual({ kind: 'foreign' })
    expect(generateSocketId()).toMatch(/^[0-9a-f]{32}$/)
  })
})

import { describe, expect, it } from 'vitest'
import { addressBytes, addressInRanges, isLoopbackListenHost, parseRange } from './address-match.js'

describe('address matching', () => {
  it.each([
    ['10.1.2.3', '10.0.0.0/8', true],
    ['11.1.2.3', '10.0.0.0/8', false],
    ['::ffff:10.1.2.3', '10.0.0.0/8', true],
    ['192.168.1.7', '192.168.1.7', true],
    ['192.168.1.8', '192.168.1.7', false],
    ['192.168.1.8', '192.168.1.0/28', true],
    ['192.168.1.8', '192.168.1.0/29', false],
    ['192.168.1.9', '192.168.1.8/31', true],
    ['192.168.1.10', '192.168.1.8/31', false],
    ['::1', '::1', true],
    ['::2', '::1', false],
    ['fd12:3456::1', 'fd00::/8', true],
    ['fe80::1', 'fd00::/8', false],
    ['1.2.3.4', '0.0.0.0/0', true],
    ['::1', '0.0.0.0/0', false],
    ['not-an-ip', '0.0.0.0/0', false],
  ])('%s in %s is %s', (address, range, expected) => {
    expect(addressInRanges(address, [parseRange(range)])).toBe(expected)
  })

  it('refuses malformed ranges, naming them', () => {
    expect(() => parseRange('10.0.0.0/33')).toThrow(/10.0.0.0\/33/)
    expect(() => parseRange('300.1.1.1')).toThrow()
    expect(() => parseRange('host.example')).toThrow()
  })

  it('reads IPv6 with embedded IPv4 and zone ids', () => {
    expect(addressBytes('::ffff:127.0.0.1')).toEqual(new Uint8Array([127, 0, 0, 1]))
    expect(addressBytes('fe80::1%eth0')?.length).toBe(16)
  })

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.0.10', false],
  ])('listen host %s is loopback: %s', (host, expected) => {
    expect(isLoopbackListenHost(host)).toBe(expected)
  })
})

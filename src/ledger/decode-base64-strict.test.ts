import { describe, expect, it } from 'vitest'
import { decodeBase64Strict } from './decode-base64-strict.js'

describe('decodeBase64Strict', () => {
  it.each([
    ['', ''],
    ['AA==', '00'],
    ['AAA=', '0000'],
    ['AAAA', '000000'],
    ['+/+/', 'fbffbf'],
  ])('decodes canonical base64 %j', (text, hex) => {
    expect(decodeBase64Strict(text)?.toString('hex')).toBe(hex)
  })

  it.each(['AA', 'AA=', 'A===', 'AB==', 'AAB=', 'AA==AA==', ' AAAA', 'AAAA\n', '-_-_', 'AA=A', 'A'])(
    'refuses %j, which Buffer.from would accept or decode ambiguously',
    (text) => {
      expect(decodeBase64Strict(text)).toBeNull()
    },
  )
})

import { describe, expect, it } from 'vitest'
import { formatCheckpoint, parseCheckpoint, signCheckpoint, verifyCheckpoint } from './checkpoint.js'
import type { Checkpoint } from './checkpoint.js'
import { leafHash, rootFromLeafHashes } from './merkle.js'
import { generateKey, parseSignerKey, signNote } from './signed-note.js'
import type { NoteSigner } from './signed-note.js'

const ORIGIN = 'comfy-audit/host-a'
const root = rootFromLeafHashes(['{"seq":0}', '{"seq":1}', '{"seq":2}'].map((s) => leafHash(s)))
const cp: Checkpoint = { origin: ORIGIN, size: 3, rootHash: root, extensions: [] }

function newSigner(name = ORIGIN): NoteSigner {
  const r = parseSignerKey(generateKey(name).signerKey)
  if (!r.ok) throw new Error(r.reason)
  return r.value
}

describe('checkpoint body', () => {
  it('writes origin, decimal size and base64 root, one per line', () => {
    expect(formatCheckpoint(cp)).toBe(`${ORIGIN}\n3\n${root.toString('base64')}\n`)
    expect(formatCheckpoint({ ...cp, size: 0, extensions: ['ext one', 'ext two'] })).toBe(
      `${ORIGIN}\n0\n${root.toString('base64')}\next one\next two\n`,
    )
  })

  it('parses what it writes, extensions included', () => {
    const withExt = { ...cp, size: 9007199254740991, extensions: ['— other line'] }
    expect(parseCheckpoint(formatCheckpoint(withExt))).toEqual({ ok: true, value: withExt })
    const slashy = { ...cp, rootHash: Buffer.alloc(32, 0xfb) }
    expect(formatCheckpoint(slashy)).toContain('+/v7')
    expect(parseCheckpoint(formatCheckpoint(slashy))).toEqual({ ok: true, value: slashy })
  })

  it('parses the C2SP tlog-checkpoint example body', () => {
    const body = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n'
    const r = parseCheckpoint(body)
    expect(r).toMatchObject({ ok: true, value: { origin: 'example.com/behind-the-sofa', size: 20852163 } })
    if (r.ok) expect(r.value.rootHash.toString('base64')).toBe('CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=')
  })

  const good = formatCheckpoint(cp)
  const b64 = root.toString('base64')
  it.each([
    ['no final newline', good.slice(0, -1)],
    ['two lines only', `${ORIGIN}\n3\n`],
    ['an empty origin', `\n3\n${b64}\n`],
    ['a leading zero in the size', `${ORIGIN}\n03\n${b64}\n`],
    ['a signed size', `${ORIGIN}\n+3\n${b64}\n`],
    ['a hex size', `${ORIGIN}\n0x3\n${b64}\n`],
    ['a size beyond 2^53', `${ORIGIN}\n18446744073709551615\n${b64}\n`],
    ['unpadded base64', `${ORIGIN}\n3\n${b64.replace(/=$/, '')}\n`],
    ['url-safe base64', `${ORIGIN}\n3\n${Buffer.alloc(32, 0xfb).toString('base64url')}=\n`],
    ['a 31-byte root', `${ORIGIN}\n3\n${root.subarray(1).toString('base64')}\n`],
    ['an empty extension line', `${good}\n`],
    ['a carriage return', `${ORIGIN}\r\n3\n${b64}\n`],
    ['trailing space on the size', `${ORIGIN}\n3 \n${b64}\n`],
  ])('rejects a body with %s', (_what, text) => {
    expect(parseCheckpoint(text).ok).toBe(false)
  })

  it('refuses to write an impossible checkpoint', () => {
    expect(() => formatCheckpoint({ ...cp, origin: 'a\nb' })).toThrow(TypeError)
    expect(() => formatCheckpoint({ ...cp, size: -1 })).toThrow(TypeError)
    expect(() => formatCheckpoint({ ...cp, rootHash: Buffer.alloc(20) })).toThrow(TypeError)
    expect(() => formatCheckpoint({ ...cp, extensions: [''] })).toThrow(TypeError)
  })
})

describe('signed checkpoints', () => {
  const signer = newSigner()

  it('verifies a checkpoint signed by the log key and returns its contents', () => {
    const note = signCheckpoint(cp, signer)
    expect(verifyCheckpoint(note, signer.verifierKey, ORIGIN)).toEqual({ ok: true, value: cp })
    expect(verifyCheckpoint(note, signer.verifierKey)).toEqual({ ok: true, value: cp })
  })

  it('rejects a checkpoint whose size or root was changed after signing', () => {
    const note = signCheckpoint(cp, signer)
    expect(verifyCheckpoint(note.replace('\n3\n', '\n4\n'), signer.verifierKey).ok).toBe(false)
    const otherRoot = Buffer.from(root)
    otherRoot[0] = (otherRoot[0] as number) ^ 0x80
    const swapped = note.replace(root.toString('base64'), otherRoot.toString('base64'))
    expect(verifyCheckpoint(swapped, signer.verifierKey).ok).toBe(false)
  })

  it('rejects a checkpoint signed by another key', () => {
    const note = signCheckpoint(cp, newSigner())
    expect(verifyCheckpoint(note, signer.verifierKey)).toMatchObject({ ok: false, reason: /no signature/ })
  })

  it('rejects a validly signed checkpoint of another origin', () => {
    const other = newSigner('comfy-audit/host-b')
    const note = signCheckpoint({ ...cp, origin: 'comfy-audit/host-b' }, other)
    expect(verifyCheckpoint(note, other.verifierKey, ORIGIN)).toMatchObject({ ok: false, reason: /origin/ })
  })

  it('rejects a validly signed note that is not a checkpoint', () => {
    const note = signNote('hello\n', signer)
    expect(verifyCheckpoint(note, signer.verifierKey)).toMatchObject({
      ok: false,
      reason: /origin, size and root/,
    })
  })
})

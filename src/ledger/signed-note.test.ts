import { describe, expect, it } from 'vitest'
import {
  ed25519KeyId,
  generateKey,
  isValidKeyName,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  verifyNote,
} from './signed-note.js'
import type { NoteSigner } from './signed-note.js'

// Known answers, used as data: the example key and note of golang.org/x/mod/sumdb/note's documentation,
// and the verifier key example of https://c2sp.org/signed-note. Ed25519 is deterministic, so signing the
// same text with the same key must reproduce the signature byte for byte.
const GO_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz'
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'
const GO_TEXT =
  "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
const GO_SIG_LINE =
  '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n'
const GO_NOTE = GO_TEXT + '\n' + GO_SIG_LINE
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k'
const SPEC_NOTE =
  'This is an example message.\n\n' +
  '\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n'

function signer(skey: string): NoteSigner {
  const r = parseSignerKey(skey)
  if (!r.ok) throw new Error(r.reason)
  return r.value
}

describe('signed notes: reference vectors', () => {
  it('reproduces the Go reference signature and verifier key', () => {
    const s = signer(GO_SKEY)
    expect(s.name).toBe('PeterNeumann')
    expect(s.keyId).toBe(0xc74f20a3)
    expect(s.verifierKey).toBe(GO_VKEY)
    expect(signNote(GO_TEXT, s)).toBe(GO_NOTE)
  })

  it('verifies the Go reference note and the spec example', () => {
    expect(verifyNote(GO_NOTE, GO_VKEY)).toEqual({ ok: true, text: GO_TEXT })
    expect(verifyNote(SPEC_NOTE, SPEC_VKEY)).toEqual({ ok: true, text: 'This is an example message.\n' })
  })

  it('computes key IDs as SHA-256(name || 0x0A || 0x01 || key)[:4]', () => {
    const v = parseVerifierKey(SPEC_VKEY)
    if (!v.ok) throw new Error(v.reason)
    expect(ed25519KeyId('example.com/foo', v.value.publicKey)).toBe(0x530d903a)
  })
})

describe('signed notes: generated keys', () => {
  const { signerKey, verifierKey } = generateKey('comfy-audit/host-a')
  const s = signer(signerKey)
  const text = 'comfy-audit/host-a\n7\nAAAA\n'

  it('encodes keys in the documented formats', () => {
    expect(signerKey).toMatch(/^PRIVATE\+KEY\+comfy-audit\/host-a\+[0-9a-f]{8}\+A[Q-Za-f][A-Za-z0-9+/]{42}$/)
    expect(verifierKey).toMatch(/^comfy-audit\/host-a\+[0-9a-f]{8}\+A[Q-Za-f][A-Za-z0-9+/]{42}$/)
    expect(s.verifierKey).toBe(verifierKey)
    expect(verifierKey.split('+')[1]).toBe(signerKey.split('+')[3])
  })

  it('signs a note that its verifier key accepts', () => {
    const note = signNote(text, s)
    expect(note.startsWith(text + '\n\u2014 comfy-audit/host-a ')).toBe(true)
    expect(verifyNote(note, verifierKey)).toEqual({ ok: true, text })
  })

  it('rejects a note whose text was altered by one character', () => {
    const note = signNote(text, s)
    expect(verifyNote(note.replace('\n7\n', '\n8\n'), verifierKey)).toMatchObject({
      ok: false,
      reason: /invalid signature/,
    })
  })

  it('rejects a note whose signature was altered', () => {
    const note = signNote(text, s)
    const line = note.slice(note.lastIndexOf('\u2014'))
    const sig = Buffer.from(line.split(' ')[2] as string, 'base64')
    sig[10] = (sig[10] as number) ^ 1
    const forged = note.replace(line, `\u2014 comfy-audit/host-a ${sig.toString('base64')}\n`)
    expect(verifyNote(forged, verifierKey)).toMatchObject({ ok: false, reason: /invalid signature/ })
  })

  it('rejects a note signed by another key of the same name', () => {
    const other = signer(generateKey('comfy-audit/host-a').signerKey)
    expect(verifyNote(signNote(text, other), verifierKey)).toMatchObject({
      ok: false,
      reason: /no signature by/,
    })
  })

  it('ignores signatures by unknown keys and accepts the known one among them', () => {
    const other = signer(generateKey('witness.example').signerKey)
    const note = signNote(text, [other, s])
    expect(verifyNote(note, verifierKey)).toEqual({ ok: true, text })
    expect(verifyNote(signNote(text, other), verifierKey).ok).toBe(false)
  })

  it.each([
    ['no blank line', (n: string) => n.replace('\n\n', '\n')],
    ['no final newline', (n: string) => n.slice(0, -1)],
    ['a hyphen instead of an em dash', (n: string) => n.replace('\u2014', '-')],
    ['non-canonical base64', (n: string) => n.replace(/=\n$/, '\n')],
    ['a short signature', (n: string) => n.replace(/ [^ ]+\n$/, ' AAAA\n')],
    ['an empty signature line', (n: string) => n + '\n'],
    ['a control character in the text', (n: string) => n.replace('7', '7\r')],
    ['an empty signature block', (n: string) => n.slice(0, n.indexOf('\u2014'))],
  ])('rejects a malformed note: %s', (_name, mutate) => {
    const note = signNote(text, s)
    expect(verifyNote(note, verifierKey).ok).toBe(true)
    expect(verifyNote(mutate(note), verifierKey).ok).toBe(false)
  })

  it('refuses to sign text that is not a valid note text', () => {
    expect(() => signNote('no newline', s)).toThrow(/end with a newline/)
    expect(() => signNote('tab\there\n', s)).toThrow(/control character/)
    expect(() => signNote('lone \ud800\n', s)).toThrow(/well-formed/)
  })
})

describe('key strings', () => {
  it.each(['', 'a b', 'a+b', 'tab\t', 'nbsp\u00a0x', 'lone\ud800'])('refuses the key name %j', (name) => {
    expect(isValidKeyName(name)).toBe(false)
    expect(() => generateKey(name)).toThrow(TypeError)
  })

  it('accepts URL-like and non-ASCII key names', () => {
    expect(isValidKeyName('comfy-audit/host-a')).toBe(true)
    expect(isValidKeyName('studio.example/日本')).toBe(true)
  })

  it.each([
    ['a wrong key ID', GO_VKEY.replace('c74f20a3', 'c74f20a4'), /key ID does not match/],
    ['an upper-case key ID', GO_VKEY.replace('c74f20a3', 'C74F20A3'), /8 lower-case hex/],
    ['another algorithm', 'PeterNeumann+c74f20a3+Alpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', /algorithm/],
    ['a short key', 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10', /33 bytes/],
    ['missing parts', 'PeterNeumann+c74f20a3', /form/],
    ['another name', GO_VKEY.replace('PeterNeumann', 'PeterNeumanm'), /key ID does not match/],
  ])('refuses a verifier key with %s', (_what, key, reason) => {
    expect(parseVerifierKey(key)).toMatchObject({ ok: false, reason })
    expect(verifyNote(GO_NOTE, key)).toMatchObject({ ok: false, reason })
  })

  it.each([
    ['a wrong key ID', GO_SKEY.replace('c74f20a3', '00000000'), /key ID does not match/],
    ['no PRIVATE+KEY prefix', GO_SKEY.replace('PRIVATE+KEY+', ''), /form/],
    ['a truncated seed', GO_SKEY.slice(0, -4), /33 bytes/],
  ])('refuses a signer key with %s', (_what, key, reason) => {
    expect(parseSignerKey(key)).toMatchObject({ ok: false, reason })
  })
})

/**
 * The C2SP signed-note format with Ed25519 keys: https://c2sp.org/signed-note
 * (the format of golang.org/x/mod/sumdb/note, used by Go's checksum database and transparency logs).
 *
 * A note is UTF-8 text ending in a newline, then a blank line, then one signature line per signer:
 *
 *     <text, one or more lines, each ending in \n>
 *     \n
 *     — <key name> <base64(key ID (4 bytes, big-endian) || Ed25519 signature (64 bytes))>\n
 *
 * The signature line starts with an em dash (U+2014) and a space. The signed message is the text only
 * (including its final newline). Key names are non-empty and contain neither Unicode spaces nor `+`.
 * Key ID = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4], where 0x01 is the Ed25519 type.
 *
 * Key encodings (as in x/mod/sumdb/note):
 *   verifier key: `<name>+<key ID as 8 hex digits>+<base64(0x01 || public key)>`
 *   signer key:   `PRIVATE+KEY+<name>+<key ID as 8 hex digits>+<base64(0x01 || 32-byte Ed25519 seed)>`
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { decodeBase64Strict } from './decode-base64-strict.js'

/** Outcome of parsing a key. */
type KeyParseResult<T> = { ok: true; value: T } | { ok: false; reason: string }

/** Outcome of {@link verifyNote}: the signed text (with its final newline), or why it was refused. */
type NoteVerifyResult = { ok: true; text: string } | { ok: false; reason: string }

/** Signs note texts under a key name. Holds the private key; never serialises it. */
export interface NoteSigner {
  /** The key name, e.g. the log origin `comfy-audit/host-a`. */
  readonly name: string
  /** The 32-bit key ID (see module comment). */
  readonly keyId: number
  /** The verifier key string to hand to auditors. */
  readonly verifierKey: string
  /** Ed25519 signature (64 bytes) of a message. */
  sign(message: Buffer): Buffer
}

/** A parsed verifier key. */
export interface NoteVerifier {
  readonly name: string
  readonly keyId: number
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Buffer
  verify(message: Buffer, signature: Buffer): boolean
}

const ALG_ED25519 = 0x01
const SIG_PREFIX = '\u2014 '
/** Notes larger than this are refused before any parsing, as x/mod/sumdb/note does. */
const MAX_NOTE_BYTES = 1_000_000
/** More signature lines than this are refused (x/mod/sumdb/note's limit). */
const MAX_SIGNATURES = 100

// DER prefixes that wrap a raw Ed25519 key (RFC 8410) so node:crypto can import it.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** Whether `name` is a valid key name: non-empty, no Unicode white space, no `+`, well-formed UTF-16. */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !/\p{Cs}/u.test(name) && !/[\p{Cc}]/u.test(name)
}

/** Text a note may carry: well-formed, no control characters but newline, ending with a newline. */
function textProblem(text: string): string | null {
  if (!text.endsWith('\n')) return 'note text must end with a newline'
  if (/\p{Cs}/u.test(text)) return 'note text is not well-formed Unicode'
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f\u007f]/.test(text)) return 'note text contains a control character'
  return null
}

/** Key ID of an Ed25519 key per the signed-note spec. */
export function ed25519KeyId(name: string, publicKey: Buffer): number {
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.from([0x0a, ALG_ED25519]))
    .update(publicKey)
    .digest()
    .readUInt32BE(0)
}

function hexId(id: number): string {
  return id.toString(16).padStart(8, '0')
}

function publicKeyObject(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' })
}

function makeVerifier(name: string, publicKey: Buffer): NoteVerifier {
  const key = publicKeyObject(publicKey)
  return {
    name,
    keyId: ed25519KeyId(name, publicKey),
    publicKey,
    verify: (message, signature) => signature.length === 64 && verify(null, message, key, signature),
  }
}

function verifierKeyString(name: string, publicKey: Buffer): string {
  const encoded = Buffer.concat([Buffer.from([ALG_ED25519]), publicKey]).toString('base64')
  return `${name}+${hexId(ed25519KeyId(name, publicKey))}+${encoded}`
}

/**
 * Generates a new Ed25519 key pair for `name` and returns its two encodings.
 * Throws for an invalid key name.
 */
export function generateKey(name: string): { signerKey: string; verifierKey: string } {
  if (!isValidKeyName(name)) throw new TypeError(`generateKey: invalid key name ${JSON.stringify(name)}`)
  const { privateKey } = generateKeyPairSync('ed25519')
  const der = privateKey.export({ format: 'der', type: 'pkcs8' })
  const seed = der.subarray(der.length - 32)
  const publicKey = rawPublicKey(privateKey)
  const id = hexId(ed25519KeyId(name, publicKey))
  const encodedSeed = Buffer.concat([Buffer.from([ALG_ED25519]), seed]).toString('base64')
  return {
    signerKey: `PRIVATE+KEY+${name}+${id}+${encodedSeed}`,
    verifierKey: verifierKeyString(name, publicKey),
  }
}

function rawPublicKey(privateKey: KeyObject): Buffer {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return spki.subarray(spki.length - 32)
}

/** Splits at the first `n - 1` plus signs only: the base64 part may itself contain `+`. */
function splitN(s: string, n: number): string[] {
  const parts: string[] = []
  let rest = s
  while (parts.length < n - 1) {
    const at = rest.indexOf('+')
    if (at < 0) break
    parts.push(rest.slice(0, at))
    rest = rest.slice(at + 1)
  }
  parts.push(rest)
  return parts
}

/** Checks the parts of `<name>+<hex id>+<base64(0x01 || 32 bytes)>`. */
function parseKeyParts(
  parts: string[],
  what: string,
): { ok: true; name: string; id: number; raw: Buffer } | { ok: false; reason: string } {
  const [name, id, data] = parts as [string, string, string]
  if (parts.length !== 3) return { ok: false, reason: `${what} must have the form name+hexid+base64` }
  if (!isValidKeyName(name)) return { ok: false, reason: `${what} has an invalid key name` }
  if (!/^[0-9a-f]{8}$/.test(id))
    return { ok: false, reason: `${what} key ID must be 8 lower-case hex digits` }
  const bytes = decodeBase64Strict(data)
  if (!bytes || bytes.length !== 33)
    return { ok: false, reason: `${what} key data must be base64 of 33 bytes` }
  if (bytes[0] !== ALG_ED25519) return { ok: false, reason: `${what} uses unsupported algorithm ${bytes[0]}` }
  return { ok: true, name, id: Number.parseInt(id, 16), raw: bytes.subarray(1) }
}

/** Parses a verifier key string; refuses a key ID that does not match the name and key. */
export function parseVerifierKey(verifierKey: string): KeyParseResult<NoteVerifier> {
  const p = parseKeyParts(splitN(verifierKey, 3), 'verifier key')
  if (!p.ok) return p
  let verifier: NoteVerifier
  try {
    verifier = makeVerifier(p.name, Buffer.from(p.raw))
  } catch {
    return { ok: false, reason: 'verifier key is not a valid Ed25519 public key' }
  }
  if (verifier.keyId !== p.id) return { ok: false, reason: 'verifier key ID does not match its name and key' }
  return { ok: true, value: verifier }
}

/** Parses a `PRIVATE+KEY+...` signer key string; refuses a key ID that does not match. */
export function parseSignerKey(signerKey: string): KeyParseResult<NoteSigner> {
  const parts = splitN(signerKey, 5)
  if (parts.length !== 5 || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') {
    return { ok: false, reason: 'signer key must have the form PRIVATE+KEY+name+hexid+base64' }
  }
  const p = parseKeyParts(parts.slice(2), 'signer key')
  if (!p.ok) return p
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, p.raw]),
    format: 'der',
    type: 'pkcs8',
  })
  const publicKey = rawPublicKey(privateKey)
  const keyId = ed25519KeyId(p.name, publicKey)
  if (keyId !== p.id) return { ok: false, reason: 'signer key ID does not match its name and key' }
  const name = p.name
  return {
    ok: true,
    value: {
      name,
      keyId,
      verifierKey: verifierKeyString(name, publicKey),
      sign: (message) => sign(null, message, privateKey),
    },
  }
}

/**
 * Signs `text` (which must end with a newline and hold no control characters but newlines) with one or
 * more signers, returning the complete note. Throws on invalid text, which is a caller bug.
 *
 * @example
 * const note = signNote('comfy-audit/host-a\n42\n' + root + '\n', signer)
 */
export function signNote(text: string, signers: NoteSigner | readonly NoteSigner[]): string {
  const problem = textProblem(text)
  if (problem) throw new TypeError(`signNote: ${problem}`)
  const message = Buffer.from(text, 'utf8')
  let out = text + '\n'
  for (const s of Array.isArray(signers) ? signers : [signers]) {
    const id = Buffer.alloc(4)
    id.writeUInt32BE(s.keyId)
    out += `${SIG_PREFIX}${s.name} ${Buffer.concat([id, s.sign(message)]).toString('base64')}\n`
  }
  return out
}

/**
 * Verifies a note against one verifier key. Signatures by other keys are ignored, as the spec requires;
 * the note is accepted when a signature by this key (same name and key ID) verifies, and refused when one
 * does not, when none is present, or when the note is malformed.
 */
export function verifyNote(note: string, verifierKey: string | NoteVerifier): NoteVerifyResult {
  let verifier: NoteVerifier
  if (typeof verifierKey === 'string') {
    const parsed = parseVerifierKey(verifierKey)
    if (!parsed.ok) return parsed
    verifier = parsed.value
  } else {
    verifier = verifierKey
  }
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) return { ok: false, reason: 'note is too large' }
  // Signature lines are never blank, so the last blank line is the separator (the text may hold others).
  const split = note.lastIndexOf('\n\n')
  if (split < 0) return { ok: false, reason: 'malformed note: no blank line before the signatures' }
  const text = note.slice(0, split + 1)
  const sigBlock = note.slice(split + 2)
  const problem = textProblem(text)
  if (problem) return { ok: false, reason: `malformed note: ${problem}` }
  if (sigBlock.length === 0 || !sigBlock.endsWith('\n')) {
    return { ok: false, reason: 'malformed note: signature block missing or not newline-terminated' }
  }
  const lines = sigBlock.slice(0, -1).split('\n')
  if (lines.length > MAX_SIGNATURES) return { ok: false, reason: 'malformed note: too many signatures' }
  const message = Buffer.from(text, 'utf8')
  let verified = false
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX))
      return { ok: false, reason: 'malformed note: signature line without "— "' }
    const rest = line.slice(SIG_PREFIX.length)
    const space = rest.indexOf(' ')
    const name = space < 0 ? rest : rest.slice(0, space)
    const sig = space < 0 ? null : decodeBase64Strict(rest.slice(space + 1))
    if (!isValidKeyName(name) || !sig || sig.length < 5) {
      return { ok: false, reason: 'malformed note: bad signature line' }
    }
    if (name !== verifier.name || sig.readUInt32BE(0) !== verifier.keyId) continue
    if (!verifier.verify(message, sig.subarray(4))) {
      return { ok: false, reason: `invalid signature by ${name}+${hexId(verifier.keyId)}` }
    }
    verified = true
  }
  if (!verified) return { ok: false, reason: `no signature by ${verifier.name}+${hexId(verifier.keyId)}` }
  return { ok: true, text }
}

/**
 * Checkpoints of a transparency log in the C2SP tlog-checkpoint format: https://c2sp.org/tlog-checkpoint
 *
 * The body is the text of a signed note (https://c2sp.org/signed-note):
 *
 *     <origin>\n                      the log's identity, e.g. `comfy-audit/host-a`
 *     <tree size>\n                   ASCII decimal, no leading zeros
 *     <base64 root hash>\n            standard padded base64 of the RFC 9162 root (32 bytes, SHA-256)
 *     [<extension line>\n ...]        optional, non-empty lines
 *
 * The log signs it with its key, whose name should equal the origin.
 */
import { decodeBase64Strict } from './decode-base64-strict.js'
import { HASH_BYTES } from './merkle.js'
import { signNote, verifyNote } from './signed-note.js'
import type { NoteSigner, NoteVerifier } from './signed-note.js'

/** A log's signed statement of its size and root. */
export interface Checkpoint {
  /** Unique identity of the log (first line); also the signing key's name. */
  readonly origin: string
  /** Number of leaves in the tree. */
  readonly size: number
  /** RFC 9162 root hash (32 bytes) of the first `size` leaves. */
  readonly rootHash: Buffer
  /** Extra lines after the root, without their newlines (usually none). */
  readonly extensions: readonly string[]
}

/** Outcome of parsing or verifying a checkpoint. */
type CheckpointResult = { ok: true; value: Checkpoint } | { ok: false; reason: string }

function lineProblem(line: string): string | null {
  if (line.length === 0) return 'is empty'
  if (line.includes('\n')) return 'contains a newline'
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(line)) return 'contains a control character'
  if (/\p{Cs}/u.test(line)) return 'is not well-formed Unicode'
  return null
}

/** Writes a checkpoint body. Throws for a checkpoint that cannot be written, which is a caller bug. */
export function formatCheckpoint(cp: Checkpoint): string {
  const originProblem = lineProblem(cp.origin)
  if (originProblem) throw new TypeError(`formatCheckpoint: origin ${originProblem}`)
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) {
    throw new TypeError(`formatCheckpoint: size must be a non-negative safe integer, got ${cp.size}`)
  }
  if (cp.rootHash.length !== HASH_BYTES)
    throw new TypeError(`formatCheckpoint: root hash must be ${HASH_BYTES} bytes`)
  for (const ext of cp.extensions) {
    const p = lineProblem(ext)
    if (p) throw new TypeError(`formatCheckpoint: extension line ${p}`)
  }
  const lines = [cp.origin, String(cp.size), cp.rootHash.toString('base64'), ...cp.extensions]
  return lines.join('\n') + '\n'
}

/** Parses a checkpoint body strictly: every deviation from the format is refused. */
export function parseCheckpoint(text: string): CheckpointResult {
  if (!text.endsWith('\n')) return { ok: false, reason: 'checkpoint must end with a newline' }
  const lines = text.slice(0, -1).split('\n')
  if (lines.length < 3) return { ok: false, reason: 'checkpoint needs origin, size and root hash lines' }
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]]
  const originProblem = lineProblem(origin)
  if (originProblem) return { ok: false, reason: `origin line ${originProblem}` }
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText))
    return { ok: false, reason: 'tree size must be decimal without leading zeros' }
  const size = Number(sizeText)
  if (!Number.isSafeInteger(size)) return { ok: false, reason: 'tree size is too large' }
  const rootHash = decodeBase64Strict(rootText)
  if (!rootHash) return { ok: false, reason: 'root hash is not standard base64' }
  if (rootHash.length !== HASH_BYTES) return { ok: false, reason: `root hash must be ${HASH_BYTES} bytes` }
  for (const ext of extensions) {
    const p = lineProblem(ext)
    if (p) return { ok: false, reason: `extension line ${p}` }
  }
  return { ok: true, value: { origin, size, rootHash, extensions } }
}

/** Formats and signs a checkpoint, returning the signed note. */
export function signCheckpoint(cp: Checkpoint, signer: NoteSigner): string {
  return signNote(formatCheckpoint(cp), signer)
}

/**
 * Verifies a signed checkpoint note with the log's verifier key and parses its body. With
 * `expectedOrigin`, a checkpoint of another log is refused even when its signature is good.
 */
export function verifyCheckpoint(
  noteText: string,
  verifierKey: string | NoteVerifier,
  expectedOrigin?: string,
): CheckpointResult {
  const note = verifyNote(noteText, verifierKey)
  if (!note.ok) return note
  const cp = parseCheckpoint(note.text)
  if (!cp.ok) return cp
  if (expectedOrigin !== undefined && cp.value.origin !== expectedOrigin) {
    return {
      ok: false,
      reason: `checkpoint origin ${JSON.stringify(cp.value.origin)} is not ${JSON.stringify(expectedOrigin)}`,
    }
  }
  return cp
}

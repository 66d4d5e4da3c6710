/**
 * The gateway's sealed note of who submitted a prompt, carried to ComfyUI inside the prompt itself
 * (`extra_data.comfy_audit`), so that a `prompt.submitted` lost in a crash can be rebuilt from ComfyUI's
 * `/queue` and `/history`, which echo `extra_data` (protocol §2.2, §2.3; issue 10 item 2).
 *
 * Why this shape:
 * - The proxy path cannot wait for the store, so the 200 may reach the client before `prompt.submitted` is
 *   committed. ComfyUI queues the prompt before it answers 200, so what ComfyUI holds is durable enough for
 *   the one thing a crash can lose: the attribution. Sealing is a few microseconds of CPU, no disk.
 * - Sealed, not signed in clear: ComfyUI shows `extra_data` to anyone who reaches it directly, and the
 *   gateway otherwise shows ComfyUI only hashed user names (client-ids.ts). AES-256-GCM both hides the
 *   person and address and authenticates them; the prompt id and origin are authenticated data, so a seal
 *   copied onto another prompt does not open.
 * - The graph is bound by its SHA-256 (canonical JSON, inside the seal): someone who reaches ComfyUI directly
 *   and re-queues a sealed prompt id with another graph gets no attribution for it.
 * - Not in `extra_pnginfo`: that is written into every output PNG (protocol §7.4).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { canonicalJson, keepSpellings, sha256Hex } from '../audit/json.js'
import type { JsonObject, JsonValue, Submitter } from '../audit/types.js'
import { isJsonObject } from '../comfyui/schemas.js'

/** The `extra_data` member the gateway owns; a client's own copy never reaches ComfyUI. */
export const SUBMISSION_SEAL_KEY = 'comfy_audit'

const VERSION = 1
const IV_BYTES = 12
const TAG_BYTES = 16
const DOMAIN = 'comfy-audit/submission-seal/v1'

/** What the gateway knew of a submission when it forwarded it. */
interface SubmissionClaim {
  readonly submitter: Submitter
  /** The namespaced id the prompt runs under upstream. */
  readonly upstream_client_id: string
  /** When the gateway received the prompt (epoch ms): the session's `queued_at`. */
  readonly submitted_at_ms: number
  /**
   * SHA-256 of the canonical JSON of the `prompt` member as forwarded (see {@link promptDigest}); null when
   * the gateway did not digest it (a body too large to digest on the proxy path).
   */
  readonly prompt_digest: string | null
}

/** Result of {@link SubmissionSeal.open}. */
type SealOpenResult =
  | { ok: true; claim: SubmissionClaim }
  /** `absent`: no seal; `foreign`: another origin's; `invalid`: does not open (forged, copied, damaged). */
  | { ok: false; kind: 'absent' | 'foreign' | 'invalid'; reason: string }

/** Seals and opens submission claims with one gateway's key. */
export interface SubmissionSeal {
  readonly origin: string
  /** The JSON text of the `extra_data.comfy_audit` value for `promptId`. */
  seal(promptId: string, claim: SubmissionClaim): string
  /** Opens the `extra_data.comfy_audit` value ComfyUI echoed for `promptId`. Never throws. */
  open(value: JsonValue | undefined, promptId: string): SealOpenResult
}

/**
 * Digest of a prompt graph that survives re-serialisation (ComfyUI echoes the graph through Python's
 * json.dumps): SHA-256 of its RFC 8785 form. Not redacted, so it is only ever stored inside the seal.
 */
export function promptDigest(prompt: JsonValue | undefined): string | null {
  if (prompt === undefined) return null
  try {
    return sha256Hex(canonicalJson(prompt))
  } catch {
    return null
  }
}

/**
 * The 32-byte seal key of a ledger signing key: Ed25519 signatures are deterministic (RFC 8032 §5.1.6) and
 * unpredictable without the private key, so the signature of a fixed, never published message is a secret
 * only the key's holder can recompute. The key thus moves and rotates with the ledger key, without a second
 * key file. Nothing else ever signs this message.
 */
export function sealSecretFromSigner(signer: { sign(message: Buffer): Buffer }): Buffer {
  const ikm = signer.sign(Buffer.from(`${DOMAIN}/key-derivation`, 'utf8'))
  return Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), DOMAIN, 32))
}

function aad(origin: string, promptId: string): Buffer {
  return Buffer.from(`${DOMAIN}\u0000${origin}\u0000${promptId}`, 'utf8')
}

function str(v: JsonValue | undefined): string | null {
  return typeof v === 'string' ? v : null
}

function claimFrom(value: JsonValue): SubmissionClaim | null {
  if (!isJsonObject(value)) return null
  const s = value.submitter
  if (!isJsonObject(s) || typeof s.user !== 'string' || typeof s.auth_method !== 'string') return null
  if (typeof value.upstream_client_id !== 'string' || typeof value.submitted_at_ms !== 'number') return null
  return {
    submitter: {
      user: s.user,
      auth_method: s.auth_method,
      client_address: str(s.client_address),
      user_agent: str(s.user_agent),
      client_id: str(s.client_id),
    },
    upstream_client_id: value.upstream_client_id,
    submitted_at_ms: value.submitted_at_ms,
    prompt_digest: str(value.prompt_digest),
  }
}

/** Creates the seal of the gateway with log origin `origin` and the 32-byte `secret`. */
export function createSubmissionSeal(options: { origin: string; secret: Buffer }): SubmissionSeal {
  const { origin, secret } = options
  if (secret.length !== 32) throw new Error(`submission seal: key must be 32 bytes, got ${secret.length}`)
  return {
    origin,
    seal(promptId, claim) {
      const iv = randomBytes(IV_BYTES)
      const cipher = createCipheriv('aes-256-gcm', secret, iv)
      cipher.setAAD(aad(origin, promptId))
      const plain = Buffer.from(JSON.stringify(claim), 'utf8')
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()])
      return JSON.stringify({ v: VERSION, origin, seal: sealed.toString('base64url') })
    },
    open(value, promptId) {
      if (value === undefined) return { ok: false, kind: 'absent', reason: 'no submission seal' }
      if (!isJsonObject(value) || value.v !== VERSION || typeof value.seal !== 'string') {
        return {
          ok: false,
          kind: 'invalid',
          reason: `${SUBMISSION_SEAL_KEY} is not a version ${VERSION} seal`,
        }
      }
      if (value.origin !== origin) {
        return { ok: false, kind: 'foreign', reason: `sealed by origin ${JSON.stringify(value.origin)}` }
      }
      const bytes = Buffer.from(value.seal, 'base64url')
      if (bytes.length < IV_BYTES + TAG_BYTES) return { ok: false, kind: 'invalid', reason: 'seal too short' }
      try {
        const decipher = createDecipheriv('aes-256-gcm', secret, bytes.subarray(0, IV_BYTES))
        decipher.setAAD(aad(origin, promptId))
        decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES))
        const plain = Buffer.concat([
          decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)),
          decipher.final(),
        ])
        const claim = claimFrom(JSON.parse(plain.toString('utf8')) as JsonValue)
        if (claim === null) return { ok: false, kind: 'invalid', reason: 'seal holds no submission claim' }
        return { ok: true, claim }
      } catch {
        return {
          ok: false,
          kind: 'invalid',
          reason: `seal does not open for prompt ${promptId} with this gateway's key (forged, copied or damaged)`,
        }
      }
    },
  }
}

/** `extra_data` without the gateway's seal (what a session records and a client is shown). */
export function withoutSeal(extraData: JsonValue | null): JsonValue | null {
  if (!isJsonObject(extraData) || !(SUBMISSION_SEAL_KEY in extraData)) return extraData
  const out: JsonObject = {}
  for (const [k, v] of Object.entries(extraData)) if (k !== SUBMISSION_SEAL_KEY) out[k] = v
  // `1.0` stays `1.0` in the stored extra_data (number spellings, see audit/json.ts).
  return keepSpellings(extraData, out)
}

/**
 * API tokens: `id.secret`, both random base64url. Only a scrypt hash of the secret (per-token salt) is
 * stored; the id finds the record without scanning, the secret is checked in constant time.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto'

/** Scrypt cost parameters; stored with each hash so they can be raised later without breaking old tokens. */
export interface ScryptParams {
  /** CPU/memory cost, a power of two (default 2^14: 16 MiB, a few tens of ms). */
  readonly N: number
  readonly r: number
  readonly p: number
}

export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 14, r: 8, p: 1 }

/** A token as stored: never the secret itself. */
interface StoredToken {
  readonly id: string
  /** base64url salt. */
  readonly salt: string
  /** base64url scrypt(secret, salt). */
  readonly hash: string
  readonly N: number
  readonly r: number
  readonly p: number
  /** ISO 8601 UTC. */
  readonly created_at: string
}

const KEY_BYTES = 32
const TOKEN_SHAPE = /^([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/

/** Splits `id.secret`; anything of another shape is not a token. */
export function parseToken(text: string): { id: string; secret: string } | null {
  const m = TOKEN_SHAPE.exec(text.trim())
  return m ? { id: m[1]!, secret: m[2]! } : null
}

function derive(secret: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      secret,
      salt,
      KEY_BYTES,
      { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r },
      (err, key) => (err ? reject(err) : resolve(key)),
    )
  })
}

/** Makes a new token: the text to hand out once, and the record to store. */
export async function issueToken(
  params: ScryptParams = DEFAULT_SCRYPT,
  now: () => number = Date.now,
): Promise<{ token: string; record: StoredToken }> {
  const id = randomBytes(12).toString('base64url')
  const secret = randomBytes(32).toString('base64url')
  const salt = randomBytes(16)
  const key = await derive(secret, salt, params)
  return {
    token: `${id}.${secret}`,
    record: {
      id,
      salt: salt.toString('base64url'),
      hash: key.toString('base64url'),
      N: params.N,
      r: params.r,
      p: params.p,
      created_at: new Date(now()).toISOString(),
    },
  }
}

/** Whether `secret` matches the stored hash (constant-time comparison of the derived keys). */
export async function verifySecret(secret: string, record: StoredToken): Promise<boolean> {
  const expected = Buffer.from(record.hash, 'base64url')
  if (expected.length !== KEY_BYTES) return false
  let key: Buffer
  try {
    key = await derive(secret, Buffer.from(record.salt, 'base64url'), record)
  } catch {
    return false
  }
  return timingSafeEqual(key, expected)
}

/** SHA-256 (hex) of a credential, for in-memory cache keys and stored session ids: never the credential itself. */
export function credentialDigest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

/**
 * Credentials in URLs and request targets: the user-info password and the credential query parameters. The
 * gateway, the access guard and the redaction policy all strip URLs with {@link stripUrlCredentials} before
 * anything is logged or recorded (issue 9 class 4). Linear scans, no backtracking (class 5).
 */

/** The literal that replaces a secret (the same as the redaction policy's). */
const REDACTED = '[REDACTED]'

/**
 * Query parameters that carry a credential, compared case-insensitively: tokens and keys, and the signature
 * and credential parts of presigned URLs (AWS SigV4 `X-Amz-*`, Google `X-Goog-*`, Azure SAS `sig`).
 */
export const CREDENTIAL_QUERY_PARAMS: readonly string[] = [
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'auth',
  'auth_token',
  'api_key',
  'apikey',
  'api-key',
  'key',
  'secret',
  'client_secret',
  'password',
  'passwd',
  'sig',
  'signature',
  'x-amz-signature',
  'x-amz-credential',
  'x-amz-security-token',
  'x-goog-signature',
  'x-goog-credential',
  'awsaccesskeyid',
  'googleaccessid',
]
const CREDENTIAL_PARAMS = new Set(CREDENTIAL_QUERY_PARAMS)

function isSpaceChar(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b
}

/**
 * The password of URL user info (`scheme://user:password@host`, `redis://:password@host`). From each `://`
 * the user info runs to the last `@` before the first `/`, `?`, `#` or space; a `://` inside a run that had no
 * `@` ends at the same place, so the scan resumes there.
 */
export function redactUserInfo(text: string): string {
  const spans: [number, number][] = []
  let from = 0
  for (;;) {
    const sep = text.indexOf('://', from)
    if (sep === -1) break
    const begin = sep + 3
    let i = begin
    let lastAt = -1
    let colon = -1
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 0x2f || c === 0x3f || c === 0x23 || isSpaceChar(c) || c === 0x22 || c === 0x27 || c === 0x3c)
        break
      if (c === 0x40) lastAt = i
      else if (c === 0x3a && colon === -1) colon = i
      i++
    }
    // A user name alone (`ssh://git@host`) is kept; the password is the secret (`user:` may be empty).
    if (lastAt !== -1 && colon !== -1 && colon < lastAt) spans.push([colon + 1, lastAt])
    from = Math.max(i, begin)
  }
  if (spans.length === 0) return text
  const parts: string[] = []
  let kept = 0
  for (const [start, end] of spans) {
    parts.push(text.slice(kept, start), REDACTED)
    kept = end
  }
  parts.push(text.slice(kept))
  return parts.join('')
}

function decodedParamName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' ')).toLowerCase()
  } catch {
    return name.toLowerCase()
  }
}

/**
 * A URL or request target (`/_audit/api/x?token=...`, `redis://:pw@host`) fit for a log or the audit trail:
 * the value of every credential query parameter ({@link CREDENTIAL_QUERY_PARAMS}, names compared after
 * percent-decoding) and the user-info password are replaced by {@link REDACTED}; the rest is kept as sent.
 * This is the one function every URL goes through before it is logged or recorded.
 */
export function stripUrlCredentials(url: string): string {
  const hash = url.indexOf('#')
  const beforeHash = hash === -1 ? url : url.slice(0, hash)
  const q = beforeHash.indexOf('?')
  const head = redactUserInfo(q === -1 ? beforeHash : beforeHash.slice(0, q))
  if (q === -1) return head
  const pairs = beforeHash
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=')
      if (eq === -1) return pair
      return CREDENTIAL_PARAMS.has(decodedParamName(pair.slice(0, eq)))
        ? `${pair.slice(0, eq)}=${REDACTED}`
        : pair
    })
  // A fragment is never sent by a client, so one in a request target is not worth keeping.
  return `${head}?${pairs.join('&')}`
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * Decodes standard, padded base64 (RFC 4648 §4) and refuses anything else. `Buffer.from(s, 'base64')`
 * skips invalid characters and accepts missing padding, so two different strings could decode to the same
 * signature or root; signed formats need one spelling per value.
 */
export function decodeBase64Strict(s: string): Buffer | null {
  if (!BASE64.test(s)) return null
  const bytes = Buffer.from(s, 'base64')
  // Non-zero unused bits in the last character would decode the same as zero bits: refuse them too.
  return bytes.toString('base64') === s ? bytes : null
}

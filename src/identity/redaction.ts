/**
 * The redaction policy applied to everything capture stores or sends (prompt inputs, extra_data, the UI
 * workflow, validation errors, error messages and tracebacks): values under secret-looking keys, secret-
 * looking substrings (API keys, bearer tokens, JWTs, private keys, credentials in URLs, e-mail addresses),
 * and the user names in home-directory paths. A secret is replaced by `[REDACTED]`, never hashed: a hash of a
 * short or guessable secret would let anyone holding the log confirm a guess. Only after that are long
 * values truncated to `{truncated, length, sha256}`.
 */
import { sha256Hex } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import type { Redactor } from '../capture/prompt-analysis.js'
import type { RedactionConfig } from '../config/security-config.js'

/** The literal that replaces a secret (the same as capture's). */
export const REDACTED = '[REDACTED]'

/** Key names (snake, kebab or camel case, with any prefix) whose values are secrets. */
const BUILTIN_KEY =
  /^(?:.*[_-])?(?:api[_-]?key|apikey|token|auth[_-]?token|access[_-]?token|refresh[_-]?token|secret|client[_-]?secret|password|passwd|passphrase|authorization|private[_-]?key|credentials?|access[_-]?key|cookie)$/i
/** camelCase spellings (`openaiApiKey`, `hfToken`). */
const BUILTIN_CAMEL_KEY = /[a-z0-9](?:ApiKey|Token|Secret|Password|AccessKey|PrivateKey)$/

/** Secret-looking substrings, whatever key they sit under (workflow `widgets_values` have no keys). */
const BUILTIN_VALUES: readonly RegExp[] = [
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
  /\bsk-(?:proj-|ant-(?:api\d+-)?)?[A-Za-z0-9_-]{20,}/g, // OpenAI, Anthropic
  /\bhf_[A-Za-z0-9]{30,}/g, // Hugging Face
  /\bgh[pousr]_[A-Za-z0-9]{36,}/g, // GitHub
  /\bgithub_pat_[A-Za-z0-9_]{22,}/g,
  /\bAKIA[0-9A-Z]{16}\b/g, // AWS access key id
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g, // Slack
  /\bAIza[0-9A-Za-z_-]{35}\b/g, // Google
  /\br8_[A-Za-z0-9]{30,}/g, // Replicate
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, // JWT
  /(?<=\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]{12,}/g,
  /(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g, // comfy-audit tokens
  /(?<=[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:)[^/\s@]+(?=@)/gi, // password in user:password@host
  /(?<=[?&](?:token|api_key|apikey|key|access_token|auth|sig|signature|password)=)[^&#\s"']+/gi,
]

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g
const HOME_POSIX = /(\/(?:home|Users)\/)(?!<redacted>)[^/\s"'`:]+/g
const HOME_WINDOWS = /([A-Za-z]:\\(?:Users|Documents and Settings)\\)(?!<redacted>)[^\\\s"'`:]+/gi

/** A redactor that also cleans free text (log lines, bodies that are not JSON). */
export interface RedactionPolicy extends Redactor {
  /** Applies the value patterns and home-path masking to text. */
  text(value: string): string
}

/**
 * Builds the redactor capture's `redact` option takes.
 *
 * @example
 * createCapture({ ..., redact: createRedactor(config.redaction) })
 */
export function createRedactor(config: RedactionConfig): RedactionPolicy {
  const extraKeys = new Set(config.keys.map((k) => k.toLowerCase()))
  const keyPatterns = config.keyPatterns.map((s) => new RegExp(s, 'u'))
  const valuePatterns = [
    ...(config.builtinPatterns ? BUILTIN_VALUES : []),
    ...config.valuePatterns.map((s) => new RegExp(s, 'gu')),
    ...(config.emails ? [EMAIL] : []),
  ]
  const isSecretKey = (key: string): boolean =>
    (config.builtinPatterns && (BUILTIN_KEY.test(key) || BUILTIN_CAMEL_KEY.test(key))) ||
    extraKeys.has(key.toLowerCase()) ||
    keyPatterns.some((p) => p.test(key))

  const text = (value: string): string => {
    let out = value
    for (const pattern of valuePatterns) {
      pattern.lastIndex = 0
      out = out.replace(pattern, REDACTED)
    }
    if (config.maskHomePaths) {
      out = out.replace(HOME_POSIX, '$1<redacted>').replace(HOME_WINDOWS, '$1<redacted>')
    }
    return out
  }

  const walk = (value: JsonValue): JsonValue => {
    if (typeof value === 'string') {
      const clean = text(value)
      if (config.maxValueLength > 0 && clean.length > config.maxValueLength) {
        // Hash of the redacted text only: a secret inside the value is never hashed.
        return { truncated: true, length: clean.length, sha256: sha256Hex(clean) }
      }
      return clean
    }
    if (Array.isArray(value)) return value.map(walk)
    if (value !== null && typeof value === 'object') {
      const out: JsonObject = {}
      for (const [key, v] of Object.entries(value)) {
        // Numbers and flags under such keys (`max_token: 512`, `use_auth_token: true`) are settings, not secrets.
        const secret = isSecretKey(key) && (typeof v === 'string' || (v !== null && typeof v === 'object'))
        out[key] = secret ? REDACTED : walk(v)
      }
      return out
    }
    return value
  }

  const redactor = ((value: JsonValue, _path: string[]) => walk(value)) as RedactionPolicy
  redactor.text = text
  return redactor
}

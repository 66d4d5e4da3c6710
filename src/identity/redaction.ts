/**
 * The redaction policy applied to everything capture stores or sends (prompt inputs, extra_data, the UI
 * workflow, validation errors, error messages and tracebacks): values under secret-looking keys, secret-
 * looking substrings (API keys, bearer tokens, JWTs, private keys, credentials in URLs, presigned-URL
 * signatures, e-mail addresses), and the user names in home-directory paths. A secret is replaced by
 * `[REDACTED]`, never hashed: a hash of a short or guessable secret would let anyone holding the log confirm a
 * guess. Only after that are long values truncated to `{truncated, length, sha256}`.
 *
 * Keys are judged as a parser reads them, never as raw text (issue 9 class 4): parsed objects by their
 * decoded keys, free text by a scanner that decodes `\u0067`-style escapes before it compares a key.
 *
 * Every built-in pattern runs in time linear in its input (issue 9 class 5): a regular expression only where
 * each failed attempt reads a bounded number of characters, a hand-written scanner where an unbounded run must
 * be read (e-mail local parts, URL user info, JWT segments). A configured pattern cannot be checked that way,
 * so each redaction also has a time budget (`redaction.timeBudgetMillis`); past it the value being redacted is
 * replaced whole by {@link REDACTED_OVER_BUDGET}: redaction fails safe, never by storing the value unredacted.
 */
import { keepSpellings, sha256Hex } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import { redactKeyedValues } from '../capture/keyed-text-scan.js'
import { CREDENTIAL_QUERY_PARAMS, redactUserInfo, stripUrlCredentials } from '../capture/url-credentials.js'
import { SENSITIVE_KEYS, type Redactor } from '../capture/prompt-analysis.js'
import { zRedactionConfig, type RedactionConfig } from '../config/security-config.js'

/** The literal that replaces a secret (the same as capture's). */
export const REDACTED = '[REDACTED]'

/** What a value becomes when redacting it took longer than `redaction.timeBudgetMillis`. */
export const REDACTED_OVER_BUDGET = '[REDACTED: over the redaction time budget]'

/**
 * Key names (snake, kebab, dotted, spaced or camel case, with any prefix) whose values are secrets. Only the
 * last words count: `password_hint`, `token_count` and `tokenizer` are not secrets (a hint is written to be
 * shown; counts are numbers), while `db_password`, `x-api-key` and `hf_token` are.
 */
const BUILTIN_KEY =
  /(?:^|[_\-. ])(?:api[_\-. ]?key|apikey|token|auth[_-]?token|access[_-]?token|refresh[_-]?token|id[_-]?token|session[_-]?token|security[_-]?token|secret|secret[_-]?key|client[_-]?secret|password|passwd|passphrase|authorization|proxy[_-]authorization|private[_-]?key|credentials?|access[_-]?key|cookie|set[_-]cookie)$/i
/** camelCase spellings (`openaiApiKey`, `hfToken`). */
const BUILTIN_CAMEL_KEY = /[a-z0-9](?:ApiKey|Token|Secret|SecretKey|Password|AccessKey|PrivateKey)$/

export { CREDENTIAL_QUERY_PARAMS, stripUrlCredentials }

/** Headers whose whole value is a credential. */
const CREDENTIAL_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'api-key',
  'x-auth-token',
  'x-amz-security-token',
  'x-goog-api-key',
  'comfy-user',
])

/**
 * Secret-looking substrings, whatever key they sit under (workflow `widgets_values` have no keys). Each fails
 * any attempt after a bounded number of characters, so /g scanning stays linear.
 */
const BUILTIN_VALUES: readonly RegExp[] = [
  /\bAKIA[0-9A-Z]{16}\b/g, // AWS access key id
  /\bAIza[0-9A-Za-z_-]{35}\b/g, // Google
  /(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g, // comfy-audit tokens
]

/**
 * Tokens with a known prefix and a minimum length: the pattern finds the start (bounded), and the match is
 * then extended by hand over the token's alphabet, so a long run costs one pass and no backtracking stack.
 */
const PREFIXED_TOKENS: readonly PrefixedToken[] = [
  { start: /\bsk-(?:proj-|ant-(?:api\d{1,4}-)?)?[A-Za-z0-9_-]{20}/g, char: isTokenChar }, // OpenAI, Anthropic
  { start: /\bhf_[A-Za-z0-9]{30}/g, char: isAlnum }, // Hugging Face
  { start: /\bgh[pousr]_[A-Za-z0-9]{36}/g, char: isAlnum }, // GitHub
  { start: /\bgithub_pat_[A-Za-z0-9_]{22}/g, char: isWordChar },
  { start: /\bxox[abprs]-[A-Za-z0-9-]{10}/g, char: (c) => isAlnum(c) || c === Ch.Minus }, // Slack
  { start: /\br8_[A-Za-z0-9]{30}/g, char: isAlnum }, // Replicate
  // `Bearer <token>` in any case; the word and the space stay.
  { start: /\b(bearer[ \t]{1,16})[A-Za-z0-9._~+/=-]{12}/gi, char: isBearerChar },
  // `?name=value` / `&name=value` for a credential parameter; the name stays.
  {
    start: new RegExp(
      `([?&;](?:${CREDENTIAL_QUERY_PARAMS.map((p) => p.replace(/-/g, '\\-')).join('|')})=)[^&#\\s"'<>]`,
      'gi',
    ),
    char: isQueryValueChar,
  },
]

/** A private key block: from its BEGIN line to its END line, or to the end of the text if it has none. */
const PRIVATE_KEY_BEGIN = /-----BEGIN [A-Z0-9 ]{0,64}PRIVATE KEY-----/g
const PRIVATE_KEY_END = /-----END [A-Z0-9 ]{0,64}PRIVATE KEY-----/g

/** The user name after a home directory (`/home/alice/`, `C:\\Users\\alice\\`) becomes `<redacted>`. */
const HOME_DIRS: readonly PrefixedToken[] = [
  { start: /(\/(?:home|Users)\/)(?!<redacted>)[^/\s"'`:]/g, char: (c) => !isHomeStop(c, 0x2f) },
  {
    start: /([A-Za-z]:\\(?:Users|Documents and Settings)\\)(?!<redacted>)[^\\\s"'`:]/gi,
    char: (c) => !isHomeStop(c, 0x5c),
  },
]

const enum Ch {
  Dot = 0x2e,
  At = 0x40,
  Minus = 0x2d,
}

function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
}
function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39
}
function isAlnum(c: number): boolean {
  return isAlpha(c) || isDigit(c)
}
/** `[A-Za-z0-9_-]`: base64url, the alphabet of JWT segments and most tokens. */
function isTokenChar(c: number): boolean {
  return isAlpha(c) || isDigit(c) || c === 0x5f || c === Ch.Minus
}
function isWordChar(c: number): boolean {
  return isAlpha(c) || isDigit(c) || c === 0x5f
}
function isEmailLocalChar(c: number): boolean {
  return isAlpha(c) || isDigit(c) || c === Ch.Dot || c === 0x5f || c === 0x25 || c === 0x2b || c === Ch.Minus
}
function isLabelChar(c: number): boolean {
  return isAlpha(c) || isDigit(c) || c === Ch.Minus
}
function isSpaceChar(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b
}
function isBearerChar(c: number): boolean {
  return isTokenChar(c) || c === Ch.Dot || c === 0x7e || c === 0x2b || c === 0x2f || c === 0x3d
}
function isQueryValueChar(c: number): boolean {
  return !(c === 0x26 || c === 0x23 || isSpaceChar(c) || c === 0x22 || c === 0x27 || c === 0x3c || c === 0x3e)
}
function isHomeStop(c: number, separator: number): boolean {
  return c === separator || isSpaceChar(c) || c === 0x22 || c === 0x27 || c === 0x60 || c === 0x3a
}

/**
 * A pattern that finds where a secret starts (reading a bounded number of characters per attempt) and the
 * alphabet it continues in. Capture group 1, when the pattern has one, is kept (`Bearer `, `?token=`).
 */
interface PrefixedToken {
  readonly start: RegExp
  readonly char: (c: number) => boolean
}

/** Replaces the given `[start, end)` spans (sorted, disjoint) of `text` by {@link REDACTED}. */
function replaceSpans(text: string, spans: readonly [number, number][], replacement = REDACTED): string {
  if (spans.length === 0) return text
  const parts: string[] = []
  let kept = 0
  for (const [start, end] of spans) {
    parts.push(text.slice(kept, start), replacement)
    kept = end
  }
  parts.push(text.slice(kept))
  return parts.join('')
}

/**
 * Every match of `token.start`, extended over its alphabet, replaced by `replacement` (group 1 kept). The
 * extension is a loop, not a regular expression: V8 overflows its stack on a greedy quantifier over 10 MB.
 */
function redactPrefixed(text: string, token: PrefixedToken, replacement = REDACTED): string {
  const spans: [number, number][] = []
  const { start, char } = token
  start.lastIndex = 0
  for (let m = start.exec(text); m !== null; m = start.exec(text)) {
    let end = m.index + m[0].length
    while (end < text.length && char(text.charCodeAt(end))) end++
    spans.push([m.index + (m[1]?.length ?? 0), end])
    start.lastIndex = end
  }
  return replaceSpans(text, spans, replacement)
}

/** Private key blocks, each to its END line or, without one, to the end of the text. */
function redactPrivateKeys(text: string): string {
  if (!text.includes('PRIVATE KEY-----')) return text
  const spans: [number, number][] = []
  PRIVATE_KEY_BEGIN.lastIndex = 0
  for (let m = PRIVATE_KEY_BEGIN.exec(text); m !== null; m = PRIVATE_KEY_BEGIN.exec(text)) {
    PRIVATE_KEY_END.lastIndex = m.index + m[0].length
    const end = PRIVATE_KEY_END.exec(text)
    const stop = end === null ? text.length : end.index + end[0].length
    spans.push([m.index, stop])
    PRIVATE_KEY_BEGIN.lastIndex = stop
  }
  return replaceSpans(text, spans)
}

/**
 * E-mail addresses (`local@label.label.tld`, a letters-only TLD of two or more). Scanned from each `@`:
 * backwards over the local part, which never reaches past the previous `@` or match, and forwards over the
 * domain, which stops at the next `@`; so each character is read a bounded number of times. (The regular
 * expression this replaces retried the whole local part from every start: 40 KB without `@` took 6 s.)
 */
function redactEmails(text: string): string {
  const spans: [number, number][] = []
  let floor = 0
  let at = text.indexOf('@')
  while (at !== -1) {
    let start = at
    while (start > floor && isEmailLocalChar(text.charCodeAt(start - 1))) start--
    let end = -1
    if (start < at) {
      // Labels separated by single dots; the match ends after the last label whose leading letters (2+)
      // can be a TLD, as the greedy pattern `label(.label)*.[A-Za-z]{2,}` would.
      let i = at + 1
      let labels = 0
      while (i < text.length) {
        const labelStart = i
        while (i < text.length && isLabelChar(text.charCodeAt(i))) i++
        if (i === labelStart) break
        if (labels > 0) {
          let letters = labelStart
          while (letters < i && isAlpha(text.charCodeAt(letters))) letters++
          if (letters - labelStart >= 2) end = letters
        }
        labels++
        if (text.charCodeAt(i) !== Ch.Dot) break
        i++
      }
    }
    if (end !== -1) {
      spans.push([start, end])
      floor = end
      at = text.indexOf('@', end)
    } else {
      floor = at + 1
      at = text.indexOf('@', at + 1)
    }
  }
  return replaceSpans(text, spans)
}

/**
 * JWTs: `eyJ` at a word start, then three base64url segments of 8+ separated by dots. A failed candidate
 * resumes after its first segment's run: any `eyJ` inside that run shares the run's end and fails the same
 * way, and each run is read by at most three candidates.
 */
function redactJwts(text: string): string {
  const spans: [number, number][] = []
  let from = 0
  for (;;) {
    const start = text.indexOf('eyJ', from)
    if (start === -1) break
    if (start > 0 && isWordChar(text.charCodeAt(start - 1))) {
      from = start + 1
      continue
    }
    let i = start + 3
    const segmentEnd = (j: number): number => {
      while (j < text.length && isTokenChar(text.charCodeAt(j))) j++
      return j
    }
    const first = segmentEnd(i)
    let ok = first - i >= 8
    let end = first
    for (let seg = 0; ok && seg < 2; seg++) {
      if (text.charCodeAt(end) !== Ch.Dot) {
        ok = false
        break
      }
      i = end + 1
      end = segmentEnd(i)
      ok = end - i >= 8
    }
    if (ok) {
      spans.push([start, end])
      from = end
    } else {
      from = Math.max(first, start + 1)
    }
  }
  return replaceSpans(text, spans)
}

/** True when a (parsed, decoded) key names a secret under the built-in rules. */
export function isBuiltinSecretKey(key: string): boolean {
  // Only a key's end decides, so a long key is judged by its last characters: no name in the list is
  // anywhere near 64 long, so `^` cannot match at the start of such a slice.
  const tail = key.length > 64 ? key.slice(-65) : key
  return BUILTIN_KEY.test(tail) || BUILTIN_CAMEL_KEY.test(tail) || SENSITIVE_KEYS.includes(key)
}

/** A redactor that also cleans free text (log lines, bodies that are not JSON). */
export interface RedactionPolicy extends Redactor {
  /** Applies the value patterns, secret keys in `key: value` text, and home-path masking to text. */
  text(value: string): string
  /** Whether a key's value is redacted (decoded key, as a parser reads it). */
  isSecretKey(key: string): boolean
}

class OverBudget extends Error {}

/** Characters of redaction work between two readings of the budget's clock. */
const CLOCK_WORK = 16_384
/** What one step costs on top of its input's length, in characters (so short strings add up too). */
const STEP_WORK = 64

/** Options of {@link createRedactor}. */
export interface RedactorOptions {
  /** Millisecond clock for the time budget (default `performance.now`; tests pass a fake one). */
  readonly now?: () => number
}

/**
 * Builds the redactor capture's `redact` option takes.
 *
 * @example
 * createCapture({ ..., redact: createRedactor(config.redaction) })
 */
export function createRedactor(config: RedactionConfig, options: RedactorOptions = {}): RedactionPolicy {
  const clock = options.now ?? (() => performance.now())
  const extraKeys = new Set(config.keys.map((k) => k.toLowerCase()))
  const keyPatterns = config.keyPatterns.map((s) => new RegExp(s, 'u'))
  const configured = config.valuePatterns.map((s) => new RegExp(s, 'gu'))
  const budgetMillis = config.timeBudgetMillis
  const isSecretKey = (key: string): boolean =>
    (config.builtinPatterns && isBuiltinSecretKey(key)) ||
    SENSITIVE_KEYS.includes(key) ||
    extraKeys.has(key.toLowerCase()) ||
    keyPatterns.some((p) => p.test(key))

  /** Steps of {@link text}, each linear for the built-in ones; the budget is checked between them. */
  const steps: ((s: string) => string)[] = []
  if (config.builtinPatterns) {
    steps.push(redactPrivateKeys)
    for (const p of BUILTIN_VALUES) steps.push((s) => s.replace(p, REDACTED))
    for (const t of PREFIXED_TOKENS) steps.push((s) => redactPrefixed(s, t))
    steps.push(redactJwts)
    steps.push(redactUserInfo)
  }
  for (const p of configured) steps.push((s) => s.replace(p, REDACTED))
  if (config.emails) steps.push((s) => (s.includes('@') ? redactEmails(s) : s))
  steps.push((s) => redactKeyedValues(s, isSecretKey, REDACTED))
  if (config.maskHomePaths) {
    for (const t of HOME_DIRS) steps.push((s) => redactPrefixed(s, t, '<redacted>'))
  }

  let deadline = Infinity
  // Work done since the clock was last read, in characters (plus a fixed cost per step). Reading the clock
  // before every step was a fifth of capture's analysis time on short strings; each step is linear in its
  // input, so reading it once per CLOCK_WORK characters still stops within microseconds of the budget.
  let work = 0
  const checkBudget = (length: number): void => {
    if (deadline === Infinity) return
    work += length + STEP_WORK
    if (work < CLOCK_WORK) return
    work = 0
    if (clock() > deadline) throw new OverBudget()
  }

  const cleanText = (value: string): string => {
    let out = value
    for (const step of steps) {
      checkBudget(out.length)
      out = step(out)
    }
    return out
  }

  const walk = (value: JsonValue): JsonValue => {
    if (typeof value === 'string') {
      const clean = cleanText(value)
      if (config.maxValueLength > 0 && clean.length > config.maxValueLength) {
        // Hash of the redacted text only: a secret inside the value is never hashed.
        return { truncated: true, length: clean.length, sha256: sha256Hex(clean) }
      }
      return clean
    }
    // keepSpellings: a number read as `1.0` is still written `1.0` (see audit/json.ts).
    if (Array.isArray(value)) return keepSpellings(value, value.map(walk))
    if (value !== null && typeof value === 'object') {
      const out: JsonObject = {}
      for (const [key, v] of Object.entries(value)) {
        // Numbers and flags under such keys (`max_token: 512`, `use_auth_token: true`) are settings, not secrets.
        const secret = isSecretKey(key) && (typeof v === 'string' || (v !== null && typeof v === 'object'))
        // A key is text too (an e-mail address or a token can be a key); short keys are cheap to check.
        out[key.length > 0 ? cleanText(key) : key] = secret ? REDACTED : walk(v)
      }
      return keepSpellings(value, out)
    }
    return value
  }

  /** Runs one redaction within the budget; past it the whole value is replaced, never kept. */
  const budgeted = <T extends JsonValue>(run: () => T): T | typeof REDACTED_OVER_BUDGET => {
    if (deadline !== Infinity) return run() // nested call: the outer budget applies
    deadline = budgetMillis > 0 ? clock() + budgetMillis : Infinity
    work = 0
    try {
      return run()
    } catch (error) {
      if (error instanceof OverBudget) return REDACTED_OVER_BUDGET
      throw error
    } finally {
      deadline = Infinity
    }
  }

  const redactor = ((value: JsonValue, _path: string[]) => budgeted(() => walk(value))) as RedactionPolicy
  redactor.text = (value: string) => budgeted(() => cleanText(value))
  redactor.isSecretKey = isSecretKey
  return redactor
}

let defaultPolicy: RedactionPolicy | null = null
/** The policy with the default config (built-in patterns, e-mails, home paths, 1 s budget). */
function defaults(): RedactionPolicy {
  defaultPolicy ??= createRedactor(zRedactionConfig.parse({}))
  return defaultPolicy
}

/** Free text (a log line, an error message, a body that is not JSON) with its secrets replaced. */
export function redactText(text: string, policy: RedactionPolicy = defaults()): string {
  return policy.text(text)
}

/** A parsed value with its secrets replaced (keys judged as parsed, strings as {@link redactText}). */
export function redactValue(value: JsonValue, policy: RedactionPolicy = defaults()): JsonValue {
  return policy(value, [])
}

/** Header values as Node gives them (`req.headers`), or a raw `[name, value, ...]` list. */
export type HeaderInput = Readonly<Record<string, string | readonly string[] | undefined>> | readonly string[]

/**
 * Headers fit for a log or the audit trail: credential headers (`Authorization`, `Cookie`, `X-Api-Key`, ...)
 * and headers whose name is a secret key have their value replaced; `Referer`, `Origin` and `Location` lose
 * their URL credentials; every other value goes through {@link redactText}. Names are lower-cased.
 */
export function redactHeaders(
  headers: HeaderInput,
  policy: RedactionPolicy = defaults(),
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const one = (lower: string, value: string): string => {
    if (CREDENTIAL_HEADERS.has(lower) || policy.isSecretKey(lower)) return REDACTED
    if (lower === 'referer' || lower === 'origin' || lower === 'location' || lower === 'content-location')
      return policy.text(stripUrlCredentials(value))
    return policy.text(value)
  }
  const add = (name: string, value: string): void => {
    const lower = name.toLowerCase()
    const clean = one(lower, value)
    const prev = out[lower]
    if (prev === undefined) out[lower] = clean
    else out[lower] = Array.isArray(prev) ? [...prev, clean] : [prev, clean]
  }
  if (Array.isArray(headers)) {
    const list = headers as readonly string[]
    for (let i = 0; i + 1 < list.length; i += 2) add(list[i]!, list[i + 1]!)
    return out
  }
  for (const [name, value] of Object.entries(
    headers as Record<string, string | readonly string[] | undefined>,
  )) {
    if (value === undefined) continue
    if (typeof value === 'string') add(name, value)
    else for (const v of value) add(name, v)
  }
  return out
}

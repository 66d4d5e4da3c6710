/**
 * Finds `"key": value` (JSON, Python reprs), `key=value` (environment, command lines) and `Name: value` header
 * lines in free text and replaces the values whose key is a secret. Keys are compared after their escapes are
 * decoded, as a JSON or Python parser would read them: `"api_key_comfy_or\u0067"` is `api_key_comfy_org`
 * (issue 9 class 4), so a key cannot hide behind an escape the way it could from a regular expression over raw
 * text. One hand-written pass, linear in the text (issue 9 class 5): every quoted token is read up to the next
 * unescaped quote of its kind only, every identifier once.
 */

/** Decides whether a (decoded) key names a secret. */
type SecretKeyTest = (key: string) => boolean

const BACKSLASH = 0x5c
const NEWLINE = 0x0a
const CR = 0x0d

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === NEWLINE || c === CR
}

function isIdentChar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    c === 0x5f ||
    c === 0x2d ||
    c === 0x2e
  )
}

/** Index just past the quoted token opening at `start` (the closing quote), or the text's end if unterminated. */
function quotedEnd(text: string, start: number): { end: number; closed: boolean } {
  const quote = text.charCodeAt(start)
  let i = start + 1
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === BACKSLASH) i += 2
    else if (c === quote) return { end: i + 1, closed: true }
    else i++
  }
  return { end: text.length, closed: false }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  b: '\b',
  f: '\f',
  '0': '\0',
}

/** The token's content with JSON and Python escapes decoded (`\uXXXX`, `\xXX`, `\n`, `\"`, ...). */
function decodeQuoted(text: string, start: number, end: number): string {
  const body = text.slice(start + 1, end - 1)
  if (!body.includes('\\')) return body
  return body.replace(/\\(u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|U[0-9A-Fa-f]{8}|[\s\S])/g, (_m, e: string) => {
    if (e.length > 1) return String.fromCodePoint(parseInt(e.slice(1), 16))
    return SIMPLE_ESCAPES[e] ?? e
  })
}

/** Index past a bracketed value opening at `start`, skipping quoted strings; the text's end if unbalanced. */
function bracketedEnd(text: string, start: number): number {
  let depth = 0
  let i = start
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === 0x22 || c === 0x27) {
      i = quotedEnd(text, i).end
      continue
    }
    if (c === 0x7b || c === 0x5b) depth++
    else if (c === 0x7d || c === 0x5d) {
      depth--
      if (depth === 0) return i + 1
    }
    i++
  }
  return text.length
}

const SCALAR = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|True|False|None)$/

/** A number, boolean or null: a setting, not a secret. Past 64 characters it is no setting anyone writes. */
function isScalar(raw: string): boolean {
  return raw.length <= 64 && SCALAR.test(raw)
}

/** Index past an unquoted value starting at `start`, which ends at any of `stops` or a line end. */
function bareEnd(text: string, start: number, stops: string): number {
  let i = start
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === NEWLINE || c === CR || stops.includes(text[i]!)) break
    i++
  }
  return i
}

/**
 * `text` with the value of every secret key replaced by `replacement` (quoted as the value was). Numbers,
 * booleans and null under a secret key are settings, not secrets, and stay (`"max_token": 512`), as in the
 * redaction of parsed values.
 *
 * @example
 * redactKeyedValues('{"api_key_comfy_or\\u0067": "abc"}', (k) => k === 'api_key_comfy_org', '[REDACTED]')
 * // '{"api_key_comfy_or\\u0067": "[REDACTED]"}'
 */
export function redactKeyedValues(text: string, isSecret: SecretKeyTest, replacement: string): string {
  const parts: string[] = []
  let kept = 0
  let i = 0
  let lineStart = true
  const replace = (from: number, to: number, quote: string): void => {
    parts.push(text.slice(kept, from), `${quote}${replacement}${quote}`)
    kept = to
  }
  /** The value after a `:` or `=` at `sep`: replaced when secret-shaped; returns where scanning resumes. */
  const valueAfter = (sep: number, stops: string): number => {
    let v = sep + 1
    while (v < text.length && (text.charCodeAt(v) === 0x20 || text.charCodeAt(v) === 0x09)) v++
    if (v >= text.length) return v
    if (text.startsWith(replacement, v)) return v + replacement.length
    const c = text.charCodeAt(v)
    if (c === 0x22 || c === 0x27) {
      const { end } = quotedEnd(text, v)
      replace(v, end, text[v]!)
      return end
    }
    if ((c === 0x7b || c === 0x5b) && text[sep] === ':') {
      const end = bracketedEnd(text, v)
      replace(v, end, '"')
      return end
    }
    const end = bareEnd(text, v, stops)
    const raw = text.slice(v, end).trimEnd()
    if (raw !== '' && !isScalar(raw)) replace(v, v + raw.length, '')
    return end
  }
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === NEWLINE) {
      lineStart = true
      i++
      continue
    }
    if (c === 0x22 || c === 0x27) {
      lineStart = false
      // An escaped quote belongs to the string around it, not to a key of its own.
      if (i > 0 && text.charCodeAt(i - 1) === BACKSLASH) {
        i++
        continue
      }
      const { end, closed } = quotedEnd(text, i)
      let j = end
      while (j < text.length && isSpace(text.charCodeAt(j))) j++
      if (closed && (text[j] === ':' || text[j] === '=') && isSecret(decodeQuoted(text, i, end))) {
        i = valueAfter(j, ',}]')
        continue
      }
      // Not a key: the next token may start inside this one (an apostrophe is not a string).
      i++
      continue
    }
    if (isIdentChar(c) && (i === 0 || !isIdentChar(text.charCodeAt(i - 1)))) {
      let j = i
      while (j < text.length && isIdentChar(text.charCodeAt(j))) j++
      const atLineStart = lineStart
      lineStart = false
      const sep = text[j]
      if (sep === '=' && text[j + 1] !== '=' && isSecret(text.slice(i, j))) {
        i = valueAfter(j, ' \t&;,"\'')
        continue
      }
      // `Authorization: Basic ...` / `Cookie: ...`: a header line in a log or a dumped request.
      if (sep === ':' && atLineStart && isSecret(text.slice(i, j))) {
        const end = bareEnd(text, j + 1, '')
        const value = text.slice(j + 1, end).trim()
        if (value !== '' && !isScalar(value)) {
          const from = j + 1 + text.slice(j + 1, end).indexOf(value)
          replace(from, from + value.length, '')
        }
        i = end
        continue
      }
      i = j
      continue
    }
    if (!(c === 0x20 || c === 0x09)) lineStart = false
    i++
  }
  if (kept === 0) return text
  parts.push(text.slice(kept))
  return parts.join('')
}

/**
 * The last step before an event leaves capture (or the composition root) for the store: every string it
 * carries goes through the redaction policy's text rules. Field by field redaction missed whatever a field
 * was not named for (a node's exception message and traceback, output file names, a User-Agent, an upload's
 * name); doing it here, on the finished payload, covers every field there is and every field added later,
 * and the store, the ledger and every sink then hold the same redacted bytes.
 */
import { keepSpellings } from '../audit/json.js'
import type { AuditEventInput, JsonObject, JsonValue } from '../audit/types.js'

/** Text rules of the redaction policy (secret-looking substrings, e-mail addresses, home-directory paths). */
export type TextRedactor = (text: string) => string

// Session members analyzePrompt already ran through the whole policy (keys and values): the prompt graph,
// the UI workflow and extra_data are the largest values there are, and a second pass would double their cost.
const ANALYZED_SESSION_MEMBERS = new Set(['prompt', 'workflow', 'extra_data'])

// A person's name is who did it, the one thing an audit record is for; it comes from the gateway's own
// directory or its trusted SSO header, never from a request body, so an e-mail-shaped name stays readable.
const PERSON_MEMBERS = new Set(['user', 'person'])

function isPlainObject(value: JsonValue): value is JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

// Where a percent-encoded run ends in a URL: its query and fragment separators and white space.
const URL_DELIMITERS = /([\s?&=#;]+)/

/**
 * `value` redacted by `text`, and each percent-encoded run in it (a query value of a recorded URL, such as
 * `x=https%3A%2F%2Fu%3Apw%40host`) judged decoded: the text rules see `%3A`, `%40`, `%2F` and not the
 * separators they look for. A run whose decoded form holds a secret is written back encoded, redacted.
 * Splitting on delimiters keeps it linear in the length of the string.
 */
export function redactString(value: string, text: TextRedactor): string {
  const clean = text(value)
  if (!clean.includes('%')) return clean
  return clean
    .split(URL_DELIMITERS)
    .map((run) => {
      if (!run.includes('%')) return run
      let decoded: string
      try {
        decoded = decodeURIComponent(run.replace(/\+/g, ' '))
      } catch {
        return run
      }
      const redacted = text(decoded)
      return redacted === decoded ? run : encodeURIComponent(redacted)
    })
    .join('')
}

// keepSpellings on every copy: a number ComfyUI sent as `1.0` is still written `1.0` (see audit/json.ts).
function redactValue(value: JsonValue, text: TextRedactor): JsonValue {
  if (typeof value === 'string') return redactString(value, text)
  if (Array.isArray(value))
    return keepSpellings(
      value,
      value.map((v) => redactValue(v, text)),
    )
  if (!isPlainObject(value)) return value
  const out: JsonObject = {}
  for (const [key, v] of Object.entries(value)) {
    out[key] = PERSON_MEMBERS.has(key) && typeof v === 'string' ? v : redactValue(v, text)
  }
  return keepSpellings(value, out)
}

/**
 * A copy of `payload` with every string redacted by `text`, except person names (`user`, `person`) and the
 * session members capture's prompt analysis has already redacted (`session.prompt`, `.workflow`,
 * `.extra_data`). Values that are not plain JSON (bigints, numbers, other objects) are kept as they are.
 *
 * @example
 * store.append(events.map((e) => redactEvent(e, policy.text)))
 */
export function redactPayload(payload: JsonObject, text: TextRedactor): JsonObject {
  const out: JsonObject = {}
  for (const [key, value] of Object.entries(payload)) {
    if (key === 'session' && isPlainObject(value)) {
      const session: JsonObject = {}
      for (const [k, v] of Object.entries(value)) {
        session[k] = ANALYZED_SESSION_MEMBERS.has(k) ? v : redactValue(v, text)
      }
      out[key] = keepSpellings(value, session)
    } else {
      out[key] = PERSON_MEMBERS.has(key) && typeof value === 'string' ? value : redactValue(value, text)
    }
  }
  return keepSpellings(payload, out)
}

/** The event with its payload redacted by {@link redactPayload}. */
export function redactEvent(event: AuditEventInput, text: TextRedactor): AuditEventInput {
  return { ...event, payload: redactPayload(event.payload, text) }
}

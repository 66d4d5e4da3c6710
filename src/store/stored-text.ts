/**
 * Text columns that survive any JS string, lone surrogates included.
 *
 * A JS string is UTF-16 and may hold a lone surrogate (`"\ud800"`): Python writes one for a file name with
 * undecodable bytes, and any client may send one in a prompt id, a node id or an input. Both database drivers
 * encode text as UTF-8, which cannot express a lone surrogate, and silently store U+FFFD instead. The stored
 * row would then differ from the event it was written from: its leaf hash would never match again and `verify`
 * would report tampering for ever. So every string a driver writes goes through {@link encodeStoredText} and
 * every string it reads through {@link decodeStoredText}:
 *
 * - a lone surrogate U+D800..U+DFFF becomes U+FFFE followed by U+E000..U+E7FF (the same offset into a
 *   private-use block);
 * - U+FFFE itself (a noncharacter, reserved for such internal use and not expected in text) is doubled.
 *
 * Any other string is stored unchanged, so rows written before this encoding read back as they were, and
 * queries on plain values (`session_id = ?`) match. JSON text is ASCII-escaped for lone surrogates already
 * (`\ud800`); it goes through the same functions like any other string, which is harmless.
 */

const ESCAPE = '\uFFFE'
const PRIVATE_BASE = 0xe000
const SURROGATE_BASE = 0xd800
const LONE_SURROGATE_OR_ESCAPE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\uFFFE/g
const ESCAPED = /\uFFFE([\uFFFE\uE000-\uE7FF])/g

type WellFormedString = string & { isWellFormed(): boolean }

/** The form of `text` a database stores without loss (see the module comment). */
function encodeStoredText(text: string): string {
  if ((text as WellFormedString).isWellFormed() && !text.includes(ESCAPE)) return text
  return text.replace(LONE_SURROGATE_OR_ESCAPE, (unit) =>
    unit === ESCAPE
      ? ESCAPE + ESCAPE
      : ESCAPE + String.fromCharCode(unit.charCodeAt(0) - SURROGATE_BASE + PRIVATE_BASE),
  )
}

/**
 * The string {@link encodeStoredText} was given. A U+FFFE not followed by an escape's second unit (text
 * written before this encoding, or by hand) is kept as it is.
 */
function decodeStoredText(text: string): string {
  if (!text.includes(ESCAPE)) return text
  return text.replace(ESCAPED, (_, unit: string) =>
    unit === ESCAPE ? ESCAPE : String.fromCharCode(unit.charCodeAt(0) - PRIVATE_BASE + SURROGATE_BASE),
  )
}

/** Statement parameters with every string (also inside arrays, for PostgreSQL's `ANY($1)`) encoded. */
export function encodeStoredParams(params: readonly unknown[]): unknown[] {
  return params.map(encodeParam)
}

function encodeParam(value: unknown): unknown {
  if (typeof value === 'string') return encodeStoredText(value)
  if (Array.isArray(value)) return value.map(encodeParam)
  return value
}

/** Decodes every string field of the rows, in place, and returns them. */
export function decodeStoredRows<T extends Record<string, unknown>>(rows: T[]): T[] {
  for (const row of rows) decodeStoredRow(row)
  return rows
}

/** Decodes every string field of one row, in place (undefined passes through). */
export function decodeStoredRow<T extends Record<string, unknown> | undefined>(row: T): T {
  if (row === undefined || row === null) return row
  const fields = row as Record<string, unknown>
  for (const key of Object.keys(fields)) {
    const value = fields[key]
    if (typeof value === 'string' && value.includes(ESCAPE)) fields[key] = decodeStoredText(value)
  }
  return row
}

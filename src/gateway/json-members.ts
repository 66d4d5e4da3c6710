/**
 * Finds the members of a JSON object in the text, by position, so the gateway can change one value and
 * leave every other byte as the client wrote it. Re-serialising a parsed prompt would not do: JS objects
 * enumerate integer-like keys ("3", "10") first and in numeric order, and ComfyUI's behaviour follows the
 * prompt's key order (`execution_cached.nodes`, the prompt saved into PNGs). Only call this on text that a
 * JSON parser already accepted: it checks nothing.
 */

/** One `"key": value` member, by UTF-16 offsets into the text. */
export interface JsonMember {
  readonly key: string
  /** Offset of the key's opening quote. */
  readonly keyStart: number
  /** Offset just past the key's closing quote. */
  readonly keyEnd: number
  readonly valueStart: number
  readonly valueEnd: number
}

/** A text edit: replace `[start, end)` with `text`. */
export interface TextEdit {
  readonly start: number
  readonly end: number
  readonly text: string
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}

/** Offset of the first character at or after `i` that is not JSON whitespace (or a leading BOM). */
export function skipSpace(text: string, i: number): number {
  while (i < text.length && (isSpace(text.charCodeAt(i)) || (i === 0 && text.charCodeAt(0) === 0xfeff))) i++
  return i
}

function skipString(text: string, i: number): number {
  // text[i] is the opening quote.
  i++
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === 0x5c) i += 2
    else if (c === 0x22) return i + 1
    else i++
  }
  return i
}

/** Offset just past the JSON value that starts at `i`. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i)
  if (c === 0x22) return skipString(text, i)
  if (c === 0x7b || c === 0x5b) {
    let depth = 0
    while (i < text.length) {
      const d = text.charCodeAt(i)
      if (d === 0x22) {
        i = skipString(text, i)
        continue
      }
      if (d === 0x7b || d === 0x5b) depth++
      else if (d === 0x7d || d === 0x5d) {
        depth--
        if (depth === 0) return i + 1
      }
      i++
    }
    return i
  }
  // A scalar: number, true, false, null, NaN, Infinity, -Infinity.
  while (i < text.length) {
    const d = text.charCodeAt(i)
    if (d === 0x2c || d === 0x7d || d === 0x5d || isSpace(d)) break
    i++
  }
  return i
}

/** The members of the object whose `{` is at `start`, in document order (duplicates included). */
export function objectMembers(text: string, start: number): JsonMember[] {
  const members: JsonMember[] = []
  let i = skipSpace(text, start + 1)
  if (text.charCodeAt(i) === 0x7d) return members
  while (i < text.length) {
    const keyStart = i
    const keyEnd = skipString(text, i)
    const key = JSON.parse(text.slice(i, keyEnd)) as string
    i = skipSpace(text, keyEnd)
    i = skipSpace(text, i + 1) // past ':'
    const valueStart = i
    const valueEnd = skipValue(text, i)
    members.push({ key, keyStart, keyEnd, valueStart, valueEnd })
    i = skipSpace(text, valueEnd)
    if (text.charCodeAt(i) !== 0x2c) break
    i = skipSpace(text, i + 1)
  }
  return members
}

/** One array element, by UTF-16 offsets into the text. */
export interface JsonSpan {
  readonly start: number
  readonly end: number
}

/** The elements of the array whose `[` is at `start`, in order. */
export function arrayElements(text: string, start: number): JsonSpan[] {
  const elements: JsonSpan[] = []
  let i = skipSpace(text, start + 1)
  if (text.charCodeAt(i) === 0x5d) return elements
  while (i < text.length) {
    const end = skipValue(text, i)
    elements.push({ start: i, end })
    i = skipSpace(text, end)
    if (text.charCodeAt(i) !== 0x2c) break
    i = skipSpace(text, i + 1)
  }
  return elements
}

/**
 * Edits that delete the members for which `drop` is true from an object whose members are `members` (all of
 * them, as {@link objectMembers} gives them), with their commas, so that what is left keeps the separators
 * it was written with (`{"a": 1, "c": 3}` from `{"a": 1, "b": 2, "c": 3}`; `{}` when nothing is left).
 */
export function removeMembers(members: readonly JsonMember[], drop: (m: JsonMember) => boolean): TextEdit[] {
  const edits: TextEdit[] = []
  let i = 0
  while (i < members.length) {
    if (!drop(members[i]!)) {
      i++
      continue
    }
    let j = i
    while (j + 1 < members.length && drop(members[j + 1]!)) j++
    const first = members[i]!
    const last = members[j]!
    const next = members[j + 1]
    const prev = members[i - 1]
    // A run followed by a kept member takes its own trailing comma; a run at the end takes the one before it.
    if (next) edits.push({ start: first.keyStart, end: next.keyStart, text: '' })
    else if (prev) edits.push({ start: prev.valueEnd, end: last.valueEnd, text: '' })
    else edits.push({ start: first.keyStart, end: last.valueEnd, text: '' })
    i = j + 1
  }
  return edits
}

/** Applies non-overlapping edits. */
export function applyEdits(text: string, edits: readonly TextEdit[]): string {
  // An insertion goes before a removal that starts at the same place (its end is smaller).
  const sorted = [...edits].sort((a, b) => a.start - b.start || a.end - b.end)
  let out = ''
  let at = 0
  for (const e of sorted) {
    out += text.slice(at, e.start) + e.text
    at = e.end
  }
  return out + text.slice(at)
}

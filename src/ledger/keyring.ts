/**
 * A keyring: the verifier keys of several gateway logs, so that `verify` checks every origin of a shared
 * store in one run. The format is plain text, one C2SP verifier key per line (exactly what `comfy-audit key`
 * prints); blank lines and lines starting with `#` are ignored. A verifier key names its log
 * (`comfy-audit/gpu-01+1a2b3c4d+AbC…`): that name is the origin the key verifies, so the file needs no
 * other mapping. A directory is read as the keys of all its files together (one key file per gateway).
 */
import { parseVerifierKey } from './signed-note.js'

/** One key of a keyring, with where it was read (for messages). */
export interface KeyringEntry {
  readonly origin: string
  readonly verifierKey: string
  /** `file:line`. */
  readonly source: string
}

/** A parsed keyring, or the first problem, naming its file and line. */
type KeyringResult =
  | { readonly ok: true; readonly keys: ReadonlyMap<string, KeyringEntry> }
  | { readonly ok: false; readonly reason: string }

/**
 * Parses keyring files (`name` → text) into one map origin → key. The same key twice is fine; two different
 * keys for one origin are refused (which one would verify its log?).
 */
export function parseKeyring(files: readonly { name: string; text: string }[]): KeyringResult {
  const keys = new Map<string, KeyringEntry>()
  for (const { name, text } of files) {
    const lines = text.split(/\r?\n/)
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim()
      if (line === '' || line.startsWith('#')) continue
      const source = `${name}:${i + 1}`
      const parsed = parseVerifierKey(line)
      if (!parsed.ok) return { ok: false, reason: `${source}: not a verifier key (${parsed.reason})` }
      const origin = parsed.value.name
      const known = keys.get(origin)
      if (known && known.verifierKey !== line) {
        return {
          ok: false,
          reason: `${source}: a second, different key for ${origin} (the first is at ${known.source})`,
        }
      }
      if (!known) keys.set(origin, { origin, verifierKey: line, source })
    }
  }
  if (keys.size === 0) {
    return { ok: false, reason: `no verifier key in ${files.map((f) => f.name).join(', ') || 'the keyring'}` }
  }
  return { ok: true, keys }
}

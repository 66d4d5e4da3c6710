/**
 * Writing a file so that after a crash it is either the old one or the whole new one: the bytes go to a
 * temporary name, are synced, renamed over the target, and the directory is synced so the rename survives too.
 * Spools and sink cursors rely on it; a torn `.tmp` left by a crash is theirs to delete at start.
 */
import { open, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'

/** Syncs a directory, so entries created or renamed in it survive a crash. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Writes `dir/name` durably through `dir/tmpName`; on failure the temporary file is removed. */
export async function writeFileDurably(
  dir: string,
  name: string,
  data: string,
  options: { readonly tmpName?: string; readonly mode?: number } = {},
): Promise<void> {
  const tmp = join(dir, options.tmpName ?? `${name}.tmp`)
  try {
    const fh = await open(tmp, 'w', options.mode ?? 0o666)
    try {
      await fh.writeFile(data, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, join(dir, name))
  } catch (error) {
    await unlink(tmp).catch(() => {})
    throw error
  }
  await fsyncDir(dir)
}

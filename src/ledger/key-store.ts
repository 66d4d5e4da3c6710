/**
 * The gateway's ledger signing key, kept in `<dataDir>/keys/ledger.key` as one line holding the signed-note
 * signer key (`PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`, see signed-note.ts).
 */
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { link, mkdir, open, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKey, parseSignerKey } from './signed-note.js'
import type { NoteSigner } from './signed-note.js'

/** The loaded (or freshly generated) ledger key. */
export interface SigningKey {
  /** Signs checkpoints; the private key never leaves it. */
  readonly signer: NoteSigner
  /** `<name>+<hex id>+<base64 public key>`: publish it so auditors can verify checkpoints. */
  readonly verifierKey: string
  /** Absolute or dataDir-relative path of the key file. */
  readonly path: string
  /** True when this call generated the key. */
  readonly created: boolean
}

const KEY_FILE_MODE = 0o600
const KEY_DIR_MODE = 0o700

function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '')
}

async function readKeyFile(path: string, name: string): Promise<NoteSigner> {
  // Check the mode on the opened descriptor, so the file we check is the file we read.
  const handle = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new Error(`ledger key ${path} is not a regular file`)
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0')
      throw new Error(
        `ledger key ${path} is accessible by group or others (mode ${mode}); ` +
          `refusing to use it. Restrict it with: chmod 600 ${path}`,
      )
    }
    const text = (await handle.readFile('utf8')).replace(/\r?\n$/, '')
    const parsed = parseSignerKey(text)
    if (!parsed.ok) throw new Error(`ledger key ${path} is malformed: ${parsed.reason}`)
    if (parsed.value.name !== name) {
      throw new Error(
        `ledger key ${path} belongs to ${JSON.stringify(parsed.value.name)}, not ${JSON.stringify(name)}; ` +
          'the key name is the log origin and cannot change for an existing log',
      )
    }
    return parsed.value
  } finally {
    await handle.close()
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the new directory entry durable; not every platform can open a directory, so this is best effort.
  try {
    const handle = await open(dir, constants.O_RDONLY)
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // best effort only
  }
}

/**
 * Loads the existing signing key for `name` from `<dataDir>/keys/ledger.key`, never creating one (read-only
 * commands such as `key` and `verify`: a key made there would sign nothing and only hide a wrong `--data`).
 * Returns undefined when the file does not exist; throws like {@link loadOrCreateSigningKey} otherwise.
 */
export async function loadSigningKey(dataDir: string, name: string): Promise<SigningKey | undefined> {
  const path = join(dataDir, 'keys', 'ledger.key')
  try {
    const signer = await readKeyFile(path, name)
    return { signer, verifierKey: signer.verifierKey, path, created: false }
  } catch (error) {
    if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined
    throw error
  }
}

/**
 * Loads the ledger signing key for `name` from `<dataDir>/keys/ledger.key`, generating an Ed25519 key on
 * first start (directory 0700, file 0600, published atomically so a crash never leaves a half-written key).
 * Throws, with the path and the fix, when the file is group/world-accessible, malformed, or belongs to
 * another key name.
 */
export async function loadOrCreateSigningKey(dataDir: string, name: string): Promise<SigningKey> {
  const dir = join(dataDir, 'keys')
  const path = join(dir, 'ledger.key')
  await mkdir(dir, { recursive: true, mode: KEY_DIR_MODE })
  try {
    const signer = await readKeyFile(path, name)
    return { signer, verifierKey: signer.verifierKey, path, created: false }
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error
  }

  const { signerKey } = generateKey(name)
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`
  const handle = await open(tmp, 'wx', KEY_FILE_MODE)
  try {
    await handle.writeFile(signerKey + '\n', 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  let created = true
  try {
    // link() publishes the complete file atomically like rename(), but fails instead of replacing a key
    // another process created meanwhile: both then use the first key.
    await link(tmp, path)
    await unlink(tmp)
  } catch (error) {
    if (isErrno(error, 'EEXIST')) {
      created = false
      await unlink(tmp)
    } else if (isErrno(error, 'EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP')) {
      // File systems without hard links: fall back to rename (atomic, but last writer wins).
      await rename(tmp, path)
    } else {
      await unlink(tmp).catch(() => undefined)
      throw error
    }
  }
  await syncDir(dir)
  const signer = await readKeyFile(path, name)
  return { signer, verifierKey: signer.verifierKey, path, created }
}

import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { signCheckpoint, verifyCheckpoint } from './checkpoint.js'
import { loadOrCreateSigningKey } from './key-store.js'
import { EMPTY_ROOT } from './merkle.js'
import { generateKey } from './signed-note.js'

const NAME = 'comfy-audit/host-a'
let dataDir: string

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'comfy-audit-keys-'))
})
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true })
})

describe.skipIf(process.platform === 'win32')('loadOrCreateSigningKey', () => {
  it('creates a key on first start with private permissions', async () => {
    const key = await loadOrCreateSigningKey(dataDir, NAME)
    expect(key.created).toBe(true)
    expect(key.path).toBe(join(dataDir, 'keys', 'ledger.key'))
    expect((await stat(key.path)).mode & 0o777).toBe(0o600)
    expect((await stat(join(dataDir, 'keys'))).mode & 0o777).toBe(0o700)
    expect(await readFile(key.path, 'utf8')).toMatch(
      /^PRIVATE\+KEY\+comfy-audit\/host-a\+[0-9a-f]{8}\+\S+\n$/,
    )
    expect(key.verifierKey).toMatch(/^comfy-audit\/host-a\+[0-9a-f]{8}\+/)
    expect(await readdir(join(dataDir, 'keys'))).toEqual(['ledger.key'])
  })

  it('loads the same key on the next start, and its signatures verify', async () => {
    const first = await loadOrCreateSigningKey(dataDir, NAME)
    const second = await loadOrCreateSigningKey(dataDir, NAME)
    expect(second.created).toBe(false)
    expect(second.verifierKey).toBe(first.verifierKey)
    const note = signCheckpoint(
      { origin: NAME, size: 0, rootHash: EMPTY_ROOT, extensions: [] },
      second.signer,
    )
    expect(verifyCheckpoint(note, first.verifierKey, NAME).ok).toBe(true)
  })

  it('hands every concurrent first start the same key', async () => {
    const keys = await Promise.all(Array.from({ length: 6 }, () => loadOrCreateSigningKey(dataDir, NAME)))
    expect(new Set(keys.map((k) => k.verifierKey)).size).toBe(1)
    expect(keys.filter((k) => k.created).length).toBe(1)
    expect(await readdir(join(dataDir, 'keys'))).toEqual(['ledger.key'])
  })

  it.each([0o640, 0o604, 0o644, 0o660])('refuses a key file with mode %o', async (mode) => {
    const { path } = await loadOrCreateSigningKey(dataDir, NAME)
    await chmod(path, mode)
    await expect(loadOrCreateSigningKey(dataDir, NAME)).rejects.toThrow(
      /accessible by group or others.*chmod 600/,
    )
  })

  it('refuses a key that belongs to another name instead of replacing it', async () => {
    const { path } = await loadOrCreateSigningKey(dataDir, 'comfy-audit/host-b')
    const before = await readFile(path, 'utf8')
    await expect(loadOrCreateSigningKey(dataDir, NAME)).rejects.toThrow(/belongs to "comfy-audit\/host-b"/)
    expect(await readFile(path, 'utf8')).toBe(before)
  })

  it('refuses a malformed or tampered key file', async () => {
    const { path } = await loadOrCreateSigningKey(dataDir, NAME)
    await writeFile(path, 'not a key\n', { mode: 0o600 })
    await expect(loadOrCreateSigningKey(dataDir, NAME)).rejects.toThrow(/malformed/)
    // A valid key whose ID field was edited.
    const skey = generateKey(NAME).signerKey
    const parts = skey.split('+')
    parts[3] = parts[3] === '00000000' ? '00000001' : '00000000'
    await writeFile(path, parts.join('+') + '\n', { mode: 0o600 })
    await expect(loadOrCreateSigningKey(dataDir, NAME)).rejects.toThrow(/key ID does not match/)
  })
})

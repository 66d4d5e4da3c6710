import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command } from 'commander'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createIdentityDirectory } from '../../identity/identity-directory.js'
import { parseToken } from '../../identity/tokens.js'
import { createRuntimeStore } from '../../store/runtime-store.js'
import { createSqliteDialect } from '../../store/sqlite/sqlite-dialect.js'
import { registerUsersCommands } from './users.js'

let dir = ''
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-users-cli-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function cli(...args: string[]): Promise<string[]> {
  const lines: string[] = []
  const program = new Command().exitOverride()
  registerUsersCommands(program, { write: (l) => lines.push(l) })
  await program.parseAsync(['node', 'comfy-audit', ...args, '--data', dir])
  return lines
}

async function verify(token: string): Promise<string> {
  const store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), { origin: 't' })
  try {
    const r = await createIdentityDirectory(store).verifyToken(token)
    return r.ok ? r.value.name : r.reason
  } finally {
    await store.close()
  }
}

describe('users commands', () => {
  it('adds a person and prints a working token as the last line', async () => {
    const out = await cli('users', 'add', 'alice', '--role', 'artist')
    const token = out.at(-1)!
    expect(parseToken(token)).not.toBeNull()
    expect(await verify(token)).toBe('alice')
    const list = await cli('users', 'list')
    expect(list.join('\n')).toMatch(/alice\s+artist\s+active\s+1 .*local:/)
    expect(list.join('\n')).not.toContain(parseToken(token)!.secret)
  })

  it('disables a person and re-tokens with the old token revoked', async () => {
    const first = (await cli('users', 'add', 'bob', '--role', 'admin')).at(-1)!
    const second = (await cli('users', 'token', 'bob')).at(-1)!
    expect(await verify(first)).toBe('unknown token')
    expect(await verify(second)).toBe('bob')
    await cli('users', 'disable', 'bob')
    expect(await verify(second)).toBe('person is disabled')
    expect((await cli('users', 'list')).join('\n')).toMatch(/bob\s+admin\s+disabled/)
  })

  it('refuses an unknown role and an unknown person with a clear message', async () => {
    await expect(cli('users', 'add', 'x', '--role', 'root')).rejects.toThrow(
      /--role: expected one of admin, auditor, artist/,
    )
    await expect(cli('users', 'disable', 'nobody')).rejects.toThrow(/no person named "nobody"/)
  })
})

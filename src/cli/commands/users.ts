import type { Command } from 'commander'
import { ROLES, type Role } from '../../config/roles.js'
import type { createIdentityDirectory, PersonSummary } from '../../identity/identity-directory.js'
import { CliError, cliUser, openCliStore, type CliStoreOptions } from '../open-store.js'

/** Where the users commands write (stdout by default; tests pass their own). */
interface UsersCommandsIo {
  write(line: string): void
}

const stdoutIo: UsersCommandsIo = { write: (line) => void process.stdout.write(line + '\n') }

function parseRole(text: string): Role {
  if ((ROLES as readonly string[]).includes(text)) return text as Role
  throw new CliError(`--role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(text)}`)
}

function storeOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', 'data directory (default ./data)')
    .option('--store <url>', 'store URL: sqlite (default), sqlite:/path, postgres://user@host:port/db')
    .option('--config <file>', 'config file (JSON); environment: COMFY_AUDIT_CONFIG')
}

async function withDirectory<T>(
  opts: CliStoreOptions,
  run: (dir: ReturnType<typeof createIdentityDirectory>) => Promise<T>,
): Promise<T> {
  const store = await openCliStore(
    { data: opts.data, store: opts.store, config: opts.config },
    { create: true },
  )
  try {
    const { createIdentityDirectory } = await import('../../identity/identity-directory.js')
    return await run(createIdentityDirectory(store))
  } finally {
    await store.close()
  }
}

function row(p: PersonSummary): string {
  return [
    p.name.padEnd(20),
    p.role.padEnd(8),
    (p.disabled ? 'disabled' : 'active').padEnd(9),
    String(p.tokens).padEnd(7),
    (p.token_created_at ?? '-').padEnd(25),
    p.created_by,
  ].join(' ')
}

/**
 * `users add|list|disable|enable|token`: people and API tokens, read and written in the store directly.
 * Every change is made as `local:<os user>`. A new token is printed once, as the last line, and never stored.
 */
export function registerUsersCommands(program: Command, io: UsersCommandsIo = stdoutIo): void {
  const users = program.command('users').description('manage people, roles and API tokens')

  storeOptions(
    users
      .command('add <name>')
      .description('add a person and print their first API token (last line)')
      .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`),
  ).action(async (name: string, opts: CliStoreOptions & { role: string }) => {
    const role = parseRole(opts.role)
    const r = await withDirectory(opts, (d) => d.addPerson(name, role, cliUser()))
    if (!r.ok) throw new CliError(`users add: ${r.reason}`)
    io.write(`added ${name} (${role}); the token is shown only now, store it safely:`)
    io.write(r.value.token)
  })

  storeOptions(users.command('list').description('list people (no secrets)')).action(
    async (opts: CliStoreOptions) => {
      const people = await withDirectory(opts, (d) => d.listPeople())
      io.write(
        [
          'NAME'.padEnd(20),
          'ROLE'.padEnd(8),
          'STATE'.padEnd(9),
          'TOKENS'.padEnd(7),
          'TOKEN CREATED'.padEnd(25),
          'CREATED BY',
        ].join(' '),
      )
      for (const p of people) io.write(row(p))
    },
  )

  storeOptions(
    users.command('disable <name>').description('disable a person: tokens and sessions stop at once'),
  ).action(async (name: string, opts: CliStoreOptions) => {
    const r = await withDirectory(opts, (d) => d.disablePerson(name, cliUser()))
    if (!r.ok) throw new CliError(`users disable: ${r.reason}`)
    io.write(`disabled ${name}`)
  })

  storeOptions(users.command('enable <name>').description('enable a disabled person again')).action(
    async (name: string, opts: CliStoreOptions) => {
      const r = await withDirectory(opts, (d) => d.enablePerson(name, cliUser()))
      if (!r.ok) throw new CliError(`users enable: ${r.reason}`)
      io.write(`enabled ${name}`)
    },
  )

  storeOptions(
    users
      .command('token <name>')
      .description('issue a new token (last line); older tokens and logins are revoked'),
  ).action(async (name: string, opts: CliStoreOptions) => {
    const r = await withDirectory(opts, (d) => d.reissueToken(name, cliUser()))
    if (!r.ok) throw new CliError(`users token: ${r.reason}`)
    io.write(`new token for ${name}; older tokens and browser sessions are revoked:`)
    io.write(r.value.token)
  })
}

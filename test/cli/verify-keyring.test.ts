/**
 * Issue 10 item 8 (rest): `verify` over a store that several gateways write takes a keyring (one verifier key
 * per origin, a file or a directory of files) and checks every origin in one run; a PostgreSQL store URL whose
 * database is missing, empty or unreachable makes read-only commands say so in one line and exit non-zero,
 * without creating the database or any table. Real SQLite and PostgreSQL, the real CLI in a child process.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKey } from '../../src/ledger/signed-note.js'
import { cli } from '../helpers/cli.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'
import { writeSignedLog } from '../helpers/signed-log.js'
import { sessionEvents } from '../ledger/ledger-fixture.js'

const ORIGINS = ['comfy-audit/gpu-01', 'comfy-audit/gpu-02'] as const

let root: string
let storePath: string
const keys = new Map<string, string>()

/** One shared SQLite store written by two logs in turn, each signing with the key of its own data dir. */
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ca-keyring-'))
  storePath = join(root, 'shared.sqlite')
  for (const [i, origin] of ORIGINS.entries()) {
    const data = join(root, `data-${i + 1}`)
    const log = await writeSignedLog(
      { sqlite: { path: storePath }, data, origin, checkpointEvery: 3 },
      async (store) => {
        for (const e of sessionEvents(`g${i + 1}-s1`, 'alice', i * 1000)) await store.append([e])
      },
    )
    keys.set(origin, log.verifierKey)
  }
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

const verify = (...args: string[]) => cli('verify', '--store', `sqlite:${storePath}`, '--data', root, ...args)

describe('issue 10 item 8: verify with a keyring over a multi-origin store', () => {
  it('checks every origin in one run from a keyring file (what `comfy-audit key` prints, one per line)', async () => {
    // The keys as an admin collects them: `comfy-audit key` on each gateway's data dir.
    const printed: string[] = []
    for (const [i, origin] of ORIGINS.entries()) {
      const r = await cli('key', '--data', join(root, `data-${i + 1}`), '--origin', origin)
      expect(r.code).toBe(0)
      printed.push(r.stdout.trim())
    }
    expect(printed).toEqual(ORIGINS.map((o) => keys.get(o)))
    const ring = join(root, 'keyring.txt')
    await writeFile(ring, `# studio gateways\n${printed[0]}\n\n${printed[1]}\n`)
    const r = await verify('--keyring', ring)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    for (const origin of ORIGINS)
      expect(r.stdout).toMatch(new RegExp(`^${origin}: 7 events, \\d+ checkpoints`, 'm'))
    expect(r.stdout.trim().split('\n').at(-1)).toBe('OK')
  })

  it('reads a directory of key files, one per gateway', async () => {
    const dir = join(root, 'keys.d')
    await mkdir(dir)
    for (const [i, origin] of ORIGINS.entries())
      await writeFile(join(dir, `gpu-0${i + 1}.pub`), `${keys.get(origin)}\n`)
    await writeFile(join(dir, '.hidden'), 'not a key, skipped')
    const r = await verify('--keyring', dir, '--json')
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout) as { ok: boolean; origins: { origin: string }[] }
    expect(report.ok).toBe(true)
    expect(report.origins.map((o) => o.origin).sort()).toEqual([...ORIGINS])
  })

  it('fails an origin whose key is missing from the keyring, or wrong, and names it', async () => {
    const missing = join(root, 'only-first.txt')
    await writeFile(missing, `${keys.get(ORIGINS[0])}\n`)
    const a = await verify('--keyring', missing)
    expect(a.code).toBe(1)
    expect(a.stdout).toMatch(new RegExp(`FAIL .*no verifier key for ${ORIGINS[1]}`))

    const forged = join(root, 'forged.txt')
    await writeFile(forged, `${keys.get(ORIGINS[0])}\n${generateKey(ORIGINS[1]).verifierKey}\n`)
    const b = await verify('--keyring', forged)
    expect(b.code).toBe(1)
    expect(b.stdout).toMatch(new RegExp(`FAIL .*${ORIGINS[1]}`))
    expect(b.stdout).not.toMatch(new RegExp(`FAIL .*${ORIGINS[0]}[^/]`))
  })

  it('refuses a bad keyring in one line naming the file and line', async () => {
    const bad = join(root, 'bad.txt')
    await writeFile(bad, `${keys.get(ORIGINS[0])}\nnot-a-key\n`)
    const r = await verify('--keyring', bad)
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim()).toMatch(new RegExp(`^comfy-audit: --keyring: ${bad}:2: not a verifier key`))
    expect(r.stderr.trim().split('\n')).toHaveLength(1)

    const twice = join(root, 'twice.txt')
    await writeFile(twice, `${keys.get(ORIGINS[1])}\n${generateKey(ORIGINS[1]).verifierKey}\n`)
    const t = await verify('--keyring', twice)
    expect(t.code).not.toBe(0)
    expect(t.stderr).toMatch(
      /twice\.txt:2: a second, different key for comfy-audit\/gpu-02 \(the first is at .*twice\.txt:1\)/,
    )

    const none = await verify('--keyring', join(root, 'no-such-keyring'))
    expect(none.code).not.toBe(0)
    expect(none.stderr).toMatch(/--keyring: cannot read .*no-such-keyring \(ENOENT\)/)

    const both = await verify('--keyring', bad, '--key', keys.get(ORIGINS[0])!)
    expect(both.code).not.toBe(0)
    expect(both.stderr).toMatch(/--key and --keyring/)
  })
})

describe('issue 10 item 8: read-only commands on a PostgreSQL store that is missing, empty or unreachable', () => {
  let cluster: PostgresCluster
  let admin: pg.Client
  beforeAll(async () => {
    cluster = await startPostgres()
    admin = new pg.Client({ connectionString: cluster.url })
    await admin.connect()
  }, 120_000)
  afterAll(async () => {
    await admin?.end()
    await cluster?.stop()
  })

  const databases = async (): Promise<string[]> =>
    (await admin.query<{ datname: string }>('SELECT datname FROM pg_database')).rows.map((r) => r.datname)
  const tablesIn = async (url: string): Promise<number> => {
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    try {
      const r = await c.query<{ n: string }>(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
      )
      return Number(r.rows[0]!.n)
    } finally {
      await c.end()
    }
  }
  const READ_ONLY: [string, string[]][] = [
    ['sessions', ['sessions']],
    ['show', ['show', 'p-1']],
    ['export', ['export']],
    ['status', ['status']],
  ]

  it.each(READ_ONLY)('%s on a database that does not exist says so and creates nothing', async (_, args) => {
    const url = cluster.url.replace(/\/[^/]+$/, '/no_such_audit_db')
    const before = await databases()
    const r = await cli(...args, '--store', url, '--data', root)
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(
      /postgres store postgres:\/\/postgres@127\.0\.0\.1:\d+\/no_such_audit_db: cannot connect: .*does not exist/,
    )
    expect(await databases()).toEqual(before)
  })

  it.each(READ_ONLY)(
    '%s on an empty database says there is no audit store and creates no table',
    async (_, args) => {
      const url = await cluster.createDatabase()
      const r = await cli(...args, '--store', url, '--data', root)
      expect(r.code).not.toBe(0)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(/no audit store in postgres:\/\/.*no comfy-audit tables/)
      expect(await tablesIn(url)).toBe(0)
    },
  )

  it('verify with a keyring on an empty database creates no table either', async () => {
    const url = await cluster.createDatabase()
    const ring = join(root, 'pg-keyring.txt')
    await writeFile(ring, `${keys.get(ORIGINS[0])}\n`)
    const r = await cli('verify', '--store', url, '--keyring', ring)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/no audit store in postgres:/)
    expect(await tablesIn(url)).toBe(0)
  })

  it('names an unreachable server in one line, without the password', async () => {
    // A port nothing listens on: taken, then freed.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port
        s.close(() => resolve(p))
      })
    })
    const r = await cli(
      'sessions',
      '--store',
      `postgres://auditor:s3cret-pw@127.0.0.1:${port}/audit`,
      '--data',
      root,
    )
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(
      new RegExp(`postgres://auditor@127\\.0\\.0\\.1:${port}/audit: cannot connect: .*ECONNREFUSED`),
    )
    expect(r.stderr).not.toContain('s3cret-pw')
  })
})

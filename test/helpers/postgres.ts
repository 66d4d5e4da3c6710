/**
 * A throwaway PostgreSQL cluster for tests: Debian's `postgresql` package binaries, a temp data directory,
 * a free loopback port, trust authentication. One cluster per test file (beforeAll/afterAll); each test
 * may take a fresh database from it.
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

const run = promisify(execFile)

/** A running cluster. */
export interface PostgresCluster {
  /** URL of a database created at start (`postgres://postgres@127.0.0.1:PORT/comfy_audit_test`). */
  readonly url: string
  /** Creates another empty database and returns its URL. */
  createDatabase(): Promise<string>
  /** Stops the server (fast shutdown: connections are cut) and keeps its files, for a fault test. */
  pause(): Promise<void>
  /** Starts a paused server again on the same port; resolves once it accepts connections. */
  resume(): Promise<void>
  /** Stops the server (fast shutdown) and removes its files. */
  stop(): Promise<void>
}

const INSTALL_HINT = 'PostgreSQL not found: apt-get install -y postgresql'

/** The bin folder of the newest installed PostgreSQL, or undefined. */
export function findPostgresBin(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin')
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Starts a cluster; throws naming the package when PostgreSQL is not installed. */
export async function startPostgres(): Promise<PostgresCluster> {
  const bin = findPostgresBin()
  if (!bin) throw new Error(INSTALL_HINT)
  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-pg-'))
  const dataDir = join(dir, 'data')
  const logFile = join(dir, 'server.log')
  // initdb refuses to run as root: run the server as the `postgres` OS user, which must own the folder.
  const asRoot = process.getuid?.() === 0
  const cmd = async (tool: string, args: string[]): Promise<void> => {
    if (asRoot) await run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args])
    else await run(join(bin, tool), args)
  }
  try {
    if (asRoot) {
      const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim())
      const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim())
      await chown(dir, uid, gid)
    }
    await cmd('initdb', [
      '-D',
      dataDir,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--no-sync',
      '--locale=C.UTF-8',
    ])
    let port = 0
    // -w: pg_ctl waits until the server accepts connections (readiness, not a fixed sleep).
    const pgStart = (): Promise<void> =>
      cmd('pg_ctl', [
        '-D',
        dataDir,
        '-l',
        logFile,
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
        'start',
      ])
    // A port found free can be taken before the server binds it; try a few.
    for (let attempt = 0; ; attempt++) {
      port = await freePort()
      try {
        await pgStart()
        break
      } catch (error) {
        if (attempt >= 2) {
          const log = await readFile(logFile, 'utf8').catch(() => '')
          throw new Error(`PostgreSQL did not start: ${String(error)}\n${log}`)
        }
      }
    }
    await run(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-t', '30'])
    const base = `postgres://postgres@127.0.0.1:${port}`
    let counter = 0
    const createDatabase = async (): Promise<string> => {
      const name = `comfy_audit_test_${++counter}`
      const client = new pg.Client({ connectionString: `${base}/postgres` })
      await client.connect()
      try {
        await client.query(`CREATE DATABASE ${name}`)
      } finally {
        await client.end()
      }
      return `${base}/${name}`
    }
    const url = await createDatabase()
    let stopped = false
    return {
      url,
      createDatabase,
      pause: () => cmd('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']),
      resume: pgStart,
      async stop() {
        if (stopped) return
        stopped = true
        try {
          // Already stopped when a test paused it and did not resume.
          await cmd('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']).catch(() => {})
        } finally {
          await rm(dir, { recursive: true, force: true })
        }
      },
    }
  } catch (error) {
    await cmd('pg_ctl', ['-D', dataDir, '-m', 'immediate', 'stop']).catch(() => {})
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

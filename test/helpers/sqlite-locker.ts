/**
 * Another process holding a SQLite database locked (`BEGIN EXCLUSIVE`), as a backup tool or a second writer
 * would: every commit of the gateway waits busy_timeout and fails with SQLITE_BUSY until release().
 */
import { spawn } from 'node:child_process'

/** A child process holding the lock. */
export interface SqliteLocker {
  /** Commits the child's transaction and waits for it to exit. */
  release(): Promise<void>
}

const SCRIPT = `
const Database = require('better-sqlite3')
const db = new Database(process.argv[1])
db.pragma('busy_timeout = 10000')
db.exec('BEGIN EXCLUSIVE')
process.stdout.write('locked\\n')
process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0) })
`

/** Starts the child and resolves once it holds the exclusive lock. */
export async function lockSqlite(path: string, cwd: string): Promise<SqliteLocker> {
  const child = spawn(process.execPath, ['-e', SCRIPT, path], { cwd, stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve())
    child.once('exit', (code) => reject(new Error(`sqlite locker exited with ${code} before locking`)))
  })
  return {
    async release() {
      if (child.exitCode === null && child.signalCode === null) child.stdin.write('release\n')
      await exited
    },
  }
}

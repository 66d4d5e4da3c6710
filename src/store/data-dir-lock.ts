/**
 * One owner per directory: an exclusive lock file (`<dir>/.comfy-audit.lock`) holding the owner's pid,
 * host and purpose. Two processes writing one data dir corrupt the sequence numbers; two sink pipelines on
 * one spool overwrite each other's segments. The second one is refused with a message naming the holder.
 *
 * The file is created with `O_EXCL`, so of two processes racing only one wins. A lock whose pid is no longer
 * alive on this host (a SIGKILLed gateway never removes its file) is stale and taken over; a lock from
 * another host is never taken over, since its pid cannot be checked from here.
 */
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'

/** The name of the lock file inside a locked directory. */
export const LOCK_FILE_NAME = '.comfy-audit.lock'

/** What a lock file says about its holder. */
interface DirLockHolder {
  readonly pid: number
  readonly host: string
  /** What holds it, e.g. `gateway` or `spool loki`. */
  readonly purpose: string
  /** ISO 8601 time the lock was taken. */
  readonly since: string
}

/** A held lock; `release()` removes the file if it is still ours and is idempotent. */
export interface DirLock {
  readonly dir: string
  readonly path: string
  release(): void
}

/** Thrown when another live process (or this one, elsewhere) holds the directory; callers branch on it. */
export class DirLockedError extends Error {
  readonly holder: DirLockHolder | null
  constructor(dir: string, holder: DirLockHolder | null, purpose: string) {
    const who = holder
      ? `${holder.purpose} (pid ${holder.pid} on ${holder.host}, since ${holder.since})`
      : 'another process (lock file unreadable)'
    super(
      `${purpose}: ${dir} is in use by ${who}; stop that process or use another directory ` +
        `(remove ${join(dir, LOCK_FILE_NAME)} only if you are sure it is not running)`,
    )
    this.name = 'DirLockedError'
    this.holder = holder
  }
}

/** Options of {@link acquireDirLock}. */
interface DirLockOptions {
  /** What takes the lock, shown to whoever is refused (e.g. `gateway`, `spool loki`). */
  readonly purpose: string
  /** Whether a pid is alive (tests); default: `process.kill(pid, 0)`. */
  readonly isAlive?: (pid: number) => boolean
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readHolder(path: string): DirLockHolder | null | 'missing' {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    return null
  }
  try {
    const v = JSON.parse(text) as Partial<DirLockHolder>
    if (typeof v.pid !== 'number' || typeof v.host !== 'string') return null
    return {
      pid: v.pid,
      host: v.host,
      purpose: typeof v.purpose === 'string' ? v.purpose : 'unknown',
      since: typeof v.since === 'string' ? v.since : 'unknown',
    }
  } catch {
    return null
  }
}

/**
 * Takes the lock of `dir` (which must exist), or throws {@link DirLockedError} naming the holder. Synchronous,
 * so that nothing else can happen between the check and the start of the work it guards.
 * @example
 * const lock = acquireDirLock(config.data, { purpose: 'gateway' })
 * try { ... } finally { lock.release() }
 */
export function acquireDirLock(dir: string, options: DirLockOptions): DirLock {
  const path = join(dir, LOCK_FILE_NAME)
  const isAlive = options.isAlive ?? pidAlive
  const me: DirLockHolder = {
    pid: process.pid,
    host: hostname(),
    purpose: options.purpose,
    since: new Date().toISOString(),
  }
  const body = JSON.stringify(me) + '\n'
  // Two rounds at most: the first may find a stale lock and remove it; a second loss means a live rival.
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number
    try {
      fd = openSync(path, 'wx', 0o600)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const holder = readHolder(path)
      if (holder === 'missing') continue // released meanwhile: try again
      // Unreadable or half-written (a crash between create and write): refuse rather than guess.
      if (holder === null) throw new DirLockedError(dir, null, options.purpose)
      const stale = holder.host === me.host && holder.pid !== process.pid && !isAlive(holder.pid)
      if (!stale) throw new DirLockedError(dir, holder, options.purpose)
      // Take over a dead holder's lock: rename it away first, so that of two processes taking over at once
      // only one removes the dead lock and the other then finds the winner's fresh one.
      const aside = `${path}.stale-${process.pid}`
      try {
        renameSync(path, aside)
      } catch (renameError) {
        if ((renameError as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw renameError
      }
      const moved = readHolder(aside)
      if (moved !== 'missing' && moved !== null && moved.pid !== holder.pid) {
        // We moved a live rival's fresh lock: put it back and give way.
        renameSync(aside, path)
        throw new DirLockedError(dir, moved, options.purpose)
      }
      unlinkSync(aside)
      continue
    }
    try {
      writeSync(fd, body)
    } finally {
      closeSync(fd)
    }
    let released = false
    return {
      dir,
      path,
      release() {
        if (released) return
        released = true
        const holder = readHolder(path)
        if (holder !== 'missing' && holder !== null && holder.pid === me.pid && holder.since === me.since) {
          try {
            unlinkSync(path)
          } catch {
            // Already gone: nothing to release.
          }
        }
      },
    }
  }
  throw new DirLockedError(dir, null, options.purpose)
}

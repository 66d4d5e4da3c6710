/**
 * SHA-256 of files in worker threads, streaming, so hashing a multi-gigabyte model never blocks the event
 * loop that proxies ComfyUI traffic. The worker is plain JavaScript evaluated from a string, so it runs the
 * same under tsx, vitest and the compiled build.
 */
import { Worker } from 'node:worker_threads'

/** A file's digest. */
export interface FileDigest {
  readonly sha256: string
  readonly bytes: number
}

/** Hashes files on a small pool of worker threads. */
export interface FileHasher {
  /** Streams the file through SHA-256 on a worker; rejects with the file system error. */
  hash(path: string): Promise<FileDigest>
  /** Stops the workers; pending hashes reject. Idempotent. */
  close(): Promise<void>
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createReadStream } = require('node:fs')
const { createHash } = require('node:crypto')
parentPort.on('message', ({ id, path }) => {
  const hash = createHash('sha256')
  let bytes = 0
  createReadStream(path, { highWaterMark: 1 << 20 })
    .on('data', (chunk) => { bytes += chunk.length; hash.update(chunk) })
    .on('error', (error) => parentPort.postMessage({ id, error: error.message, code: error.code }))
    .on('end', () => parentPort.postMessage({ id, sha256: hash.digest('hex'), bytes }))
})
`

interface Job {
  readonly path: string
  readonly resolve: (d: FileDigest) => void
  readonly reject: (e: Error) => void
}

interface Reply {
  id: number
  sha256?: string
  bytes?: number
  error?: string
  code?: string
}

/** Creates a pool of `workers` threads (default 2), started on first use and unref()ed while idle. */
export function createFileHasher(options: { workers?: number } = {}): FileHasher {
  const size = Math.max(1, options.workers ?? 2)
  const idle: Worker[] = []
  const all: Worker[] = []
  const queue: Job[] = []
  const running = new Map<Worker, { id: number; job: Job }>()
  let nextId = 0
  let closed = false

  const spawn = (): Worker => {
    const worker = new Worker(WORKER_SOURCE, { eval: true })
    worker.unref()
    worker.on('message', (reply: Reply) => {
      const current = running.get(worker)
      running.delete(worker)
      if (current && current.id === reply.id) {
        if (reply.error !== undefined) {
          const error = new Error(`${reply.error}`) as NodeJS.ErrnoException
          if (reply.code) error.code = reply.code
          current.job.reject(error)
        } else current.job.resolve({ sha256: reply.sha256 ?? '', bytes: reply.bytes ?? 0 })
      }
      idle.push(worker)
      worker.unref()
      pump()
    })
    worker.on('error', (error) => {
      running.get(worker)?.job.reject(error)
      running.delete(worker)
      all.splice(all.indexOf(worker), 1)
      pump()
    })
    all.push(worker)
    return worker
  }

  const pump = (): void => {
    while (queue.length > 0 && !closed) {
      const worker = idle.pop() ?? (all.length < size ? spawn() : undefined)
      if (!worker) return
      const job = queue.shift() as Job
      const id = nextId++
      running.set(worker, { id, job })
      // Referenced while it works, so a pending hash keeps the process alive.
      worker.ref()
      worker.postMessage({ id, path: job.path })
    }
  }

  return {
    hash(path) {
      if (closed) return Promise.reject(new Error('file hasher is closed'))
      return new Promise<FileDigest>((resolve, reject) => {
        queue.push({ path, resolve, reject })
        pump()
      })
    },
    async close() {
      if (closed) return
      closed = true
      for (const job of queue.splice(0)) job.reject(new Error('file hasher is closed'))
      for (const { job } of running.values()) job.reject(new Error('file hasher is closed'))
      running.clear()
      await Promise.all(all.map((w) => w.terminate()))
    },
  }
}

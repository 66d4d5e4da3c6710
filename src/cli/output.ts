/**
 * Writing command output: a closed pipe (`comfy-audit export | head -1`) or a failing file must end a command
 * with one line and a non-zero exit code, never an unhandled 'error' event and its stack trace.
 */
import type { Writable } from 'node:stream'

/** The first error of each output stream (a closed pipe, a full disk), kept until the next write. */
const streamErrors = new WeakMap<Writable, { error: Error | null }>()

/** Starts keeping `stream`'s first error (once per stream). */
export function watchErrors(stream: Writable): { error: Error | null } {
  let state = streamErrors.get(stream)
  if (!state) {
    const s: { error: Error | null } = { error: null }
    stream.on('error', (error: Error) => {
      s.error ??= error
    })
    streamErrors.set(stream, s)
    state = s
  }
  return state
}

/**
 * Writes to an output stream, waiting for it to drain. A stream error (EPIPE when the reader of a pipe went
 * away, `export … | head -1`) is thrown by this call or the next one, so that the command stops writing and
 * says so in one line, instead of an unhandled 'error' event ending the process with a stack trace.
 */
export async function write(stream: Writable, text: string): Promise<void> {
  const state = watchErrors(stream)
  if (state.error) throw state.error
  if (!stream.write(text)) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        stream.off('drain', done)
        stream.off('error', done)
        stream.off('close', done)
        resolve()
      }
      stream.once('drain', done)
      stream.once('error', done)
      stream.once('close', done)
    })
  }
  if (state.error) throw state.error
}

/** Whether a command watches `stream`'s errors itself (then it reports them, with what it knows). */
export function errorsWatched(stream: Writable): boolean {
  return streamErrors.has(stream)
}

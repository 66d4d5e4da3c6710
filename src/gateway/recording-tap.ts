import type { CaptureTap } from '../capture/tap.js'

type Calls = {
  promptSubmitted: Parameters<CaptureTap['promptSubmitted']>[0]
  promptAnswered: Parameters<CaptureTap['promptAnswered']>[0]
  promptRefused: Parameters<CaptureTap['promptRefused']>[0]
  frame: Parameters<CaptureTap['frame']>[0]
  action: Parameters<CaptureTap['action']>[0]
}

/** One recorded tap call. */
type TapCall = { [K in keyof Calls]: { method: K; event: Calls[K] } }[keyof Calls]

/** A {@link CaptureTap} that keeps every call, for tests and diagnostics. */
export interface RecordingTap extends CaptureTap {
  /** Every call, in order. */
  readonly calls: TapCall[]
  /** The events of one method, in order. */
  of<K extends keyof Calls>(method: K): Calls[K][]
  /** Resolves with the first call (already made or future) that matches; rejects after `timeoutMs` (default 5000). */
  waitFor<K extends keyof Calls>(
    method: K,
    match?: (e: Calls[K]) => boolean,
    timeoutMs?: number,
  ): Promise<Calls[K]>
}

/** Creates a {@link RecordingTap}. */
export function createRecordingTap(): RecordingTap {
  const calls: TapCall[] = []
  const waiters = new Set<(c: TapCall) => void>()
  const record = (c: TapCall): void => {
    calls.push(c)
    for (const w of [...waiters]) w(c)
  }
  const of = <K extends keyof Calls>(method: K): Calls[K][] =>
    calls.filter((c) => c.method === method).map((c) => c.event as Calls[K])
  return {
    calls,
    of,
    promptSubmitted: (event) => record({ method: 'promptSubmitted', event }),
    promptAnswered: (event) => record({ method: 'promptAnswered', event }),
    promptRefused: (event) => record({ method: 'promptRefused', event }),
    frame: (event) => record({ method: 'frame', event }),
    action: (event) => record({ method: 'action', event }),
    waitFor<K extends keyof Calls>(
      method: K,
      match: (e: Calls[K]) => boolean = () => true,
      timeoutMs = 5000,
    ) {
      const found = of(method).find(match)
      if (found) return Promise.resolve(found)
      return new Promise<Calls[K]>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(w)
          reject(new Error(`no ${method} call matched within ${timeoutMs} ms`))
        }, timeoutMs)
        const w = (c: TapCall): void => {
          if (c.method !== method || !match(c.event as Calls[K])) return
          clearTimeout(timer)
          waiters.delete(w)
          resolve(c.event as Calls[K])
        }
        waiters.add(w)
      })
    },
  }
}

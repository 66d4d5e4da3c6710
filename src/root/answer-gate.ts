/**
 * Holds capture's analysis of a POST /prompt body (strict parse, redaction, hashing: milliseconds of CPU for a
 * real workflow) until the gateway has forwarded ComfyUI's answer to that prompt. The tap is told of the
 * submission before forwarding, and capture starts its work in the very next microtask: on the gateway's one
 * thread that work would run while ComfyUI's answer waits to be read, and the client would wait with it.
 * Holding it costs nothing but order: capture's queue is serial, so what it does after the analysis waits too,
 * while relaying (frames, answers) never waits on capture.
 */

/** Longest an analysis is held when the answer is slow or never reported: then it runs anyway. */
const MAX_HOLD_MS = 10_000

/** See the module comment. */
export interface AnswerGate {
  /** The tap heard of a submission: its bodies are held until {@link answered} for `promptId`. */
  submitted(promptId: string, bodies: readonly Buffer[]): void
  /** The gateway forwarded the answer to `promptId` (or answered it itself): its analysis may run. */
  answered(promptId: string): void
  /** Resolves when `body` may be analysed: at once unless it is held. */
  whenAnswered(body: Buffer): Promise<void>
}

/** Creates an {@link AnswerGate}; `maxHoldMs` bounds every hold (default 10 s). */
export function createAnswerGate(maxHoldMs = MAX_HOLD_MS): AnswerGate {
  const held = new WeakMap<Buffer, Promise<void>>()
  const releases = new Map<string, () => void>()
  const done = Promise.resolve()
  return {
    submitted(promptId, bodies) {
      // Empty bodies (a prompt the gateway refused itself) have nothing to analyse, and share one Buffer.
      const toHold = bodies.filter((b) => b.length > 0)
      if (toHold.length === 0) return
      releases.get(promptId)?.()
      let release!: () => void
      const open = new Promise<void>((resolve) => {
        const timer = setTimeout(() => release(), maxHoldMs)
        timer.unref()
        release = () => {
          clearTimeout(timer)
          if (releases.get(promptId) === release) releases.delete(promptId)
          for (const b of toHold) held.delete(b)
          resolve()
        }
      })
      for (const b of toHold) held.set(b, open)
      releases.set(promptId, release)
    },
    answered(promptId) {
      releases.get(promptId)?.()
    },
    whenAnswered(body) {
      return held.get(body) ?? done
    },
  }
}

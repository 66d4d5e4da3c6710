/**
 * The one ordered chain capture runs its work on: tap calls only enqueue (the proxy path never waits and never
 * sees an exception), tasks run one at a time in arrival order so events keep the order in which the gateway
 * saw the bytes, and each task's events are redacted and emitted together.
 */
import type { AuditEventInput } from '../audit/types.js'
import { redactEvent, type TextRedactor } from './redact-event.js'

/** One unit of capture's work: it pushes the events it produces onto `out`. */
type CaptureTask = (out: AuditEventInput[]) => void | Promise<void>

export function serialQueue(
  c: {
    readonly emit: (events: AuditEventInput[]) => void
    readonly onError: (err: unknown) => void
    readonly redactText: TextRedactor | null
    readonly flags: { readonly closed: boolean }
  },
  afterEach: () => void,
) {
  const { emit, onError, redactText, flags } = c
  let chain: Promise<void> = Promise.resolve()
  const enqueue = (task: CaptureTask): void => {
    if (flags.closed) return
    chain = chain.then(async () => {
      const out: AuditEventInput[] = []
      try {
        await task(out)
      } catch (err) {
        onError(err)
      }
      if (out.length > 0) {
        try {
          // One place every event passes: whatever field it has, its strings are redacted before the store
          // (and through it the ledger and every sink) sees them.
          emit(redactText ? out.map((e) => redactEvent(e, redactText)) : out)
        } catch (err) {
          onError(err)
        }
      }
      afterEach()
    })
  }
  /** Resolves when every task enqueued so far, and every task those enqueued, has run. */
  const flush = async (): Promise<void> => {
    let current: Promise<void>
    do {
      current = chain
      await current
    } while (current !== chain)
  }
  return { enqueue, flush }
}

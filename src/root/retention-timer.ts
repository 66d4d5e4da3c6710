/**
 * Retention runs inside the gateway, through its own store, so it never competes for sequence numbers: one
 * pass at start and one per `retention.checkIntervalMillis`.
 */
import { reportError, type Logger } from '../audit/report-error.js'
import { runRetention } from '../query/retention-job.js'

/** Options of {@link startRetentionTimer}. */
interface RetentionTimerOptions {
  readonly store: Parameters<typeof runRetention>[0]['store']
  /** Payloads older than this are removed, ms. */
  readonly keepMillis: number
  /** Folders of JSONL sinks whose old files go too. */
  readonly jsonlDirs: readonly string[]
  /** Period of the passes, ms. */
  readonly intervalMillis: number
  readonly logger: Logger
}

/** Runs a pass now and then periodically (never two at once); returns a function that stops the timer. */
export function startRetentionTimer(options: RetentionTimerOptions): () => void {
  const { store, keepMillis, jsonlDirs, logger } = options
  let running: Promise<void> | null = null
  const pass = (): void => {
    running ??= runRetention({ store, keepMillis, jsonlDirs, user: 'gateway:retention' })
      .then((r) => {
        if (r.store.pruned > 0 || r.files.length > 0) {
          logger.info(
            `retention: removed ${r.store.pruned} payloads and ${r.files.length} JSONL files before ${r.before}`,
          )
        }
      })
      .catch((err: unknown) => reportError(err, 'retention'))
      .finally(() => {
        running = null
      })
  }
  pass()
  const timer = setInterval(pass, options.intervalMillis)
  timer.unref()
  return () => clearInterval(timer)
}

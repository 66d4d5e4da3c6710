/**
 * Log output under the redaction policy. A log line is written as often as an event and read by more people
 * (whoever reads the host's logs), and it carries request details (a refusal's reason naming the prompt ids
 * asked for, a User-Agent, an upstream error quoting a URL): the same text rules apply to it as to events.
 */
import type { ErrorHandler, Logger } from '../audit/report-error.js'
import { redactString } from '../capture/redact-event.js'

/** Text rules of a redaction policy (see `RedactionPolicy.text`). */
export type LogTextRedactor = (text: string) => string

function redactField(value: unknown, text: LogTextRedactor, depth: number): unknown {
  if (typeof value === 'string') return redactString(value, text)
  if (value instanceof Error) return text(value.message)
  // Log fields are small, flat records; deeper than this is not worth walking and is written as text.
  if (depth > 8) return text(String(value))
  if (Array.isArray(value)) return value.map((v) => redactField(v, text, depth + 1))
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = redactField(v, text, depth + 1)
    return out
  }
  return value
}

/**
 * A logger that passes every message and field through `text` before `logger` sees it.
 *
 * @example
 * const logger = redactingLogger(consoleLogger(), createRedactor(config.redaction).text)
 */
export function redactingLogger(logger: Logger, text: LogTextRedactor): Logger {
  const clean = (fields?: Record<string, unknown>): Record<string, unknown> | undefined =>
    fields === undefined ? undefined : (redactField(fields, text, 0) as Record<string, unknown>)
  return {
    info: (message, fields) => logger.info(text(message), clean(fields)),
    warn: (message, fields) => logger.warn(text(message), clean(fields)),
    error: (message, fields) => logger.error(text(message), clean(fields)),
  }
}

/**
 * An error handler (see `setErrorHandler`) that hands `handler` the error's message and the context
 * redacted by `text`: errors nobody handles end up in the log too, quoting whatever value they were about.
 */
export function redactingErrorHandler(handler: ErrorHandler, text: LogTextRedactor): ErrorHandler {
  return (error, context) => {
    const message = error instanceof Error ? error.message : String(error)
    handler(new Error(text(message)), context === undefined ? undefined : text(context))
  }
}

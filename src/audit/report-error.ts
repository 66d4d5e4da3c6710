/**
 * The one place errors that nobody can handle are reported. It never throws. The CLI installs a handler that
 * writes a line to stderr; libraries and tests may install their own.
 */
export type ErrorHandler = (error: unknown, context?: string) => void

let handler: ErrorHandler = () => {}

/** Installs the process-wide error handler; returns the previous one. */
export function setErrorHandler(next: ErrorHandler): ErrorHandler {
  const previous = handler
  handler = next
  return previous
}

/** Reports an error without throwing, whatever the handler does. */
export function reportError(error: unknown, context?: string): void {
  try {
    handler(error, context)
  } catch {
    // A failing error handler must not take the gateway down with it.
  }
}

/** A minimal structured logger; the CLI writes JSON lines or text, tests collect entries. */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}

/** A logger that drops everything (the default for libraries). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} }

/**
 * ComfyUI's log ring buffer (`app/logger.py`) and its terminal service
 * (`api_server/services/terminal_service.py`): the last 300 writes, and `logs` WebSocket events to the
 * client ids that subscribed through `PATCH /internal/logs/subscribe`.
 */
import type { PyObject, PyValue } from './py-json.js'

export interface LogEntry {
  readonly t: string
  readonly m: string
}

interface LogTerminalOptions {
  /** Local ISO timestamp for an entry (Python's `datetime.now().isoformat()`). */
  readonly timestamp: () => string
  /** Sends one WebSocket event to one client id. */
  readonly send: (event: string, data: PyValue, sid: string) => void
  /** Whether a client id currently has a socket (`sid in server.sockets`). */
  readonly connected: (sid: string) => boolean
  readonly capacity?: number
}

/** The stand-in's terminal: what it "printed", and who watches it. */
export class LogTerminal {
  readonly #entries: LogEntry[] = []
  readonly #subscriptions = new Set<string>()
  readonly #o: LogTerminalOptions
  #cols: number | null = null
  #rows: number | null = null

  constructor(options: LogTerminalOptions) {
    this.#o = options
  }

  entries(): readonly LogEntry[] {
    return this.#entries
  }

  /**
   * One write to stdout/stderr followed by its flush, as a logging handler does: the entry joins the ring
   * and goes to every subscriber still connected (one that is gone is unsubscribed, as ComfyUI does).
   */
  write(m: string): void {
    const entry = { t: this.#o.timestamp(), m }
    const last = this.#entries.at(-1)
    // A carriage-return write replaces an unfinished last line, so progress bars do not fill the ring.
    if (m.startsWith('\r') && last !== undefined && !last.m.endsWith('\n')) this.#entries.pop()
    this.#entries.push(entry)
    if (this.#entries.length > (this.#o.capacity ?? 300)) this.#entries.shift()
    if (this.#subscriptions.size === 0) return
    const size = this.updateSize()
    for (const sid of [...this.#subscriptions]) {
      if (!this.#o.connected(sid)) {
        this.#subscriptions.delete(sid)
        continue
      }
      this.#o.send('logs', { entries: [{ t: entry.t, m: entry.m }], size }, sid)
    }
  }

  /** The terminal size, `{cols, rows}` only when it changed since the last call (else null). */
  updateSize(): PyObject | null {
    // The stand-in has no terminal; ComfyUI falls back to 80x24 then.
    const [cols, rows] = [80, 24]
    if (cols === this.#cols && rows === this.#rows) return null
    this.#cols = cols
    this.#rows = rows
    return { cols, rows }
  }

  size(): { cols: number | null; rows: number | null } {
    return { cols: this.#cols, rows: this.#rows }
  }

  subscribe(sid: string): void {
    this.#subscriptions.add(sid)
  }

  unsubscribe(sid: string): void {
    this.#subscriptions.delete(sid)
  }
}

import { STATUS_CODES, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * The headers of every JSON answer comfy-audit writes itself (gateway refusals, the audit and people APIs,
 * login): one set, so no route drifts. `no-store` because answers carry audit data or per-request refusals;
 * `nosniff` so a browser never reads one as anything but JSON.
 */
const JSON_ANSWER_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
}

/**
 * Answers `status` with JSON text the caller serialised (so each caller keeps its writer: Python style for
 * ComfyUI-shaped bodies, strict for the audit API) and an exact `content-length`. `extra` adds or overrides
 * headers (`retry-after`, `connection`, `content-disposition`). When headers already went out (a proxied
 * answer was under way) the only honest signal left is to cut the connection.
 *
 * @example
 * sendJson(res, 404, '{"error": "not found"}')
 */
export function sendJson(
  res: ServerResponse,
  status: number,
  text: string | Buffer,
  extra: Readonly<Record<string, string>> = {},
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text
  res.writeHead(status, { ...JSON_ANSWER_HEADERS, 'content-length': String(body.length), ...lower(extra) })
  res.end(body)
}

/**
 * {@link sendJson} for an upgrade that is refused: no response object exists yet, so the answer (same headers,
 * and `connection: close`) is written on the socket, which then closes.
 */
export function sendJsonOnSocket(
  socket: Duplex,
  status: number,
  text: string,
  extra: Readonly<Record<string, string>> = {},
): void {
  const body = Buffer.from(text, 'utf8')
  const headers = {
    ...JSON_ANSWER_HEADERS,
    'content-length': String(body.length),
    connection: 'close',
    ...lower(extra),
  }
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`
  socket.end(Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body]))
}

function lower(headers: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v
  return out
}

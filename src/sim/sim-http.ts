/**
 * The small HTTP vocabulary of the stand-in's routes: a parsed request, a reply, and aiohttp's answers.
 */
import type { IncomingMessage } from 'node:http'
import { sep } from 'node:path'
import { dumpPyJson, isPyObject, parsePyJson } from './py-json.js'
import type { PyValue } from './py-json.js'
import { PyError, pyEquals } from './py-repr.js'

export class BodyTooLarge extends Error {
  constructor(readonly size: number) {
    super('too large')
  }
}

export interface Req {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingMessage['headers']
  body(): Promise<Buffer>
}

export type Handler = (req: Req, params: string[]) => Promise<Reply>

export interface Reply {
  status: number
  body?: Buffer | string
  contentType?: string
  headers?: Record<string, string>
  file?: string
  /** Inclusive byte range of `file` to send (a 206 answer to a `Range` request). */
  range?: { start: number; end: number }
}

export const json = (value: unknown, status = 200): Reply => ({
  status,
  body: dumpPyJson(value),
  contentType: 'application/json; charset=utf-8',
})
export const empty = (status: number): Reply => ({ status })
export const text = (status: number, t: string): Reply => ({
  status,
  body: t,
  contentType: 'text/plain; charset=utf-8',
})
export const serverError = (): Reply => text(500, '500 Internal Server Error\n\nServer got itself in trouble')

/** Python's `in` for a decoded JSON body (dict keys, list items, substrings); TypeError otherwise. */
export function pyContains(container: PyValue, key: string): boolean {
  if (isPyObject(container)) return Object.hasOwn(container, key)
  if (Array.isArray(container)) return container.some((v) => pyEquals(v, key))
  if (typeof container === 'string') return container.includes(key)
  throw new PyError('TypeError', 'argument of type is not iterable')
}

export async function readJson(req: Req): Promise<PyValue> {
  const parsed = parsePyJson((await req.body()).toString('utf8'))
  if (!parsed.ok) throw new PyError('json.decoder.JSONDecodeError', parsed.reason)
  return parsed.value
}

export function withinDir(base: string, p: string): boolean {
  return p === base || p.startsWith(base.endsWith(sep) ? base : base + sep)
}

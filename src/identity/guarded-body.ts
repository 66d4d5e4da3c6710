/**
 * The request bodies the guard reads before deciding: the JSON of `POST /interrupt`, `/queue` and `/history`
 * (the policy looks inside: whose prompt is interrupted or deleted), and uploads (file names and subfolders
 * must not leave their folder). Other bodies stream on to ComfyUI unread.
 */
import type { IncomingMessage } from 'node:http'
import type { JsonValue } from '../audit/types.js'
import { parseMultipart } from '../comfyui/multipart.js'
import type { LimitsConfig } from '../config/security-config.js'
import { BodyTooLarge, readBody } from '../gateway/http-util.js'
import { parseStrictJson } from '../gateway/strict-json.js'
import { isUnsafeRelativePath, type Route } from './policy.js'

const POLICY_BODY_ROUTES = new Set(['/interrupt', '/queue', '/history'])
const UPLOAD_ROUTES = new Set(['/upload/image', '/upload/mask'])
const MAX_POLICY_BODY_BYTES = 1 << 20

/** The body as read: `body` is what is forwarded, `parsed` what the policy sees (null: an empty body). */
type GuardedBody =
  | { readonly ok: true; readonly body?: Buffer; readonly parsed?: JsonValue | null }
  | { readonly ok: false; readonly status: 400 | 413; readonly reason: string }

/** Reads and checks the body when the route needs it; throws only what reading throws besides a size limit. */
export async function readGuardedBody(
  req: IncomingMessage,
  method: string,
  route: Route,
  limits: Pick<LimitsConfig, 'maxBodyBytes' | 'maxJsonDepth'>,
): Promise<GuardedBody> {
  if (method !== 'POST' || route.kind !== 'comfy') return { ok: true }
  try {
    if (POLICY_BODY_ROUTES.has(route.path)) return await readPolicyBody(req, limits.maxJsonDepth)
    if (UPLOAD_ROUTES.has(route.path)) return await readUpload(req, limits.maxBodyBytes)
  } catch (error) {
    if (error instanceof BodyTooLarge) return { ok: false, status: 413, reason: error.message }
    throw error
  }
  return { ok: true }
}

async function readPolicyBody(req: IncomingMessage, maxJsonDepth: number): Promise<GuardedBody> {
  const body = await readBody(req, MAX_POLICY_BODY_BYTES)
  // One strict parse; what is forwarded is exactly these checked bytes (issue 9 class 2). An empty body is
  // ComfyUI's `{}` (the front end sends a bare POST /interrupt); anything else unparsable is refused, never
  // read as empty.
  if (body.length === 0) return { ok: true, body, parsed: null }
  const parsed = parseStrictJson(body, maxJsonDepth)
  if (!parsed.ok) return { ok: false, status: 400, reason: `body is not valid JSON: ${parsed.reason}` }
  return { ok: true, body, parsed: parsed.value }
}

async function readUpload(req: IncomingMessage, maxBodyBytes: number): Promise<GuardedBody> {
  const body = await readBody(req, maxBodyBytes)
  const form = parseMultipart(body)
  if (form.ok) {
    for (const part of form.parts) {
      const unsafe =
        (part.name === 'subfolder' && isUnsafeRelativePath(part.data.toString('utf8'))) ||
        (part.filename !== null && (isUnsafeRelativePath(part.filename) || part.filename.includes('/')))
      if (unsafe) return { ok: false, status: 400, reason: 'unsafe upload path' }
    }
  }
  return { ok: true, body }
}
